"""Drift monitor Lambda (scheduled): `mlops_kit.monitoring.run.DriftRun` with the AWS adapters:
the last window of captured traffic (S3) against the serving champion's baseline, the ground
truth landed in the interval joined to the champion's scores (when GROUND_TRUTH_S3_URI is
set), the champion's SageMaker metrics and capture health, published as EMF (Powertools),
each datapoint stamped with the time it describes.

Only its own schedule's recent runs are acted on (`mlops_kit.core.schedules`): any other event
publishes nothing. Corrupt or partial capture lines are skipped and counted (CaptureSkipped),
never fatal. Settings and IAM: `mlops_kit.contract.FUNCTIONS["drift_monitor"]`.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops_kit.contract import DriftMonitorSettings, function
from mlops_kit.core.schedules import NotThisSchedule, scheduled_run_time

CONTRACT = function("drift_monitor")
logger = Logger(service=CONTRACT.service)
tracer = Tracer(service=CONTRACT.service)
metrics = Metrics(namespace="MLOpsKit/Monitoring", service=CONTRACT.service)

settings: DriftMonitorSettings = CONTRACT.settings()

_deps: dict[str, Any] = {}
clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
"""Now, for judging the event's age (injectable: the deployed-twin tests run a schedule)."""


def dependencies() -> dict[str, Any]:
    """Built once per container (`mlops_kit.homes.aws`); tests may inject their own."""
    if not _deps:
        from mlops_kit.homes import aws

        _deps.update(aws.monitoring(settings).as_dict())
    return _deps


def drift_run():
    """The run over this container's dependencies (the AWS adapters of each port)."""
    from mlops_kit.aws.ground_truth import S3Labels
    from mlops_kit.aws.monitoring import (SERVICE_METRICS_LAG, S3Capture, SageMakerBaselines,
                                          SageMakerSignals)
    from mlops_kit.monitoring.run import DriftRun, Schedule

    deps = dependencies()
    if deps.get("cloudwatch") is None:  # one client per container, as every adapter's
        from mlops_kit.aws.clients import default_client

        deps["cloudwatch"] = default_client("cloudwatch")
    labels = None
    if "ground_truth" in deps and settings.ground_truth_s3_uri:
        labels = S3Labels(deps["ground_truth"], deps["documents"],
                          ground_truth_uri=settings.ground_truth_s3_uri,
                          capture_uri=settings.capture_s3_uri)
    return DriftRun(
        settings.endpoint_name,
        baselines=SageMakerBaselines(deps["endpoints"], deps["registry"], deps["documents"]),
        capture=S3Capture(deps["documents"], settings.capture_s3_uri), sink=deps["sink"],
        schedule=Schedule(interval=timedelta(minutes=settings.schedule_minutes),
                          capture_window=timedelta(minutes=settings.window_minutes),
                          label_lookback=timedelta(hours=settings.ground_truth_lookback_hours),
                          service_lag=SERVICE_METRICS_LAG),
        labels=labels, home=SageMakerSignals(deps["cloudwatch"]))


def monitor(now: datetime) -> dict[str, Any]:
    return drift_run().run(now).summary()


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context
@event_source(data_class=EventBridgeEvent)
def lambda_handler(event: EventBridgeEvent, context: LambdaContext) -> dict[str, Any]:
    try:
        now = scheduled_run_time(event.raw_event, now=clock(),
                                 schedule_minutes=settings.schedule_minutes)
    except NotThisSchedule as exc:
        logger.warning("event rejected", extra={"reason": str(exc)})
        return {"status": "rejected", "reason": str(exc)}
    summary = monitor(now)
    logger.info("drift monitor run", extra=summary)
    return summary
