"""Settings and wiring shared by the control Lambdas: environment read once into a typed
object (failing at cold start with the names of what is missing), adapters built lazily."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping


class SettingsError(Exception):
    """A required environment variable is missing or malformed (named in the message)."""


def _int(env: Mapping[str, str], name: str, default: int, problems: list[str]) -> int:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        problems.append(f"{name} must be a whole number, got {raw!r}")
        return default


@dataclass(frozen=True)
class ControlSettings:
    endpoint_name: str
    model_group: str
    ledger_table: str
    idempotency_table: str
    execution_role_arn: str
    notification_topic_arn: str
    instance_type: str
    instance_count: int
    fallback_instance_count: int
    warm_fallbacks: int
    cooldown_minutes: int
    capture_s3_uri: str
    capture_percent: int
    capture_kms_key_id: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *,
                 needs_role: bool = False) -> "ControlSettings":
        env = os.environ if environ is None else environ
        # The deployment controller creates the endpoint configs: it needs the role, and data
        # capture, without which the drift monitor would see nothing and never alarm.
        required = ["ENDPOINT_NAME", "MLOPS_MODEL_GROUP", "LEDGER_TABLE_NAME",
                    "IDEMPOTENCY_TABLE_NAME"] + (["SAGEMAKER_EXECUTION_ROLE_ARN",
                                                  "DATA_CAPTURE_S3_URI"] if needs_role else [])
        problems = [f"{name} is required" for name in required if not env.get(name, "").strip()]
        settings = cls(
            endpoint_name=env.get("ENDPOINT_NAME", ""),
            model_group=env.get("MLOPS_MODEL_GROUP", ""),
            ledger_table=env.get("LEDGER_TABLE_NAME", ""),
            idempotency_table=env.get("IDEMPOTENCY_TABLE_NAME", ""),
            execution_role_arn=env.get("SAGEMAKER_EXECUTION_ROLE_ARN", ""),
            notification_topic_arn=env.get("NOTIFICATION_TOPIC_ARN", ""),
            instance_type=env.get("ENDPOINT_INSTANCE_TYPE", "") or "ml.m5.large",
            instance_count=_int(env, "CHAMPION_INSTANCE_COUNT", 1, problems),
            fallback_instance_count=_int(env, "FALLBACK_INSTANCE_COUNT", 1, problems),
            warm_fallbacks=_int(env, "WARM_FALLBACKS", 2, problems),
            cooldown_minutes=_int(env, "ROLLBACK_COOLDOWN_MINUTES", 15, problems),
            capture_s3_uri=env.get("DATA_CAPTURE_S3_URI", ""),
            capture_percent=_int(env, "DATA_CAPTURE_SAMPLING_PERCENT", 100, problems),
            capture_kms_key_id=env.get("DATA_CAPTURE_KMS_KEY_ID", ""),
        )
        if problems:
            raise SettingsError("; ".join(problems))
        return settings


MONITORING_REQUIRED = ("ENDPOINT_NAME", "MLOPS_MODEL_GROUP", "LEDGER_TABLE_NAME")


def require(names: tuple[str, ...], environ: Mapping[str, str] | None = None) -> None:
    env = os.environ if environ is None else environ
    missing = [name for name in names if not env.get(name)]
    if missing:
        raise SettingsError(f"missing environment variable(s): {', '.join(missing)}")


def monitoring_dependencies(environ: Mapping[str, str] | None = None) -> dict:
    """Registry, endpoint adapter, S3 reader and EMF sink of the monitoring Lambdas."""
    from mlops_kit.aws.monitoring import S3Documents
    from mlops_kit.deploy.sagemaker_endpoint import SageMakerEndpoints
    from mlops_kit.monitoring.metrics import PowertoolsMetricSink
    from mlops_kit.registry.sagemaker import SageMakerRegistry

    env = os.environ if environ is None else environ
    return {"registry": SageMakerRegistry(env["MLOPS_MODEL_GROUP"],
                                          ledger_table=env["LEDGER_TABLE_NAME"]),
            "endpoints": SageMakerEndpoints(), "documents": S3Documents(),
            "sink": PowertoolsMetricSink()}
