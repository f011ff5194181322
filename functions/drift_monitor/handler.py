"""Drift monitor Lambda (scheduled): the last window of captured traffic against the serving
champion's baseline, published as CloudWatch metrics with Powertools (EMF).

Environment: ENDPOINT_NAME, MLOPS_MODEL_GROUP, LEDGER_TABLE_NAME, CAPTURE_S3_URI (required);
WINDOW_MINUTES (default 10). Corrupt or partial capture lines are skipped and counted
(CaptureSkipped), never fatal.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops_kit.aws.lambda_settings import (MONITORING_REQUIRED, monitoring_dependencies,
                                          require)
from mlops_kit.monitoring.drift_monitor import (ChampionBaseline, DecodedCapture, compute_metrics,
                                                decode_capture, parse_capture_lines)

logger = Logger(service="drift-monitor")
tracer = Tracer(service="drift-monitor")
metrics = Metrics(namespace="MLOpsKit/Monitoring", service="drift-monitor")

require(MONITORING_REQUIRED + ("CAPTURE_S3_URI",))
ENDPOINT = os.environ["ENDPOINT_NAME"]
CAPTURE_URI = os.environ["CAPTURE_S3_URI"]
WINDOW = timedelta(minutes=int(os.environ.get("WINDOW_MINUTES") or 10))

_deps: dict[str, Any] = {}


def dependencies() -> dict[str, Any]:
    """Built once per container; tests inject their own."""
    if not _deps:
        _deps.update(monitoring_dependencies())
    return _deps


def monitor(now: datetime) -> dict[str, Any]:
    from mlops_kit.aws.monitoring import champion_baseline_uris, champion_service_metrics
    from mlops_kit.core.rotation import serving_champion

    deps = dependencies()
    view = deps["endpoints"].describe(ENDPOINT)
    if view is None:
        return {"status": "skipped", "reason": f"endpoint {ENDPOINT} does not exist"}
    champion = serving_champion(view.variants)
    if champion is None:
        return {"status": "skipped", "reason": "no variant takes traffic"}
    registry = deps["registry"]
    baseline_uri, evaluation_uri = champion_baseline_uris(
        registry.sagemaker, registry.model_package_arn(champion.version))
    baseline = ChampionBaseline.from_documents(
        champion.version, champion.variant_name, deps["documents"].json(baseline_uri),
        deps["documents"].json(evaluation_uri))
    by_variant: dict[str, DecodedCapture] = {}
    for variant in view.variants:
        records, corrupt = [], 0
        for text in deps["documents"].capture_texts(CAPTURE_URI, ENDPOINT, variant.variant_name,
                                                    now - WINDOW, now):
            parsed, torn = parse_capture_lines(text)
            records.extend(parsed)
            corrupt += torn
        decoded = decode_capture(records, baseline.feature_order)
        decoded.add_unreadable_lines(corrupt)
        by_variant[variant.variant_name] = decoded
    data = compute_metrics(baseline, by_variant, endpoint_name=ENDPOINT, at=now)
    if "cloudwatch" not in deps:
        from mlops_kit.aws.clients import default_client

        deps["cloudwatch"] = default_client("cloudwatch")
    data += champion_service_metrics(deps["cloudwatch"], ENDPOINT, champion.variant_name,
                                     now - WINDOW, now)
    deps["sink"].put(data)
    return {"status": "published", "champion": champion.version, "metrics": len(data),
            "records": {k: v.records for k, v in by_variant.items()},
            "skipped": {k: v.skipped for k, v in by_variant.items()},
            "skipped_reasons": {k: v.skipped_reasons for k, v in by_variant.items() if v.skipped}}


def window_end(event: Any) -> datetime:
    """The scheduled event's time (UTC), or now for a manual run without one; ValueError
    naming the problem for anything else, so a bad event publishes nothing."""
    if not isinstance(event, dict):
        raise ValueError("event is not a JSON object")
    at = event.get("time")
    if at is None:
        return datetime.now(timezone.utc)
    try:
        parsed = datetime.fromisoformat(at.replace("Z", "+00:00"))
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        _ = parsed - WINDOW  # OverflowError when the window would start before year 1
    except (AttributeError, ValueError, OverflowError):
        raise ValueError(f"event time is not an ISO-8601 time: {at!r}") from None
    return parsed


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context
@event_source(data_class=EventBridgeEvent)
def lambda_handler(event: EventBridgeEvent, context: LambdaContext) -> dict[str, Any]:
    try:
        now = window_end(event.raw_event)
    except ValueError as exc:
        logger.warning("event rejected", extra={"reason": str(exc)})
        return {"status": "rejected", "reason": str(exc)}
    summary = monitor(now)
    logger.info("drift monitor run", extra=summary)
    return summary
