"""The monitoring Lambdas' AWS reads, and the drift run's AWS adapters
(`mlops_kit.monitoring.run`): the champion's baselines (`SageMakerBaselines`: endpoint, model
package, S3 documents), the endpoint's data capture of a window (`S3Capture`, SageMaker's key
layout) and what only AWS measures (`SageMakerSignals`: the champion's SageMaker metrics
republished at endpoint level, capture health). Ground truth: `mlops_kit.aws.ground_truth`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator, Mapping, Sequence

from mlops_kit.aws.clients import LazyClient
from mlops_kit.core.alarms import SERVICE_METRICS_LAG_MINUTES
from mlops_kit.core.metric_catalogue import CHAMPION_5XX, CHAMPION_LATENCY, MetricDatum

IAM_ACTIONS = ("s3:GetObject", "s3:ListBucket", "sagemaker:DescribeModelPackage")


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


class S3Documents:
    def __init__(self, client: Any = None):
        self._client = LazyClient("s3", client)

    def json(self, uri: str) -> Any:
        bucket, key = split_s3_uri(uri)
        return json.loads(self._client().get_object(Bucket=bucket, Key=key)["Body"].read())

    def capture_texts(self, capture_uri: str, endpoint_name: str, variant_name: str,
                      start: datetime, end: datetime) -> Iterator[str]:
        """Capture files of one variant written in [start, end): SageMaker writes under
        {prefix}/{endpoint}/{variant}/yyyy/mm/dd/hh/, so only those hours are listed."""
        bucket, prefix = split_s3_uri(capture_uri.rstrip("/") + "/")
        # Files land minutes after their requests, under the requests' hour: list the hour
        # before the window too, and select by the time each file was written.
        hour = (start - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
        paginator = self._client().get_paginator("list_objects_v2")
        while hour <= end:
            key_prefix = f"{prefix}{endpoint_name}/{variant_name}/{hour:%Y/%m/%d/%H}/"
            for page in paginator.paginate(Bucket=bucket, Prefix=key_prefix):
                for item in page.get("Contents", []):
                    if start <= item["LastModified"] < end:
                        body = self._client().get_object(Bucket=bucket, Key=item["Key"])["Body"]
                        yield body.read().decode("utf-8", errors="replace")
            hour += timedelta(hours=1)


def champion_baseline_uris(sagemaker: Any, model_package_arn: str) -> tuple[str, str]:
    """(baseline.json, evaluation.json) S3 URIs recorded on the model package."""
    package = sagemaker.describe_model_package(ModelPackageName=model_package_arn)
    drift = package.get("DriftCheckBaselines", {})
    baseline = drift.get("ModelDataQuality", {}).get("Statistics", {}).get("S3Uri", "")
    evaluation = (drift.get("ModelQuality", {}).get("Statistics", {}).get("S3Uri", "")
                  or package.get("ModelMetrics", {}).get("ModelQuality", {})
                  .get("Statistics", {}).get("S3Uri", ""))
    if not baseline or not evaluation:
        from mlops_kit.monitoring.run import BaselineMissing

        raise BaselineMissing(model_package_arn, "drift baseline" if not baseline
                              else "evaluation")
    return baseline, evaluation


IAM_ACTIONS_SERVICE_METRICS = ("cloudwatch:GetMetricData",)
SERVICE_METRICS = (
    # (SageMaker's per-variant metric, statistic, the kit's endpoint-level metric)
    ("Invocation5XXErrors", "Sum", CHAMPION_5XX),
    ("ModelLatency", "p99", CHAMPION_LATENCY),
)
SERVICE_METRICS_LAG = timedelta(minutes=SERVICE_METRICS_LAG_MINUTES)
"""How far in the past the window of SageMaker's per-minute metrics ends: they reach
CloudWatch a minute or two after the minute they describe, and a minute read before it arrived
would never be republished. A run at `now` reads [now - window - LAG, now - LAG): with the
window equal to the schedule, consecutive runs cover every minute exactly once. The alarms'
windows allow for it (`mlops_kit.core.alarms.AlarmSpec.fit`, the same number)."""


def _minute(at: datetime) -> datetime:
    at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    return at.replace(second=0, microsecond=0)


def champion_service_metrics(cloudwatch: Any, endpoint_name: str, variant_name: str,
                             start: datetime, end: datetime) -> list[MetricDatum]:
    """The champion variant's SageMaker metrics for the minutes in [start, end), one datum
    per minute stamped with its minute, republished at endpoint level.

    SageMaker publishes 5XX errors and latency per variant; an alarm on one variant name would
    watch the wrong variant after the next promotion or rollback. Republished under
    `EndpointName` only, for whichever variant is champion now, the alarms never move.

    Both ends are floored to the minute (GetMetricData rounds a start down but not an end), so
    adjacent windows [a, b), [b, c) never share or skip a minute: a Sum alarm counts each
    minute once. Call it with the window shifted back by `SERVICE_METRICS_LAG`.
    """
    start, end = _minute(start), _minute(end)
    if end <= start:
        return []
    queries = [{"Id": f"m{i}", "ReturnData": True, "MetricStat": {
        "Metric": {"Namespace": "AWS/SageMaker", "MetricName": metric,
                   "Dimensions": [{"Name": "EndpointName", "Value": endpoint_name},
                                  {"Name": "VariantName", "Value": variant_name}]},
        "Period": 60, "Stat": stat}} for i, (metric, stat, _) in enumerate(SERVICE_METRICS)]
    data = []
    kwargs: dict[str, Any] = {}
    while True:
        response = cloudwatch.get_metric_data(MetricDataQueries=queries, StartTime=start,
                                              EndTime=end, **kwargs)
        for result in response.get("MetricDataResults", []):
            _, _, spec = SERVICE_METRICS[int(result["Id"][1:])]
            for at, value in zip(result.get("Timestamps", []), result.get("Values", [])):
                if start <= at < end:
                    data.append(spec.datum(value, {"EndpointName": endpoint_name}, at))
        if not response.get("NextToken"):
            return data
        kwargs = {"NextToken": response["NextToken"]}


def endpoint_invocations(cloudwatch: Any, endpoint_name: str, variant_names: Sequence[str],
                         start: datetime, end: datetime) -> float:
    """Sum of SageMaker's Invocations over every variant for the minutes in [start, end),
    floored to the minute as `champion_service_metrics` does (adjacent runs never share or
    skip a minute). A minute without traffic has no datapoint: 0."""
    start, end = _minute(start), _minute(end)
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


# -- the drift run's AWS adapters (mlops_kit.monitoring.run) ----------------------------------

class SageMakerBaselines:
    """The serving champion (weights on the endpoint) and its baselines, as its model package
    records them (DriftCheckBaselines / ModelMetrics) and S3 holds them."""

    def __init__(self, endpoints: Any, registry: Any, documents: S3Documents):
        self.endpoints, self.registry, self.documents = endpoints, registry, documents

    def serving(self, endpoint_name: str):
        from mlops_kit.monitoring.drift_monitor import ChampionBaseline
        from mlops_kit.monitoring.run import NotServing, Serving, champion_or_reason

        view = self.endpoints.describe(endpoint_name)
        champion = champion_or_reason(endpoint_name, view)
        if isinstance(champion, NotServing):
            return champion
        baseline_uri, evaluation_uri = champion_baseline_uris(
            self.registry.sagemaker, self.registry.model_package_arn(champion.version))
        baseline = ChampionBaseline.from_documents(
            champion.version, champion.variant_name, self.documents.json(baseline_uri),
            self.documents.json(evaluation_uri))
        return Serving(baseline, tuple(v.variant_name for v in view.variants))


class S3Capture:
    """Every variant's capture files written in the window (torn lines counted)."""

    def __init__(self, documents: S3Documents, capture_uri: str):
        self.documents, self.capture_uri = documents, capture_uri

    def read(self, endpoint_name: str, variant_names: Sequence[str], start: datetime,
             end: datetime) -> dict[str, tuple[list[dict], int]]:
        from mlops_kit.monitoring.drift_monitor import parse_capture_lines

        by_variant = {}
        for variant in variant_names:
            records, unreadable = [], 0
            for text in self.documents.capture_texts(self.capture_uri, endpoint_name, variant,
                                                     start, end):
                parsed, torn = parse_capture_lines(text)
                records.extend(parsed)
                unreadable += torn
            by_variant[variant] = (records, unreadable)
        return by_variant


class SageMakerSignals:
    """What only the AWS home measures, over the run's service window (one schedule interval,
    `SERVICE_METRICS_LAG` behind the run): the champion's SageMaker 5XX and latency per minute,
    republished at endpoint level, and whether capture keeps up with the invocations
    (CaptureRecords, UncapturedInvocations)."""

    def __init__(self, cloudwatch: Any = None):
        self._cloudwatch = LazyClient("cloudwatch", cloudwatch)

    def measure(self, endpoint_name: str, serving: Any, decoded: Mapping[str, Any],
                windows: Any):
        from mlops_kit.monitoring.drift_monitor import capture_health_metrics
        from mlops_kit.monitoring.run import HomeSignals

        if serving is None:
            return HomeSignals()
        start, end = windows.service
        data = champion_service_metrics(self._cloudwatch(), endpoint_name,
                                        serving.baseline.variant_name, start, end)
        invocations = endpoint_invocations(self._cloudwatch(), endpoint_name,
                                           serving.variant_names, start, end)
        data += capture_health_metrics(decoded, invocations, endpoint_name=endpoint_name,
                                       at=windows.at)
        return HomeSignals(data, {"invocations": invocations})

    def commit(self) -> None:
        """Stateless: each run reads its own window."""
