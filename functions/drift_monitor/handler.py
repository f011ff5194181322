"""Drift monitor Lambda (scheduled): `mlops_kit.monitoring.run.DriftRun` with the AWS adapters,
wired by `mlops_kit.homes.aws.drift_run`: the last window of captured traffic (S3) against the
serving champion's baseline, the ground truth landed in the interval joined to the champion's
scores (when GROUND_TRUTH_S3_URI is set), the champion's SageMaker metrics and capture health,
published as EMF (Powertools), each datapoint stamped with the time it describes.

Only its own schedule's recent runs are acted on (`mlops_kit.core.schedules`): any other event
publishes nothing. Corrupt or partial capture lines are skipped and counted (CaptureSkipped),
never fatal. In a fleet, each model has its own schedule, whose event names the model
(`detail.model`, `mlops_kit.fleet.routes`). Settings and IAM: `mlops_kit.contract.FUNCTIONS["drift_monitor"]`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable

from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops_kit.aws.lambda_runtime import LambdaRuntime
from mlops_kit.contract import MONITORING_NAMESPACE
from mlops_kit.core.schedules import NotThisSchedule, scheduled_run_time
from mlops_kit.fleet.routes import Route

runtime = LambdaRuntime("drift_monitor", MONITORING_NAMESPACE)
logger, settings = runtime.logger, runtime.settings


def _monitoring(settings: Any) -> dict[str, Any]:
    from mlops_kit.homes import aws  # imported on first run: the cold start stays small

    return aws.monitoring(settings, runtime.clients).as_dict()


dependencies = runtime.adapters(_monitoring)
"""Each model's adapters (`homes.aws.monitoring`), built once per container."""
_deps = dependencies.only
"""The single model's; tests may put their own."""
clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
"""Now, for judging the event's age (injectable: the deployed-twin tests run a schedule)."""


def monitor(now: datetime, route: Route | None = None) -> dict[str, Any]:
    """One run at `now` for `route`'s model (default: the only one), over its adapters."""
    from mlops_kit.homes import aws

    route = route or runtime.routes.only
    deps = dependencies(route)
    adapters = aws.Monitoring(**deps)
    summary = aws.drift_run(route.settings, adapters=adapters).run(now).summary()
    deps.setdefault("cloudwatch", adapters.cloudwatch)  # one client per container
    return summary


@runtime.handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        route = runtime.routes.for_schedule(event)
        now = scheduled_run_time(event, now=clock(),
                                 schedule_minutes=route.settings.schedule_minutes)
    except NotThisSchedule as exc:
        logger.warning("event rejected", extra={"reason": str(exc)})
        return {"status": "rejected", "reason": str(exc)}
    summary = monitor(now, route)
    logger.info("drift monitor run", extra=summary)
    return summary
