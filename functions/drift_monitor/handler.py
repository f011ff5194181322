"""Drift monitor Lambda (scheduled): the last window of captured traffic against the serving
champion's baseline, published as CloudWatch metrics with Powertools (EMF), each datapoint
stamped with the time it describes.

Only its own schedule's recent runs are acted on (`mlops_kit.core.schedules`): any other event
publishes nothing. Corrupt or partial capture lines are skipped and counted (CaptureSkipped),
never fatal. Whether capture keeps up with the traffic: CaptureRecords for the endpoint and
UncapturedInvocations (the interval's SageMaker invocations when the capture held none; the
notify-only capture-stopped alarm). Settings and IAM: `mlops_kit.contract.FUNCTIONS["drift_monitor"]`.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops_kit.contract import DriftMonitorSettings, function
from mlops_kit.core.schedules import NotThisSchedule, scheduled_run_time
from mlops_kit.monitoring.drift_monitor import (ChampionBaseline, DecodedCapture,
                                                capture_health_metrics, compute_metrics,
                                                decode_capture, parse_capture_lines)

CONTRACT = function("drift_monitor")
logger = Logger(service=CONTRACT.service)
tracer = Tracer(service=CONTRACT.service)
metrics = Metrics(namespace="MLOpsKit/Monitoring", service=CONTRACT.service)

settings: DriftMonitorSettings = CONTRACT.settings()
ENDPOINT = settings.endpoint_name
CAPTURE_URI = settings.capture_s3_uri
WINDOW = timedelta(minutes=settings.window_minutes)
SCHEDULE = timedelta(minutes=settings.schedule_minutes)

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
    from mlops_kit.aws.monitoring import (SERVICE_METRICS_LAG, champion_baseline_uris,
                                          champion_service_metrics)
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
    # SageMaker's per-minute metrics arrive late: one schedule interval, shifted back by the
    # lag, so consecutive runs cover every minute once (a Sum must not count a minute twice).
    data += champion_service_metrics(deps["cloudwatch"], ENDPOINT, champion.variant_name,
                                     now - SCHEDULE - SERVICE_METRICS_LAG,
                                     now - SERVICE_METRICS_LAG)
    invocations = endpoint_invocations(deps["cloudwatch"], ENDPOINT,
                                       [v.variant_name for v in view.variants],
                                       now - SCHEDULE - SERVICE_METRICS_LAG,
                                       now - SERVICE_METRICS_LAG)
    data += capture_health_metrics(by_variant, invocations, endpoint_name=ENDPOINT, at=now)
    labelled = _performance(deps, baseline, now)
    data += labelled
    deps["sink"].put(data)
    return {"status": "published", "champion": champion.version, "metrics": len(data),
            "records": {k: v.records for k, v in by_variant.items()},
            "skipped": {k: v.skipped for k, v in by_variant.items()},
            "skipped_reasons": {k: v.skipped_reasons for k, v in by_variant.items() if v.skipped},
            "invocations": invocations}


def endpoint_invocations(cloudwatch: Any, endpoint_name: str, variant_names: list[str],
                         start: datetime, end: datetime) -> float:
    """Sum of SageMaker's Invocations over every variant for the minutes in [start, end),
    floored to the minute as `champion_service_metrics` does (adjacent runs never share or
    skip a minute). A minute without traffic has no datapoint: 0."""
    start, end = (t.replace(second=0, microsecond=0) for t in (start, end))
    if end <= start or not variant_names:
        return 0.0
    queries = [{"Id": f"i{i}", "ReturnData": True, "MetricStat": {
        "Metric": {"Namespace": "AWS/SageMaker", "MetricName": "Invocations",
                   "Dimensions": [{"Name": "EndpointName", "Value": endpoint_name},
                                  {"Name": "VariantName", "Value": name}]},
        "Period": 60, "Stat": "Sum"}} for i, name in enumerate(variant_names)]
    total, kwargs = 0.0, {}
    while True:
        response = cloudwatch.get_metric_data(MetricDataQueries=queries, StartTime=start,
                                              EndTime=end, **kwargs)
        for result in response.get("MetricDataResults", []):
            total += sum(float(v) for at, v in zip(result.get("Timestamps", []),
                                                    result.get("Values", []))
                         if start <= at < end)
        if not response.get("NextToken"):
            return total
        kwargs = {"NextToken": response["NextToken"]}


def _performance(deps: dict[str, Any], baseline: ChampionBaseline, now: datetime) -> list:
    """AUPR of the champion on the labels that landed in this run's interval, joined to the
    scores it gave over the lookback (labels arrive after their predictions)."""
    if "ground_truth" not in deps or not settings.ground_truth_s3_uri:
        return []
    from mlops_kit.aws.ground_truth import champion_scores_by_id
    from mlops_kit.monitoring.ground_truth import MIN_LABELLED_ROWS, labelled_aupr
    from mlops_kit.monitoring.metrics import MetricDatum

    truth = deps["ground_truth"].read(settings.ground_truth_s3_uri, ENDPOINT, now - SCHEDULE,
                                      now)
    if truth.skipped:
        logger.warning("ground truth lines skipped",
                       extra={"skipped": truth.skipped, "reasons": truth.skipped_reasons})
    if len(truth.labels) < MIN_LABELLED_ROWS:  # no datapoint possible: no capture read
        return []
    lookback = timedelta(hours=settings.ground_truth_lookback_hours)
    scores = champion_scores_by_id(deps["documents"], CAPTURE_URI, ENDPOINT,
                                   baseline.variant_name, baseline.feature_order,
                                   now - lookback, now, only_ids=truth.labels)
    aupr = labelled_aupr(truth.labels, scores)
    return [] if aupr is None else [MetricDatum("AUPR", aupr, {"EndpointName": ENDPOINT}, now)]


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
