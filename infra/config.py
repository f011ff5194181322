"""One typed, frozen object per stage, read from cdk.json's context (`-c stage=dev`, default dev).

Every knob of the deployment lives in `context.stages.<stage>` of cdk.json; nothing else reads
context. The stage is validated by pydantic models: unknown keys, wrong types and values out of
range fail synth with an error naming the key as written in cdk.json (`studio.subnetIds[1]`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Mapping

from pydantic import (AfterValidator, BaseModel, ConfigDict, StrictBool, StrictInt,
                      StrictStr, ValidationError, model_validator)
from pydantic.alias_generators import to_camel

DEFAULT_STAGE = "dev"
DEFAULT_FALLBACK_REGION = "us-east-1"
_NAME = re.compile(r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$")
_SCHEDULE = re.compile(r"^(rate\((1 (minute|hour|day)|([2-9]|[1-9]\d+) (minutes|hours|days))\)"
                       r"|cron\(\S+( \S+){5}\))$")
_DATA_KEY = re.compile(r"^[A-Za-z0-9!_.'()/-]+\.(csv|parquet)$")
_HEX_ID = r"-([0-9a-f]{8}|[0-9a-f]{17})"
_TRACKING_SERVER_ARN = re.compile(
    r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:mlflow-tracking-server/"
    r"[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$")
_PHRASES = {
    "bool_type": "must be true or false", "int_type": "must be a whole number",
    "string_type": "must be a string", "list_type": "must be a list",
    "tuple_type": "must be a list", "model_type": "must be an object",
    "dict_type": "must be an object", "missing": "is required",
}
"""Pydantic's error types, said the way a cdk.json author reads them."""


class ConfigError(ValueError):
    """The stage context is missing or malformed (the message names the key)."""


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError("must be 1-63 letters, digits or hyphens")
    return value


def _looks_like(pattern: str):
    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise ValueError(f"{value!r} does not look like {pattern}")
        return value
    return AfterValidator(check)


def _at_least(low: int):
    def check(value: int) -> int:
        if value < low:
            raise ValueError(f"must be at least {low}")
        return value
    return AfterValidator(check)


def _between(low: int, high: int, why: str = ""):
    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"must be {low}..{high}{why}")
        return value
    return AfterValidator(check)


def _schedule(value: str) -> str:
    if not _SCHEDULE.match(value):
        raise ValueError("must be 'rate(<n> minutes|hours|days)' or 'cron(<6 fields>)' "
                         "(or null to disable)")
    return value


def _data_key(value: str) -> str:
    if not _DATA_KEY.match(value) or "//" in value or value.startswith("/"):
        raise ValueError("must be one object key ending in .csv or .parquet "
                         "(no wildcard, no leading slash)")
    if value.startswith(("pipeline-code/", "pipeline-runs/", "datasets/")):
        raise ValueError("must not be under pipeline-code/, pipeline-runs/ or datasets/ "
                         "(written by the pipeline and the deployment)")
    return value


def _one_of(*allowed: str):
    def check(value: str) -> str:
        if value not in allowed:
            *others, last = [repr(a) for a in allowed]
            raise ValueError(f"must be {', '.join(others)} or {last}")
        return value
    return AfterValidator(check)


def _tracking_server_arn(value: str) -> str:
    if not _TRACKING_SERVER_ARN.match(value):
        raise ValueError("must look like arn:aws:sagemaker:<region>:<account>:"
                         "mlflow-tracking-server/<name>")
    return value


Name = Annotated[StrictStr, AfterValidator(_name)]
Count = Annotated[StrictInt, _at_least(1)]
AccountId = Annotated[StrictStr, _looks_like(r"\d{12}")]


