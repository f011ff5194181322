"""Rollback inputs that live in AWS: the probes' verdicts (CloudWatch) and notifications (SNS)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping

from mlops_kit.aws.clients import LazyClient
from mlops_kit.core.metric_catalogue import NAMESPACE, PROBE_SUCCESS

IAM_ACTIONS_HEALTH = ("cloudwatch:GetMetricData",)
IAM_ACTIONS_NOTIFY = ("sns:Publish",)


class CloudWatchProbeResults:
    """The last ProbeSuccess datapoint of each variant within `lookback` (None: no probe)."""

    def __init__(self, client: Any = None, *, variants: Callable[[str], list[str]],
                 lookback: timedelta = timedelta(minutes=15),
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self._client = LazyClient("cloudwatch", client)
        self.variants = variants
        self.lookback = lookback
        self.clock = clock

    def probe_results(self, endpoint_name: str) -> Mapping[str, bool | None]:
        names = self.variants(endpoint_name)
        if not names:
            return {}
        # The period still in progress holds the newest probe: end the query past it.
        end = self.clock() + timedelta(minutes=1)
        queries = [{"Id": f"v{i}", "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": NAMESPACE, "MetricName": PROBE_SUCCESS.name,
                       "Dimensions": [{"Name": "EndpointName", "Value": endpoint_name},
                                      {"Name": "VariantName", "Value": name}]},
            "Period": 60, "Stat": "Minimum"}} for i, name in enumerate(names)]
        response = self._client().get_metric_data(MetricDataQueries=queries,
                                                  StartTime=end - self.lookback, EndTime=end,
                                                  ScanBy="TimestampDescending")
        by_id = {r["Id"]: r.get("Values", []) for r in response.get("MetricDataResults", [])}
        return {name: (by_id[f"v{i}"][0] >= 1.0) if by_id.get(f"v{i}") else None
                for i, name in enumerate(names)}


class SnsNotifier:
    def __init__(self, topic_arn: str, client: Any = None):
        self.topic_arn = topic_arn
        self._client = LazyClient("sns", client)

    def notify(self, subject: str, message: Mapping[str, Any]) -> None:
        self._client().publish(TopicArn=self.topic_arn, Subject=subject[:100],
                               Message=json.dumps(message, sort_keys=True, default=str))
