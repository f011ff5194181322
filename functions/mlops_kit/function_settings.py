"""Each Lambda's typed settings, as `mlops_kit.contract` parses them from its environment:
one frozen dataclass per function, with the rules that span several variables.

Standard library only: every Lambda bundle carries it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping


class _Settings:
    CONTRACT: ClassVar[str]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Any:
        from mlops_kit.contract import function

        return function(cls.CONTRACT).settings(environ)

    def problems(self) -> list[str]:
        """Rules across variables (each variable's own type is checked when parsed); a value
        that is missing or malformed is None here and already reported."""
        return []


@dataclass(frozen=True)
class _EndpointSettings(_Settings):
    """What every function that works on one model's endpoint reads: the endpoint, its group
    and the ledgers (the registry account's, when the registry is another account's)."""
    endpoint_name: str
    model_group: str
    ledger_table: str
    registry_ledger_table: str
    registry_role_arn: str


@dataclass(frozen=True)
class DeploymentControllerSettings(_EndpointSettings):
    CONTRACT: ClassVar[str] = "deployment_controller"
    idempotency_table: str
    execution_role_arn: str
    capture_s3_uri: str
    capture_percent: int
    capture_kms_key_id: str
    instance_type: str
    champion_instance_count: int
    fallback_instance_count: int
    warm_fallbacks: int
    environment: str

    def problems(self) -> list[str]:
        found = []
        if self.capture_percent is not None and not 1 <= self.capture_percent <= 100:
            found.append("DATA_CAPTURE_SAMPLING_PERCENT must be 1..100")
        if self.capture_s3_uri and not self.capture_s3_uri.startswith("s3://"):
            found.append("DATA_CAPTURE_S3_URI must be an s3:// URI")
        for name, value in (("CHAMPION_INSTANCE_COUNT", self.champion_instance_count),
                            ("FALLBACK_INSTANCE_COUNT", self.fallback_instance_count)):
            if value is not None and value < 1:
                found.append(f"{name} must be at least 1")
        if self.warm_fallbacks is not None and not 0 <= self.warm_fallbacks <= 9:
            found.append("WARM_FALLBACKS must be 0..9 (an endpoint config holds 10 variants)")
        return found


@dataclass(frozen=True)
class RollbackControllerSettings(_EndpointSettings):
    CONTRACT: ClassVar[str] = "rollback_controller"
    idempotency_table: str
    notification_topic_arn: str
    cooldown_minutes: int

    def problems(self) -> list[str]:
        if self.cooldown_minutes is not None and self.cooldown_minutes < 0:
            return ["ROLLBACK_COOLDOWN_MINUTES must be at least 0"]
        return []


@dataclass(frozen=True)
class DriftMonitorSettings(_EndpointSettings):
    CONTRACT: ClassVar[str] = "drift_monitor"
    capture_s3_uri: str
    window_minutes: int
    schedule_minutes: int
    ground_truth_s3_uri: str
    ground_truth_lookback_hours: int

    def problems(self) -> list[str]:
        found = [f"{name} must be at least 1" for name, value in
                 (("WINDOW_MINUTES", self.window_minutes),
                  ("SCHEDULE_MINUTES", self.schedule_minutes),
                  ("GROUND_TRUTH_LOOKBACK_HOURS", self.ground_truth_lookback_hours))
                 if value is not None and value < 1]
        for name, uri in (("DATA_CAPTURE_S3_URI", self.capture_s3_uri),
                          ("GROUND_TRUTH_S3_URI", self.ground_truth_s3_uri)):
            if uri and not uri.startswith("s3://"):
                found.append(f"{name} must be an s3:// URI")
        return found


@dataclass(frozen=True)
class ProbeSettings(_EndpointSettings):
    CONTRACT: ClassVar[str] = "probe"
    max_latency_ms: int
    schedule_minutes: int

    def problems(self) -> list[str]:
        if self.schedule_minutes is not None and self.schedule_minutes < 1:
            return ["SCHEDULE_MINUTES must be at least 1"]
        return []


@dataclass(frozen=True)
class StreamScorerSettings(_Settings):
    CONTRACT: ClassVar[str] = "stream_scorer"
    endpoint_name: str
    output_stream_name: str
    output_delivery_stream_name: str
    feature_order: tuple[str, ...]
    record_id_field: str
    id_columns: tuple[str, ...]
    label_column: str
    data_columns: tuple[str, ...]

    def problems(self) -> list[str]:
        if bool(self.output_stream_name) == bool(self.output_delivery_stream_name):
            return ["set exactly one of OUTPUT_STREAM_NAME (Kinesis) and "
                    "OUTPUT_DELIVERY_STREAM_NAME (Firehose)"]
        return []

    @property
    def output_kind(self) -> str:
        return "kinesis" if self.output_stream_name else "firehose"

    @property
    def output_name(self) -> str:
        return self.output_stream_name or self.output_delivery_stream_name
