"""One typed, frozen object per stage, read from cdk.json's context (`-c stage=dev`, default dev).

Every knob of the deployment lives in `context.stages.<stage>` of cdk.json; nothing else reads
context. The stage is validated by pydantic models: unknown keys, wrong types and values out of
range fail synth with an error naming the key as written in cdk.json (`studio.subnetIds[1]`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Mapping

from pydantic import AfterValidator, StrictBool, StrictInt, StrictStr, ValidationError, \
    model_validator

# Until the model-level keys move out of the stages (issue [H]), they share the declaration's types.
from mlops_kit.fleet.declaration import CapturePercent, Count, Name, WarmFallbacks
from mlops_kit.fleet.loader import PromotionPolicy
from mlops_kit.typed_config import (CamelDeclared, data_key, looks_like, one_of, problems,
                                    schedule_expression)

DEFAULT_STAGE = "dev"
DEFAULT_FALLBACK_REGION = "us-east-1"
_HEX_ID = r"-([0-9a-f]{8}|[0-9a-f]{17})"
_TRACKING_SERVER_ARN = re.compile(
    r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:mlflow-tracking-server/"
    r"[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$")


class ConfigError(ValueError):
    """The stage context is missing or malformed (the message names the key)."""


def _tracking_server_arn(value: str) -> str:
    if not _TRACKING_SERVER_ARN.match(value):
        raise ValueError("must look like arn:aws:sagemaker:<region>:<account>:"
                         "mlflow-tracking-server/<name>")
    return value


AccountId = Annotated[StrictStr, looks_like(r"\d{12}")]


class StudioConfig(CamelDeclared):
    """`context.stages.<stage>.studio` (off unless `enabled`). With `domainId` the kit only adds a
    user profile to that existing domain; without it the kit creates an IAM-auth domain in
    `vpcId`/`subnetIds` (given, never looked up)."""

    enabled: StrictBool = False
    domain_id: Annotated[StrictStr, looks_like(r"d-[a-z0-9]{12}")] | None = None
    vpc_id: Annotated[StrictStr, looks_like("vpc" + _HEX_ID)] | None = None
    subnet_ids: tuple[Annotated[StrictStr, looks_like("subnet" + _HEX_ID)], ...] = ()
    security_group_ids: tuple[Annotated[StrictStr, looks_like("sg" + _HEX_ID)], ...] = ()
    app_network_access_type: Annotated[StrictStr, one_of("VpcOnly", "PublicInternetOnly")] \
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


class MlflowConfig(CamelDeclared):
    """`context.stages.<stage>.mlflow` (off by default: a tracking server is billed per hour).
    `trackingServer` provisions a SageMaker managed MLflow tracking server in the stateful
    stack; `trackingServerArn` points the training step at an existing one instead."""

    tracking_server: StrictBool = False
    size: Annotated[StrictStr, one_of("Small", "Medium", "Large")] = "Small"
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


class StageConfig(CamelDeclared):
    stage: StrictStr
    endpoint_name: Name
    model_group: Name
    instance_type: StrictStr = "ml.m5.large"
    champion_instance_count: Count = 1
    fallback_instance_count: Count = 1
    warm_fallbacks: WarmFallbacks = 2
    capture_percent: CapturePercent = 100
    rollback_cooldown_minutes: StrictInt = 15
    drift_schedule_minutes: Count = 10
    drift_window_minutes: Count = 10
    probe_schedule_minutes: Count = 5
    probe_max_latency_ms: StrictInt = 1000
    alarm_email: StrictStr | None = None
    removal_policy: Annotated[StrictStr, one_of("destroy", "retain")] = "destroy"
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
    training_schedule: Annotated[StrictStr, AfterValidator(schedule_expression)] | None = None
    """EventBridge schedule expression (`rate(7 days)`, `cron(...)`) starting the training
    pipeline with its default parameters; null disables the schedule."""
    new_data_trigger: StrictBool = False
    """Start the pipeline when `new_data_key` is written in the artifact bucket (turns on the
    bucket's EventBridge notifications)."""
    new_data_key: Annotated[StrictStr, AfterValidator(data_key)] = "incoming/latest.parquet"
    """The one object key the new-data rule matches; the run gets InputDataUri=s3://<bucket>/<key>."""
    studio: StudioConfig = StudioConfig()
    mlflow: MlflowConfig = MlflowConfig()
    promotion: PromotionPolicy = PromotionPolicy()
    """What this environment asks of a version before it is promoted here (soak, skip)."""
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
        raise ConfigError(f"stage {stage!r}: {problems(exc)}") from None
