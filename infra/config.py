"""One typed, frozen object per stage, read from cdk.json's context (`-c stage=dev`, default dev).

Every knob of the deployment lives in `context.stages.<stage>` of cdk.json; nothing else reads
context. Unknown keys and wrong types fail synth with the key's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, Mapping

DEFAULT_STAGE = "dev"
DEFAULT_FALLBACK_REGION = "us-east-1"
_NAME = re.compile(r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$")
_SCHEDULE = re.compile(r"^(rate\((1 (minute|hour|day)|([2-9]|[1-9]\d+) (minutes|hours|days))\)"
                       r"|cron\(\S+( \S+){5}\))$")
_DATA_KEY = re.compile(r"^[A-Za-z0-9!_.'()/-]+\.(csv|parquet)$")
_HEX_ID = r"-([0-9a-f]{8}|[0-9a-f]{17})"
_STUDIO_IDS = {"domain_id": r"d-[a-z0-9]{12}", "vpc_id": "vpc" + _HEX_ID,
               "subnet_ids": "subnet" + _HEX_ID, "security_group_ids": "sg" + _HEX_ID}


class ConfigError(ValueError):
    """The stage context is missing or malformed (the message names the key)."""


@dataclass(frozen=True)
class StudioConfig:
    """`context.stages.<stage>.studio` (off unless `enabled`). With `domainId` the kit only adds a
    user profile to that existing domain; without it the kit creates an IAM-auth domain in
    `vpcId`/`subnetIds` (given, never looked up)."""

    enabled: bool = False
    domain_id: str | None = None
    vpc_id: str | None = None
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    app_network_access_type: str | None = None
    """"VpcOnly" (default) or "PublicInternetOnly"; only for a domain the kit creates."""
    user_profile_name: str = "scientist"
    mlflow_tracking_server_name: str | None = None
    """Grants the scientist role read access (sagemaker-mlflow) to this tracking server."""

    @property
    def creates_domain(self) -> bool:
        return self.enabled and self.domain_id is None

    @property
    def network_access(self) -> str:
        return self.app_network_access_type or "VpcOnly"


_TRACKING_SERVER_ARN = re.compile(
    r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:mlflow-tracking-server/"
    r"[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$")


@dataclass(frozen=True)
class MlflowConfig:
    """`context.stages.<stage>.mlflow` (off by default: a tracking server is billed per hour).
    `trackingServer` provisions a SageMaker managed MLflow tracking server in the stateful
    stack; `trackingServerArn` points the training step at an existing one instead."""

    tracking_server: bool = False
    size: str = "Small"
    """TrackingServerSize: "Small", "Medium" or "Large"."""
    tracking_server_arn: str | None = None

    @property
    def enabled(self) -> bool:
        return self.tracking_server or self.tracking_server_arn is not None


@dataclass(frozen=True)
class StageConfig:
    stage: str
    endpoint_name: str
    model_group: str
    instance_type: str = "ml.m5.large"
    champion_instance_count: int = 1
    fallback_instance_count: int = 1
    warm_fallbacks: int = 2
    capture_percent: int = 100
    rollback_cooldown_minutes: int = 15
    drift_schedule_minutes: int = 10
    drift_window_minutes: int = 10
    probe_schedule_minutes: int = 5
    probe_max_latency_ms: int = 1000
    alarm_email: str | None = None
    removal_policy: str = "destroy"
    """"destroy" or "retain" for buckets, the key, the topic and the idempotency table; the
    ledger is always retained (it is the audit trail)."""
    log_retention_days: int = 14
    data_retention_days: int = 30
    """Lifecycle expiry of data capture objects and of non-current artifact versions."""
    ground_truth_lookback_hours: int = 6
    """How long the drift monitor keeps captured scores for labels to join (AUPR alarm):
    labels landing later than this after their prediction are not joined."""
    controller_reserved_concurrency: int | None = None
    """Reserved concurrency of each controller Lambda; null (default) reserves none, which
    deploys in any account (an account on the default quota of 10 concurrent executions can
    reserve none: Lambda keeps 10 unreserved). Correctness never depends on it: deliveries are
    idempotent and a rollback claims its incident in the ledger (docs/deploy.md)."""
    stream_scoring: bool = True
    feature_order: tuple[str, ...] = ()
    """FEATURE_ORDER of the stream scorer (needed for JSON records; CSV records need none)."""
    registry_reader_accounts: tuple[str, ...] = ()
    """Accounts allowed to describe and list the model group (cross-account resource policy)."""
    training_schedule: str | None = None
    """EventBridge schedule expression (`rate(7 days)`, `cron(...)`) starting the training
    pipeline with its default parameters; null disables the schedule."""
    new_data_trigger: bool = False
    """Start the pipeline when `new_data_key` is written in the artifact bucket (turns on the
    bucket's EventBridge notifications)."""
    new_data_key: str = "incoming/latest.parquet"
    """The one object key the new-data rule matches; the run gets InputDataUri=s3://<bucket>/<key>."""
    studio: StudioConfig = StudioConfig()
    mlflow: MlflowConfig = MlflowConfig()
    account: str | None = None
    region: str | None = None
    fallback_region: str = DEFAULT_FALLBACK_REGION

    @property
    def retain(self) -> bool:
        return self.removal_policy == "retain"

    @property
    def prefix(self) -> str:
        """Stack-name prefix: MlopsKit-<stage>."""
        return f"MlopsKit-{self.stage}"


_KEYS = {
    "endpointName": "endpoint_name", "modelGroup": "model_group", "instanceType": "instance_type",
    "championInstanceCount": "champion_instance_count",
    "fallbackInstanceCount": "fallback_instance_count", "warmFallbacks": "warm_fallbacks",
    "capturePercent": "capture_percent", "rollbackCooldownMinutes": "rollback_cooldown_minutes",
    "driftScheduleMinutes": "drift_schedule_minutes",
    "driftWindowMinutes": "drift_window_minutes", "probeScheduleMinutes": "probe_schedule_minutes",
    "probeMaxLatencyMs": "probe_max_latency_ms", "alarmEmail": "alarm_email",
    "removalPolicy": "removal_policy", "logRetentionDays": "log_retention_days",
    "dataRetentionDays": "data_retention_days", "streamScoring": "stream_scoring", "featureOrder": "feature_order",
    "registryReaderAccounts": "registry_reader_accounts", "account": "account",
    "trainingSchedule": "training_schedule", "newDataTrigger": "new_data_trigger",
    "newDataKey": "new_data_key",
    "groundTruthLookbackHours": "ground_truth_lookback_hours",
    "controllerReservedConcurrency": "controller_reserved_concurrency",
    "region": "region",
}
_STUDIO_KEYS = {
    "enabled": "enabled", "domainId": "domain_id", "vpcId": "vpc_id", "subnetIds": "subnet_ids",
    "securityGroupIds": "security_group_ids", "appNetworkAccessType": "app_network_access_type",
    "userProfileName": "user_profile_name",
    "mlflowTrackingServerName": "mlflow_tracking_server_name",
}
_MLFLOW_KEYS = {"trackingServer": "tracking_server", "size": "size",
                "trackingServerArn": "tracking_server_arn"}
_TYPES = {f.name: f.type for f in fields(StageConfig)}
_STUDIO_TYPES = {f.name: f.type for f in fields(StudioConfig)}


def _check(cfg: StageConfig) -> None:
    problems = []
    for name in ("endpoint_name", "model_group"):
        if not _NAME.match(getattr(cfg, name)):
            problems.append(f"{name} must be 1-63 letters, digits or hyphens")
    if cfg.removal_policy not in ("destroy", "retain"):
        problems.append("removalPolicy must be 'destroy' or 'retain'")
    if not 1 <= cfg.capture_percent <= 100:
        problems.append("capturePercent must be 1..100")
    if not 0 <= cfg.warm_fallbacks <= 9:
        problems.append("warmFallbacks must be 0..9 (an endpoint config holds 10 variants)")
    for name in ("champion_instance_count", "fallback_instance_count", "drift_schedule_minutes",
                 "probe_schedule_minutes", "drift_window_minutes", "log_retention_days",
                 "data_retention_days", "ground_truth_lookback_hours"):
        if getattr(cfg, name) < 1:
            problems.append(f"{name} must be at least 1")
    if cfg.controller_reserved_concurrency is not None and cfg.controller_reserved_concurrency < 1:
        problems.append("controllerReservedConcurrency must be at least 1 (or null: none)")
    if cfg.drift_window_minutes < cfg.drift_schedule_minutes:
        problems.append("driftWindowMinutes must be at least driftScheduleMinutes: traffic "
                        "between two runs would never be monitored")
    for acct in cfg.registry_reader_accounts:
        if not re.fullmatch(r"\d{12}", acct):
            problems.append(f"registryReaderAccounts: {acct!r} is not a 12-digit account id")
    if cfg.training_schedule is not None and not _SCHEDULE.match(cfg.training_schedule):
        problems.append("trainingSchedule must be 'rate(<n> minutes|hours|days)' or "
                        "'cron(<6 fields>)' (or null to disable)")
    if not _DATA_KEY.match(cfg.new_data_key) or "//" in cfg.new_data_key \
            or cfg.new_data_key.startswith("/"):
        problems.append("newDataKey must be one object key ending in .csv or .parquet "
                        "(no wildcard, no leading slash)")
    elif cfg.new_data_key.startswith(("pipeline-code/", "pipeline-runs/", "datasets/")):
        problems.append("newDataKey must not be under pipeline-code/, pipeline-runs/ or "
                        "datasets/ (written by the pipeline and the deployment)")
    problems += _check_studio(cfg.studio)
    if cfg.mlflow.size not in ("Small", "Medium", "Large"):
        problems.append("mlflow.size must be 'Small', 'Medium' or 'Large'")
    if cfg.mlflow.tracking_server_arn is not None:
        if cfg.mlflow.tracking_server:
            problems.append("mlflow: trackingServer (provision one) and trackingServerArn (use "
                            "an existing one) exclude each other")
        if not _TRACKING_SERVER_ARN.match(cfg.mlflow.tracking_server_arn):
            problems.append("mlflow.trackingServerArn must look like arn:aws:sagemaker:<region>:"
                            "<account>:mlflow-tracking-server/<name>")
    if problems:
        raise ConfigError(f"stage {cfg.stage!r}: " + "; ".join(problems))


def _check_studio(st: StudioConfig) -> list[str]:
    problems = []
    for name, pattern in _STUDIO_IDS.items():
        value = getattr(st, name)
        for item in (value if isinstance(value, tuple) else (value,) if value else ()):
            if not re.fullmatch(pattern, item):
                problems.append(f"studio.{name}: {item!r} does not look like {pattern}")
    if not _NAME.match(st.user_profile_name):
        problems.append("studio.userProfileName must be 1-63 letters, digits or hyphens")
    if st.mlflow_tracking_server_name is not None and not _NAME.match(
            st.mlflow_tracking_server_name):
        problems.append("studio.mlflowTrackingServerName must be 1-63 letters, digits or hyphens")
    if st.app_network_access_type not in (None, "VpcOnly", "PublicInternetOnly"):
        problems.append("studio.appNetworkAccessType must be 'VpcOnly' or 'PublicInternetOnly'")
    if not st.enabled:
        return problems
    if st.domain_id is not None:
        if st.vpc_id or st.subnet_ids or st.security_group_ids or st.app_network_access_type:
            problems.append("studio: vpcId/subnetIds/securityGroupIds/appNetworkAccessType "
                            "apply only to a domain the kit creates, not with domainId")
    else:
        if not st.vpc_id or not st.subnet_ids:
            problems.append("studio: creating a domain needs vpcId and subnetIds "
                            "(or give domainId to attach to an existing domain)")
        if st.network_access == "VpcOnly" and not st.security_group_ids:
            problems.append("studio: a VpcOnly domain needs securityGroupIds")
    return problems


def _typed(stage: str, key: str, value: Any, kind: str) -> Any:
    if "int" in kind and "str" not in kind:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"stage {stage!r}: {key} must be a whole number")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"stage {stage!r}: {key} must be true or false")
    elif "tuple" in kind:
        if not isinstance(value, list):
            raise ConfigError(f"stage {stage!r}: {key} must be a list")
        value = tuple(str(v) for v in value)
    elif not isinstance(value, str):
        raise ConfigError(f"stage {stage!r}: {key} must be a string")
    return value


