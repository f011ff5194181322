"""Pipeline parameters: one list for the local run (`--param NAME=VALUE`) and the SageMaker
pipeline's ParameterInteger/Float/String objects. Gate thresholds come from the gate definitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping

from mlops_kit.core.gates import GATES

ParameterType = Literal["int", "float", "str"]
Step = Literal["preprocess", "train", "evaluate"]


@dataclass(frozen=True)
class PipelineParameter:
    name: str
    type: ParameterType
    default: int | float | str
    step: Step
    description: str

    def parse(self, raw: str) -> int | float | str:
        """Convert a command-line value; ValueError names the parameter and the expected type."""
        try:
            if self.type == "int":
                return int(raw)
            if self.type == "float":
                value = float(raw)
                if value != value:  # NaN would silently fail every comparison
                    raise ValueError
                return value
            return raw
        except ValueError:
            raise ValueError(f"parameter '{self.name}' expects {self.type}, got '{raw}'") from None


PARAMETERS: tuple[PipelineParameter, ...] = (
    PipelineParameter("target", "str", "is_fraud", "preprocess", "Label column (0/1)"),
    PipelineParameter("validation_fraction", "float", 0.15, "preprocess",
                      "Share of rows in the validation split (early stopping)"),
    PipelineParameter("test_fraction", "float", 0.15, "preprocess",
                      "Share of rows in the test split (evaluation and gates)"),
    PipelineParameter("baseline_bins", "int", 10, "preprocess",
                      "Quantile bins per numeric feature in the drift baseline"),
    PipelineParameter("seed", "int", 42, "train", "Seed of the split and of XGBoost"),
    PipelineParameter("max_depth", "int", 5, "train", "XGBoost max_depth"),
    PipelineParameter("eta", "float", 0.1, "train", "XGBoost learning rate"),
    PipelineParameter("num_round", "int", 400, "train", "Maximum boosting rounds"),
    PipelineParameter("early_stopping_rounds", "int", 30, "train",
                      "Stop when validation AUPR has not improved for this many rounds"),
    PipelineParameter("subsample", "float", 0.8, "train", "XGBoost row subsample"),
    PipelineParameter("colsample_bytree", "float", 0.8, "train", "XGBoost column subsample"),
    PipelineParameter("min_child_weight", "float", 1.0, "train", "XGBoost min_child_weight"),
    PipelineParameter("reg_lambda", "float", 1.0, "train", "XGBoost L2 regularisation"),
) + tuple(
    PipelineParameter(gate.name, "float", gate.default, "evaluate", gate.description)
    for gate in GATES
)

PARAMETERS_BY_NAME: dict[str, PipelineParameter] = {p.name: p for p in PARAMETERS}

TRAINING_HYPERPARAMETERS: tuple[str, ...] = tuple(
    p.name for p in PARAMETERS if p.step == "train")


def resolve(overrides: Mapping[str, str]) -> dict[str, int | float | str]:
    """Defaults with command-line overrides applied; unknown names and bad values raise ValueError."""
    unknown = sorted(set(overrides) - set(PARAMETERS_BY_NAME))
    if unknown:
        raise ValueError(f"unknown parameter(s): {', '.join(unknown)}; "
                         f"known: {', '.join(PARAMETERS_BY_NAME)}")
    values = {p.name: p.default for p in PARAMETERS}
    for name, raw in overrides.items():
        values[name] = PARAMETERS_BY_NAME[name].parse(raw)
    return values
