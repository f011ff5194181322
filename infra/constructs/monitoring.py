"""Monitoring: one CloudWatch alarm per entry of functions/mlops_kit/core/alarm_definitions.json
(read as JSON, by path) and the kit's dashboard.

Alarms whose dimensions carry "{champion}" (the champion variant's 5XX and latency) are NOT
created here: the champion variant changes with every promotion and rollback, so an alarm
CloudFormation pins to one variant name would watch the wrong variant after the first traffic
change (and a controller re-pointing it would fight the next stack update). The endpoint-level
alarms (the kit's own metrics, dimension EndpointName only) never need changing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from constructs import Construct

_PERCENTILE = re.compile(r"^p\d+(\.\d+)?$")
_COMPARISON = {
    "GreaterThanThreshold": cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
    "GreaterThanOrEqualToThreshold": cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    "LessThanThreshold": cw.ComparisonOperator.LESS_THAN_THRESHOLD,
    "LessThanOrEqualToThreshold": cw.ComparisonOperator.LESS_THAN_OR_EQUAL_TO_THRESHOLD,
}
_MISSING = {"notBreaching": cw.TreatMissingData.NOT_BREACHING,
            "breaching": cw.TreatMissingData.BREACHING,
            "ignore": cw.TreatMissingData.IGNORE, "missing": cw.TreatMissingData.MISSING}


def load_definitions(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text())["alarms"]


def variant_scoped(definition: dict[str, Any]) -> bool:
    return any("{champion}" in str(v) for v in definition["dimensions"].values())


class Monitoring(Construct):
    def __init__(self, scope: Construct, id: str, *, endpoint_name: str,
                 definitions_path: Path) -> None:
        super().__init__(scope, id)
        self.endpoint_name = endpoint_name
        self.alarms: dict[str, cw.Alarm] = {}
        self.skipped: list[str] = []
        for d in load_definitions(definitions_path):
            if variant_scoped(d):
                self.skipped.append(d["id"])
                continue
            stat = d["statistic"]
            metric = cw.Metric(
                namespace=d["namespace"], metric_name=d["metric"],
                dimensions_map={k: v.replace("{endpoint}", endpoint_name)
                                for k, v in d["dimensions"].items()},
                statistic=stat,  # "p99" becomes ExtendedStatistic in the template
                period=Duration.seconds(d["period_seconds"]))
            ident = "".join(p.title() for p in re.split(r"[^A-Za-z0-9]+", d["id"]))
            self.alarms[d["id"]] = cw.Alarm(
                self, f"{ident}Alarm", alarm_name=f"{endpoint_name}-{d['id']}",
                alarm_description=d.get("description", d["id"]), metric=metric,
                threshold=d["threshold"], comparison_operator=_COMPARISON[d["comparison"]],
                evaluation_periods=d["evaluation_periods"],
                datapoints_to_alarm=d["datapoints_to_alarm"],
                treat_missing_data=_MISSING[d["treat_missing_data"]])

        search = lambda q, stat, label: cw.MathExpression(  # noqa: E731
            expression=f"SEARCH('{q}', '{stat}', 300)", label=label, using_metrics={},
            period=Duration.minutes(5))
        ep = endpoint_name
        self.dashboard = cw.Dashboard(self, "Dashboard", default_interval=Duration.hours(6))
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Invocations per variant", width=12, left=[search(
                f'{{AWS/SageMaker,EndpointName,VariantName}} MetricName="Invocations" EndpointName="{ep}"',
                "Sum", "")]),
            cw.GraphWidget(title="Drift (PSI)", width=12, left=[
                cw.Metric(namespace="MLOpsKit/Monitoring", metric_name=name,
                          dimensions_map={"EndpointName": ep}, statistic="Maximum",
                          period=Duration.minutes(5))
                for name in ("FeaturePSIMax", "PredictionPSI")]),
        )
        self.dashboard.add_widgets(
            cw.AlarmStatusWidget(title="Kit alarms", width=12,
                                 alarms=list(self.alarms.values())),
            cw.GraphWidget(title="Rollbacks and promotions (MLOpsKit/Control)", width=12, left=[
                search('{MLOpsKit/Control,service} MetricName=~"^(Rollback|Promotion)_"',
                       "Sum", "")]),
            cw.GraphWidget(title="Probes per variant", width=12, left=[search(
                f'{{MLOpsKit/Monitoring,EndpointName,VariantName}} MetricName="ProbeSuccess" EndpointName="{ep}"',
                "Minimum", "")]),
        )
