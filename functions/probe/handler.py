"""Synthetic probe Lambda (scheduled): every variant of the endpoint, warm fallbacks included,
is invoked with TargetVariant and rows built from the champion's drift baseline; per-variant
ProbeSuccess and ProbeLatency go to CloudWatch (EMF). The rollback controller never picks a
fallback whose last probe failed. Only its own schedule's recent runs are acted on; in a fleet,
each model has its own schedule, whose event names the model (`detail.model`).

Settings and IAM: `mlops_kit.contract.FUNCTIONS["probe"]`; the run: `mlops_kit.aws.probe_run`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable

from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops_kit.aws.lambda_runtime import LambdaRuntime
from mlops_kit.aws.probe_run import probe_endpoint
from mlops_kit.contract import MONITORING_NAMESPACE
from mlops_kit.core.schedules import NotThisSchedule, scheduled_run_time
from mlops_kit.homes import aws

runtime = LambdaRuntime("probe", MONITORING_NAMESPACE)
settings, clients = runtime.settings, runtime.clients
dependencies = runtime.adapters(lambda s: aws.monitoring(s, clients).as_dict())
"""Each model's adapters (`homes.aws.monitoring`), built once per container."""
_deps = dependencies.only
"""The single model's; tests may put their own."""
clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
"""Now, for judging the event's age (injectable: the deployed-twin tests run a schedule)."""


@runtime.handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        route = runtime.routes.for_schedule(event)
        scheduled_run_time(event, now=clock(), schedule_minutes=route.settings.schedule_minutes)
    except NotThisSchedule as exc:
        runtime.logger.warning("event rejected", extra={"reason": str(exc)})
        return {"status": "rejected", "reason": str(exc)}
    summary = probe_endpoint(dependencies(route), route.settings)
    runtime.logger.info("probe run", extra=summary)
    return summary
