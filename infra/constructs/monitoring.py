"""Monitoring: one CloudWatch alarm per entry of functions/mlops_kit/core/alarm_definitions.json
and the kit's dashboard.

The definitions are read, checked against the metric catalogue and fitted to the stage's
drift-monitor schedule by `mlops_kit.core.alarms` (the same typed reader, names, comparison and
missing-data rules the local evaluator uses): period, evaluation periods and datapoints to
alarm come from `AlarmSpec.fit`, so each alarm's window holds the datapoints the monitor
publishes. Each CloudFormation value is core's own, mapped to the CDK enum member of that name;
the dashboard names its metrics from `mlops_kit.core.metric_catalogue`.

Alarms whose dimensions carry "{champion}" would watch one variant by name, which changes with
every promotion and rollback; none does (the monitor republishes the champion's SageMaker
metrics at endpoint level), and one that did would be skipped here, as is one that exists only
in the local home (`homes`). A notify-only alarm (`rollback: false`, e.g. capture-stopped)
notifies `notification_topic` when it goes into ALARM; the rollback rule does not match it.
"""

from __future__ import annotations

import re
from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns
from constructs import Construct

from mlops_kit.core.alarms import AlarmDefinition, fit_to_schedule, in_home, load_specs
from mlops_kit.core.metric_catalogue import FEATURE_PSI_MAX, PREDICTION_PSI, PROBE_SUCCESS


def _cdk_member(enum, name: str):
    """core's CloudFormation name ("notBreaching") → the CDK enum member (NOT_BREACHING)."""
    return getattr(enum, re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper())


class Monitoring(Construct):
    def __init__(self, scope: Construct, id: str, *, endpoint_name: str,
                 definitions_path: Path, schedule_minutes: int,
                 notification_topic: sns.ITopic | None = None) -> None:
        """`notification_topic`: where the notify-only alarms go (None: no alarm action)."""
        super().__init__(scope, id)
        self.endpoint_name = endpoint_name
        self.definitions: tuple[AlarmDefinition, ...] = fit_to_schedule(
            in_home(load_specs(definitions_path), "aws"), schedule_minutes)
        self.alarms: dict[str, cw.Alarm] = {}
        self.skipped: list[str] = []
        notify = cw_actions.SnsAction(notification_topic) if notification_topic else None
        for d in self.definitions:
            if d.variant_scoped:
                self.skipped.append(d.id)
                continue
            metric = cw.Metric(
                namespace=d.namespace, metric_name=d.metric,
                dimensions_map=d.resolved_dimensions(endpoint_name),
                statistic=d.statistic,  # "p99" becomes ExtendedStatistic in the template
                period=Duration.seconds(int(d.period_seconds)))
            ident = "".join(p.title() for p in re.split(r"[^A-Za-z0-9]+", d.id))
            self.alarms[d.id] = cw.Alarm(
                self, f"{ident}Alarm", alarm_name=d.alarm_name(endpoint_name),
                alarm_description=d.description or d.id, metric=metric,
                threshold=d.threshold,
                comparison_operator=_cdk_member(cw.ComparisonOperator, d.comparison),
                evaluation_periods=d.evaluation_periods,
                datapoints_to_alarm=d.datapoints_to_alarm,
                treat_missing_data=_cdk_member(cw.TreatMissingData, d.treat_missing_data))
            if not d.rollback and notify is not None:
                self.alarms[d.id].add_alarm_action(notify)

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
                cw.Metric(namespace=m.namespace, metric_name=m.name,
                          dimensions_map={"EndpointName": ep}, statistic="Maximum",
                          period=Duration.minutes(schedule_minutes))  # one run per point
                for m in (FEATURE_PSI_MAX, PREDICTION_PSI)]),
        )
        self.dashboard.add_widgets(
            cw.AlarmStatusWidget(title="Kit alarms", width=12,
                                 alarms=list(self.alarms.values())),
            cw.GraphWidget(title="Rollbacks and promotions (MLOpsKit/Control)", width=12, left=[
                search('{MLOpsKit/Control,service} MetricName=~"^(Rollback|Promotion)_"',
                       "Sum", "")]),
            cw.GraphWidget(title="Probes per variant", width=12, left=[search(
                f'{{{PROBE_SUCCESS.namespace},EndpointName,VariantName}} '
                f'MetricName="{PROBE_SUCCESS.name}" EndpointName="{ep}"',
                "Minimum", "")]),
        )