def _load_studio(stage: str, raw: Any) -> StudioConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"stage {stage!r}: studio must be an object")
    unknown = sorted(set(raw) - set(_STUDIO_KEYS))
    if unknown:
        raise ConfigError(f"stage {stage!r}: unknown key(s) studio.{', studio.'.join(unknown)}")
    values = {name: _typed(stage, f"studio.{key}", raw[key], _STUDIO_TYPES[name])
              for key, name in _STUDIO_KEYS.items() if raw.get(key) is not None}
    return StudioConfig(**values)


def _load_mlflow(stage: str, raw: Any) -> MlflowConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"stage {stage!r}: mlflow must be an object")
    unknown = sorted(set(raw) - set(_MLFLOW_KEYS))
    if unknown:
        raise ConfigError(f"stage {stage!r}: unknown key(s) mlflow.{', mlflow.'.join(unknown)}")
    kinds = {f.name: f.type for f in fields(MlflowConfig)}
    return MlflowConfig(**{name: _typed(stage, f"mlflow.{key}", raw[key], kinds[name])
                           for key, name in _MLFLOW_KEYS.items() if raw.get(key) is not None})


def load(context: Mapping[str, Any], stage: str | None = None) -> StageConfig:
    """`context` is the app's context (node.try_get_context) as a mapping."""
    stage = stage or context.get("stage") or DEFAULT_STAGE
    stages = context.get("stages") or {}
    if stage not in stages:
        raise ConfigError(f"stage {stage!r} is not in cdk.json context 'stages' "
                          f"(known: {', '.join(sorted(stages)) or 'none'})")
    raw = dict(stages[stage])
    mlflow_raw = raw.pop("mlflow", None)
    studio_raw = raw.pop("studio", None)
    studio = _load_studio(stage, studio_raw) if studio_raw is not None else None
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise ConfigError(f"stage {stage!r}: unknown key(s) {', '.join(unknown)}")
    values: dict[str, Any] = {"stage": stage,
                              "fallback_region": context.get("fallbackRegion")
                              or DEFAULT_FALLBACK_REGION}
    for key, name in _KEYS.items():
        if key not in raw or raw[key] is None:
            continue
        values[name] = _typed(stage, key, raw[key], _TYPES[name])
    if studio is not None:
        values["studio"] = studio
    if mlflow_raw is not None:
        values["mlflow"] = _load_mlflow(stage, mlflow_raw)
    for required in ("endpoint_name", "model_group"):
        if required not in values:
            raise ConfigError(f"stage {stage!r}: {required} is required")
    cfg = StageConfig(**values)
    _check(cfg)
    return cfg
