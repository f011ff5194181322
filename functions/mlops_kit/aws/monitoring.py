"""The monitoring Lambdas' AWS reads: the champion's baselines (from its model package) and the
endpoint's data capture for a time window (S3, SageMaker's key layout)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

from mlops_kit.aws.clients import LazyClient
from mlops_kit.core.alarms import SERVICE_METRICS_LAG_MINUTES

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
        raise ValueError(f"{model_package_arn} records no drift baseline and evaluation")
    return baseline, evaluation


IAM_ACTIONS_SERVICE_METRICS = ("cloudwatch:GetMetricData",)
SERVICE_METRICS = (
    # (SageMaker's per-variant metric, statistic, the kit's endpoint-level name, unit)
    ("Invocation5XXErrors", "Sum", "ChampionInvocation5XXErrors", "Count"),
    ("ModelLatency", "p99", "ChampionModelLatency", "Microseconds"),
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
                             start: datetime, end: datetime) -> list:
    """The champion variant's SageMaker metrics for the minutes in [start, end), one datum
    per minute stamped with its minute, republished at endpoint level.

    SageMaker publishes 5XX errors and latency per variant; an alarm on one variant name would
    watch the wrong variant after the next promotion or rollback. Republished under
    `EndpointName` only, for whichever variant is champion now, the alarms never move.

    Both ends are floored to the minute (GetMetricData rounds a start down but not an end), so
    adjacent windows [a, b), [b, c) never share or skip a minute: a Sum alarm counts each
    minute once. Call it with the window shifted back by `SERVICE_METRICS_LAG`.
    """
    from mlops_kit.monitoring.metrics import MetricDatum

    start, end = _minute(start), _minute(end)
    if end <= start:
        return []
    queries = [{"Id": f"m{i}", "ReturnData": True, "MetricStat": {
        "Metric": {"Namespace": "AWS/SageMaker", "MetricName": metric,
                   "Dimensions": [{"Name": "EndpointName", "Value": endpoint_name},
                                  {"Name": "VariantName", "Value": variant_name}]},
        "Period": 60, "Stat": stat}} for i, (metric, stat, _, _) in enumerate(SERVICE_METRICS)]
    data = []
    kwargs: dict[str, Any] = {}
    while True:
        response = cloudwatch.get_metric_data(MetricDataQueries=queries, StartTime=start,
                                              EndTime=end, **kwargs)
        for result in response.get("MetricDataResults", []):
            _, _, name, unit = SERVICE_METRICS[int(result["Id"][1:])]
            for at, value in zip(result.get("Timestamps", []), result.get("Values", [])):
                if start <= at < end:
                    data.append(MetricDatum(name, float(value), {"EndpointName": endpoint_name},
                                            at, unit))
        if not response.get("NextToken"):
            return data
        kwargs = {"NextToken": response["NextToken"]}
