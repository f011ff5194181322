"""One model, declared: who owns it, where its data is, its gates and training parameters, how it
is served and monitored, and the environments it deploys to (with per-environment overrides).

Keys are snake_case as TOML writes them; anything unknown, mistyped or out of range is refused
with the key's path (`environments.prod.capture_percent`), by `mlops_kit.fleet.loader`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, StrictBool, StrictFloat, StrictInt, StrictStr, \
    ValidationError, create_model, model_validator

from mlops_kit.core.gates import GATES
from mlops_kit.typed_config import (Declared, at_least, between, data_key, problems,
                                    resource_name, schedule_expression)
from mlops_pipelines.parameters import PARAMETERS_BY_NAME

Name = Annotated[StrictStr, AfterValidator(resource_name)]
Count = Annotated[StrictInt, at_least(1)]
WarmFallbacks = Annotated[StrictInt, between(0, 9, " (an endpoint config holds 10 variants)")]
CapturePercent = Annotated[StrictInt, between(1, 100)]
_PYTHON_TYPES = {"int": StrictInt, "float": StrictFloat, "str": StrictStr}
"""StrictFloat takes a whole number too (1 is 1.0), never a bool or a string."""


def _parameters_of(step: str, title: str) -> type[Declared]:
    """A table of optional overrides of one step's pipeline parameters, typed as they are."""
    return create_model(
        title, __base__=Declared, __doc__=f"Overrides of the pipeline's {step} parameters.",
        **{name: (_PYTHON_TYPES[p.type] | None, None)
           for name, p in PARAMETERS_BY_NAME.items() if p.step == step})


GateThresholds = _parameters_of("evaluate", "GateThresholds")
TrainingParameters = _parameters_of("train", "TrainingParameters")


class Data(Declared):
    key: Annotated[StrictStr, AfterValidator(data_key)]
    """The training data's object key in the artifact bucket (a path under the local home's
    data folder locally); writing it starts the pipeline when `training.new_data_trigger`."""
    target: StrictStr = "is_fraud"
    synthetic_seed: StrictInt | None = None
    """Locally: generate the data with the kit's synthetic generator and this seed."""
    synthetic_positive_rate: Annotated[StrictFloat, between(0.001, 0.5)] = 0.03


class Training(Declared):
    parameters: TrainingParameters = TrainingParameters()
    """Overrides of the pipeline's training parameters (max_depth, eta, ...)."""
    schedule: Annotated[StrictStr, AfterValidator(schedule_expression)] | None = None
    new_data_trigger: StrictBool = False


class Serving(Declared):
    """How one environment serves the model; `[environments.<env>]` overrides any of these."""

    instance_type: StrictStr = "ml.m5.large"
    champion_instance_count: Count = 1
    fallback_instance_count: Count = 1
    warm_fallbacks: WarmFallbacks = 2
    capture_percent: CapturePercent = 100
    stream_scoring: StrictBool = True
    feature_order: tuple[StrictStr, ...] = ()
    drift_schedule_minutes: Count = 10
    drift_window_minutes: Count = 10
    probe_schedule_minutes: Count = 5
    probe_max_latency_ms: Count = 1000
    ground_truth_lookback_hours: Count = 6
    rollback_cooldown_minutes: Annotated[StrictInt, at_least(0)] = 15

    @model_validator(mode="after")
    def _window_holds_schedule(self) -> Serving:
        if self.drift_window_minutes < self.drift_schedule_minutes:
            raise ValueError("drift_window_minutes must be at least drift_schedule_minutes: "
                             "traffic between two runs would never be monitored")
        return self


ServingOverrides = create_model(
    "ServingOverrides", __base__=Declared, __doc__="`[environments.<env>]`: any `[serving]` key.",
    **{name: ((Annotated[(field.annotation, *field.metadata)] if field.metadata
                else field.annotation) | None, None)
       for name, field in Serving.model_fields.items()})


class ModelDeclaration(Declared):
    name: Name
    """The model package group in the registry of record, and the endpoint's name stem."""
    use_case: StrictStr
    owner: StrictStr
    description: StrictStr = ""
    data: Data
    gates: GateThresholds = GateThresholds()
    """Overrides of the gate thresholds (min_aupr, max_psi, ...)."""
    training: Training = Training()
    serving: Serving = Serving()
    deploy_to: Annotated[tuple[Name, ...], Field(min_length=1)]
    """The environments this model deploys to, each in the fleet's promotion order."""
    environments: dict[StrictStr, ServingOverrides] = {}
    """`[environments.<env>]`: overrides of `[serving]` keys in that environment."""

    @model_validator(mode="after")
    def _overrides_fit(self) -> ModelDeclaration:
        for env in self.environments:
            if env not in self.deploy_to:
                raise ValueError(f"environments.{env}: {self.name} does not deploy to {env} "
                                 f"(deploy_to: {', '.join(self.deploy_to)})")
            try:
                self.serving_in(env)
            except ValidationError as exc:
                raise ValueError(f"environments.{env}: {problems(exc)}") from None
        return self

    def serving_in(self, environment: str) -> Serving:
        """`[serving]` with the environment's overrides applied."""
        overrides = self.environments.get(environment)
        return Serving.model_validate({
            **self.serving.model_dump(),
            **(overrides.model_dump(exclude_unset=True) if overrides else {})})

    def endpoint_name(self, environment: str) -> str:
        return f"{self.name}-{environment}"

    def thresholds(self) -> dict[str, float]:
        """Every gate threshold: the kit's defaults with this model's overrides."""
        declared = self.gates.model_dump(exclude_unset=True)
        return {gate.name: float(declared.get(gate.name, gate.default)) for gate in GATES}

    def training_parameters(self) -> dict[str, int | float | str]:
        """The training parameters this model overrides (the rest keep the kit's defaults)."""
        return self.training.parameters.model_dump(exclude_unset=True)

    def pipeline_parameters(self) -> dict[str, int | float | str]:
        """The pipeline parameters this declaration sets: its label column, every gate
        threshold and the training parameters it overrides. The local pipeline runs with them
        (`--param`); on AWS they are the defaults of the model's own pipeline."""
        return {"target": self.data.target, **self.thresholds(), **self.training_parameters()}
