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


class ConfigError(ValueError):
    """The stage context is missing or malformed (the message names the key)."""


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
    stream_scoring: bool = True
    feature_order: tuple[str, ...] = ()
    """FEATURE_ORDER of the stream scorer (needed for JSON records; CSV records need none)."""
    registry_reader_accounts: tuple[str, ...] = ()
    """Accounts allowed to describe and list the model group (cross-account resource policy)."""
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
    "region": "region",
}
_TYPES = {f.name: f.type for f in fields(StageConfig)}


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
                 "data_retention_days"):
        if getattr(cfg, name) < 1:
            problems.append(f"{name} must be at least 1")
    for acct in cfg.registry_reader_accounts:
        if not re.fullmatch(r"\d{12}", acct):
            problems.append(f"registryReaderAccounts: {acct!r} is not a 12-digit account id")
    if problems:
        raise ConfigError(f"stage {cfg.stage!r}: " + "; ".join(problems))


def load(context: Mapping[str, Any], stage: str | None = None) -> StageConfig:
    """`context` is the app's context (node.try_get_context) as a mapping."""
    stage = stage or context.get("stage") or DEFAULT_STAGE
    stages = context.get("stages") or {}
    if stage not in stages:
        raise ConfigError(f"stage {stage!r} is not in cdk.json context 'stages' "
                          f"(known: {', '.join(sorted(stages)) or 'none'})")
    raw = dict(stages[stage])
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise ConfigError(f"stage {stage!r}: unknown key(s) {', '.join(unknown)}")
    values: dict[str, Any] = {"stage": stage,
                              "fallback_region": context.get("fallbackRegion")
                              or DEFAULT_FALLBACK_REGION}
    for key, name in _KEYS.items():
        if key not in raw or raw[key] is None:
            continue
        value, kind = raw[key], _TYPES[name]
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
        values[name] = value
    for required in ("endpoint_name", "model_group"):
        if required not in values:
            raise ConfigError(f"stage {stage!r}: {required} is required")
    cfg = StageConfig(**values)
    _check(cfg)
    return cfg