class _Context(BaseModel):
    """cdk.json's camelCase keys onto snake_case attributes; frozen, nothing unknown, no
    coercion (`"yes"` is not true, `1.5` is not a count); a null value means "the default"."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel,
                              populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, data: Any) -> Any:
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


class StudioConfig(_Context):
    """`context.stages.<stage>.studio` (off unless `enabled`). With `domainId` the kit only adds a
    user profile to that existing domain; without it the kit creates an IAM-auth domain in
    `vpcId`/`subnetIds` (given, never looked up)."""

    enabled: StrictBool = False
    domain_id: Annotated[StrictStr, _looks_like(r"d-[a-z0-9]{12}")] | None = None
    vpc_id: Annotated[StrictStr, _looks_like("vpc" + _HEX_ID)] | None = None
    subnet_ids: tuple[Annotated[StrictStr, _looks_like("subnet" + _HEX_ID)], ...] = ()
    security_group_ids: tuple[Annotated[StrictStr, _looks_like("sg" + _HEX_ID)], ...] = ()
    app_network_access_type: Annotated[StrictStr, _one_of("VpcOnly", "PublicInternetOnly")] \
        | None = None
    """"VpcOnly" (default) or "PublicInternetOnly"; only for a domain the kit creates."""
    user_profile_name: Name = "scientist"
    mlflow_tracking_server_name: Name | None = None
    """Grants the scientist role read access (sagemaker-mlflow) to this tracking server."""

    @property
    def creates_domain(self) -> bool:
        return self.enabled and self.domain_id is None

    @property
    def network_access(self) -> str:
        return self.app_network_access_type or "VpcOnly"

    @model_validator(mode="after")
    def _domain_or_network(self) -> StudioConfig:
        if not self.enabled:
            return self
        if self.domain_id is not None:
            if self.vpc_id or self.subnet_ids or self.security_group_ids \
                    or self.app_network_access_type:
                raise ValueError("vpcId/subnetIds/securityGroupIds/appNetworkAccessType apply "
                                 "only to a domain the kit creates, not with domainId")
        elif not self.vpc_id or not self.subnet_ids:
            raise ValueError("creating a domain needs vpcId and subnetIds (or give domainId to "
                             "attach to an existing domain)")
        elif self.network_access == "VpcOnly" and not self.security_group_ids:
            raise ValueError("a VpcOnly domain needs securityGroupIds")
        return self


class MlflowConfig(_Context):
    """`context.stages.<stage>.mlflow` (off by default: a tracking server is billed per hour).
    `trackingServer` provisions a SageMaker managed MLflow tracking server in the stateful
    stack; `trackingServerArn` points the training step at an existing one instead."""

    tracking_server: StrictBool = False
    size: Annotated[StrictStr, _one_of("Small", "Medium", "Large")] = "Small"
    """TrackingServerSize."""
    tracking_server_arn: Annotated[StrictStr, AfterValidator(_tracking_server_arn)] | None = None

    @property
    def enabled(self) -> bool:
        return self.tracking_server or self.tracking_server_arn is not None

    @model_validator(mode="after")
    def _provision_or_point(self) -> MlflowConfig:
        if self.tracking_server and self.tracking_server_arn is not None:
            raise ValueError("trackingServer (provision one) and trackingServerArn (use an "
                             "existing one) exclude each other")
        return self


class StageConfig(_Context):
    stage: StrictStr
    endpoint_name: Name
    model_group: Name
    instance_type: StrictStr = "ml.m5.large"
    champion_instance_count: Count = 1
    fallback_instance_count: Count = 1
    warm_fallbacks: Annotated[StrictInt, _between(
        0, 9, " (an endpoint config holds 10 variants)")] = 2
    capture_percent: Annotated[StrictInt, _between(1, 100)] = 100
    rollback_cooldown_minutes: StrictInt = 15
    drift_schedule_minutes: Count = 10
    drift_window_minutes: Count = 10
    probe_schedule_minutes: Count = 5
    probe_max_latency_ms: StrictInt = 1000
    alarm_email: StrictStr | None = None
    removal_policy: Annotated[StrictStr, _one_of("destroy", "retain")] = "destroy"
    """Buckets, the key, the topic and the idempotency table; the ledger is always retained
    (it is the audit trail)."""
    log_retention_days: Count = 14
    data_retention_days: Count = 30
    """Lifecycle expiry of data capture objects and of non-current artifact versions."""
    ground_truth_lookback_hours: Count = 6
    """How long the drift monitor keeps captured scores for labels to join (AUPR alarm):
    labels landing later than this after their prediction are not joined."""
    controller_reserved_concurrency: Count | None = None
    """Reserved concurrency of each controller Lambda; null (default) reserves none, which
    deploys in any account (an account on the default quota of 10 concurrent executions can
    reserve none: Lambda keeps 10 unreserved). Correctness never depends on it: deliveries are
    idempotent and a rollback claims its incident in the ledger (docs/deploy.md)."""
    stream_scoring: StrictBool = True
    feature_order: tuple[StrictStr, ...] = ()
    """FEATURE_ORDER of the stream scorer (needed for JSON records; CSV records need none)."""
    registry_reader_accounts: tuple[AccountId, ...] = ()
    """Accounts allowed to describe and list the model group (cross-account resource policy)."""
    training_schedule: Annotated[StrictStr, AfterValidator(_schedule)] | None = None
    """EventBridge schedule expression (`rate(7 days)`, `cron(...)`) starting the training
    pipeline with its default parameters; null disables the schedule."""
    new_data_trigger: StrictBool = False
    """Start the pipeline when `new_data_key` is written in the artifact bucket (turns on the
    bucket's EventBridge notifications)."""
    new_data_key: Annotated[StrictStr, AfterValidator(_data_key)] = "incoming/latest.parquet"
    """The one object key the new-data rule matches; the run gets InputDataUri=s3://<bucket>/<key>."""
    studio: StudioConfig = StudioConfig()
    mlflow: MlflowConfig = MlflowConfig()
    account: StrictStr | None = None
    region: StrictStr | None = None
    fallback_region: StrictStr = DEFAULT_FALLBACK_REGION

    @property
    def retain(self) -> bool:
        return self.removal_policy == "retain"

    @property
    def prefix(self) -> str:
        """Stack-name prefix: MlopsKit-<stage>."""
        return f"MlopsKit-{self.stage}"

    @model_validator(mode="after")
    def _window_holds_schedule(self) -> StageConfig:
        if self.drift_window_minutes < self.drift_schedule_minutes:
            raise ValueError("driftWindowMinutes must be at least driftScheduleMinutes: traffic "
                             "between two runs would never be monitored")
        return self


def _key_path(loc: tuple[Any, ...]) -> str:
    """('studio', 'subnetIds', 1) -> 'studio.subnetIds[1]' (pydantic's loc, cdk.json's names)."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


def _problem(error: Mapping[str, Any]) -> str:
    key = _key_path(error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown key(s) {key}"
    if error["type"] == "value_error":
        message = str(error["ctx"]["error"])
        return message if not key else f"{key} {message}" if message.startswith("must") \
            else f"{key}: {message}"
    return f"{key} {_PHRASES.get(error['type'], error['msg'])}".strip()


def load(context: Mapping[str, Any], stage: str | None = None) -> StageConfig:
    """`context` is the app's context (node.try_get_context) as a mapping."""
    stage = stage or context.get("stage") or DEFAULT_STAGE
    stages = context.get("stages") or {}
    if stage not in stages:
        raise ConfigError(f"stage {stage!r} is not in cdk.json context 'stages' "
                          f"(known: {', '.join(sorted(stages)) or 'none'})")
    raw = stages[stage]
    if not isinstance(raw, Mapping):
        raise ConfigError(f"stage {stage!r}: stages.{stage} must be an object")
    # `stage` and `fallbackRegion` come from the context around the stage, never from inside it.
    injected = sorted(set(raw) & {"stage", "fallbackRegion"})
    if injected:
        raise ConfigError(f"stage {stage!r}: unknown key(s) {', '.join(injected)}")
    try:
        return StageConfig.model_validate({
            **raw, "stage": stage,
            "fallbackRegion": context.get("fallbackRegion") or DEFAULT_FALLBACK_REGION})
    except ValidationError as exc:
        raise ConfigError(f"stage {stage!r}: "
                          + "; ".join(_problem(e) for e in exc.errors())) from None
