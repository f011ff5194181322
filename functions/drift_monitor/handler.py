"""Drift monitor Lambda (scheduled): `mlops_kit.monitoring.run.DriftRun` with the AWS adapters,
wired by `mlops_kit.homes.aws.drift_run`: the last window of captured traffic (S3) against the
serving champion's baseline, the ground truth landed in the interval joined to the champion's
scores (when GROUND_TRUTH_S3_URI is set), the champion's SageMaker metrics and capture health,
published as EMF (Powertools), each datapoint stamped with the time it describes.

Only its own schedule's recent runs are acted on (`mlops_kit.core.schedules`): any other event
publishes nothing. Corrupt or partial capture lines are skipped and counted (CaptureSkipped),
never fatal. Settings and IAM: `mlops_kit.contract.FUNCTIONS["drift_monitor"]`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops_kit.contract import DriftMonitorSettings, function
from mlops_kit.core.metric_catalogue import NAMESPACE
from mlops_kit.core.schedules import NotThisSchedule, scheduled_run_time

CONTRACT = function("drift_monitor")
logger = Logger(service=CONTRACT.service)
tracer = Tracer(service=CONTRACT.service)
metrics = Metrics(namespace=NAMESPACE, service=CONTRACT.service)

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


def monitor(now: datetime) -> dict[str, Any]:
    """One run at `now` over this container's adapters (`mlops_kit.homes.aws.drift_run`)."""
    from mlops_kit.homes import aws

    deps = dependencies()
    adapters = aws.Monitoring(**deps)
    summary = aws.drift_run(settings, adapters=adapters).run(now).summary()
    deps.setdefault("cloudwatch", adapters.cloudwatch)  # one client per container
    return summary


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
