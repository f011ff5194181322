"""Synthetic probe Lambda (scheduled): every variant of the endpoint, warm fallbacks included,
is invoked with TargetVariant and rows built from the champion's drift baseline; per-variant
ProbeSuccess and ProbeLatency go to CloudWatch (EMF). The rollback controller never picks a
fallback whose last probe failed.

Environment: ENDPOINT_NAME, MLOPS_MODEL_GROUP, LEDGER_TABLE_NAME (required);
PROBE_MAX_LATENCY_MS (default 1000).
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops_kit.aws.lambda_settings import (MONITORING_REQUIRED, monitoring_dependencies,
                                          require)
from mlops_kit.monitoring.probe import baseline_rows, probe_metrics, probe_variants

logger = Logger(service="probe")
tracer = Tracer(service="probe")
metrics = Metrics(namespace="MLOpsKit/Monitoring", service="probe")

require(MONITORING_REQUIRED)
ENDPOINT = os.environ["ENDPOINT_NAME"]
MAX_LATENCY_MS = float(os.environ.get("PROBE_MAX_LATENCY_MS") or 1000)
IAM_ACTIONS = ("sagemaker:InvokeEndpoint",)

_deps: dict[str, Any] = {}


def dependencies() -> dict[str, Any]:
    """Built once per container; tests inject their own."""
    if not _deps:
        _deps.update(monitoring_dependencies())
        from mlops_kit.aws.clients import default_client

        _deps["runtime"] = default_client("sagemaker-runtime")
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
    deps["sink"].put(probe_metrics(results, ENDPOINT, datetime.now(timezone.utc)))
    summary = {"status": "probed", "variants": {r.variant_name: r.to_dict() for r in results}}
    logger.info("probe run", extra=summary)
    return summary
