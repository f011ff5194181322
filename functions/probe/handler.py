"""Synthetic probe Lambda (scheduled): every variant of the endpoint, warm fallbacks included,
is invoked with TargetVariant and rows built from the champion's drift baseline; per-variant
ProbeSuccess and ProbeLatency go to CloudWatch (EMF). The rollback controller never picks a
fallback whose last probe failed. Only its own schedule's recent runs are acted on.

Settings and IAM: `mlops_kit.contract.FUNCTIONS["probe"]`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops_kit.contract import ProbeSettings, function
from mlops_kit.core.schedules import NotThisSchedule, scheduled_run_time
from mlops_kit.monitoring.probe import baseline_rows, probe_metrics, probe_variants

CONTRACT = function("probe")
logger = Logger(service=CONTRACT.service)
tracer = Tracer(service=CONTRACT.service)
metrics = Metrics(namespace="MLOpsKit/Monitoring", service=CONTRACT.service)

settings: ProbeSettings = CONTRACT.settings()
ENDPOINT = settings.endpoint_name
MAX_LATENCY_MS = float(settings.max_latency_ms)

_deps: dict[str, Any] = {}
clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
"""Now, for judging the event's age (injectable: the deployed-twin tests run a schedule)."""


def dependencies() -> dict[str, Any]:
    """Built once per container (`mlops_kit.homes.aws`); tests may inject their own."""
    if not _deps:
        from mlops_kit.homes import aws

        _deps.update(aws.monitoring(settings).as_dict())
    return _deps


def invoke(variant: str, body: str) -> tuple[int, str]:
    from botocore.exceptions import ClientError

    try:
        response = dependencies()["runtime"].invoke_endpoint(
            EndpointName=ENDPOINT, TargetVariant=variant, ContentType="text/csv",
            Accept="text/csv", Body=body.encode())
    except ClientError as exc:
        meta = exc.response.get("ResponseMetadata", {})
        return int(meta.get("HTTPStatusCode", 500)), str(exc)
    return 200, response["Body"].read().decode()


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    from mlops_kit.aws.monitoring import champion_baseline_uris
    from mlops_kit.core.rotation import serving_champion

    try:
        scheduled_run_time(event, now=clock(),
                           schedule_minutes=settings.schedule_minutes)
    except NotThisSchedule as exc:
        logger.warning("event rejected", extra={"reason": str(exc)})
        return {"status": "rejected", "reason": str(exc)}
    deps = dependencies()
    view = deps["endpoints"].describe(ENDPOINT)
    if view is None or serving_champion(view.variants) is None:
        return {"status": "skipped", "reason": f"endpoint {ENDPOINT} serves nothing"}
    champion = serving_champion(view.variants)
    registry = deps["registry"]
    baseline_uri, _ = champion_baseline_uris(registry.sagemaker,
                                             registry.model_package_arn(champion.version))
    baseline = deps["documents"].json(baseline_uri)
    schema = baseline["schema"]
    body = baseline_rows(baseline["features"], schema["numeric"] + schema["categorical"])
    results = probe_variants(invoke, [v.variant_name for v in view.variants], body,
                             MAX_LATENCY_MS)
    # Stamped when the variants answered, not when the run was scheduled.
    deps["sink"].put(probe_metrics(results, ENDPOINT, datetime.now(timezone.utc)))
    summary = {"status": "probed", "variants": {r.variant_name: r.to_dict() for r in results}}
    logger.info("probe run", extra=summary)
    return summary
