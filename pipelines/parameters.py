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


def _step_parameters(step: Step, *rows: tuple[str, ParameterType, int | float | str, str]
                     ) -> tuple[PipelineParameter, ...]:
    """The parameters one step reads, from (name, type, default, description) rows."""
    return tuple(PipelineParameter(name, type_, default, step, description)
                 for name, type_, default, description in rows)


PARAMETERS: tuple[PipelineParameter, ...] = (
    *_step_parameters(
        "preprocess",
        ("target", "str", "is_fraud", "Label column (0/1)"),
        ("validation_fraction", "float", 0.15,
         "Share of rows in the validation split (early stopping)"),
        ("test_fraction", "float", 0.15, "Share of rows in the test split (evaluation and gates)"),
        ("baseline_bins", "int", 10, "Quantile bins per numeric feature in the drift baseline")),
    *_step_parameters(
        "train",
        ("seed", "int", 42, "Seed of the split and of XGBoost"),
        ("max_depth", "int", 5, "XGBoost max_depth"),
        ("eta", "float", 0.1, "XGBoost learning rate"),
        ("num_round", "int", 400, "Maximum boosting rounds"),
        ("early_stopping_rounds", "int", 30,
         "Stop when validation AUPR has not improved for this many rounds"),
        ("subsample", "float", 0.8, "XGBoost row subsample"),
        ("colsample_bytree", "float", 0.8, "XGBoost column subsample"),
        ("min_child_weight", "float", 1.0, "XGBoost min_child_weight"),
        ("reg_lambda", "float", 1.0, "XGBoost L2 regularisation")),
    # Gate thresholds: one per gate, from the gate definitions the local run uses too.
    *(PipelineParameter(gate.name, "float", gate.default, "evaluate", gate.description)
      for gate in GATES),
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
