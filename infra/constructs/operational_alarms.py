"""The control plane's own alarms: on-call hears of a controller event that failed for good, of
events EventBridge could not deliver, and of a monitor that keeps failing (no monitor, no
rollback)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

MONITOR_ALARM_IDS = {"drift_monitor": "DriftMonitorErrors", "probe": "ProbeErrors"}


def operational_alarms(scope: Construct, *, stage: str, topic: sns.ITopic,
                       failed_events: sqs.IQueue, events_dlq: sqs.IQueue,
                       monitors: dict[str, tuple[lambda_.IFunction, int]]
                       ) -> dict[str, cw.Alarm]:
    """`monitors`: the scheduled functions by name, with their shortest schedule in minutes
    (three failed runs in a row alarm). Returns the alarms by id."""
    action = cw_actions.SnsAction(topic)
    queues = (("FailedEventsAlarm", failed_events,
               "a controller event failed after Lambda's retries: replay it "
               "(mlops events replay, docs/runbooks.md)"),
              ("EventsDlqAlarm", events_dlq, "EventBridge could not deliver an event"))
    alarms: dict[str, cw.Alarm] = {}
    for ident, queue, why in queues:
        alarms[ident] = cw.Alarm(
            scope, ident, alarm_name=f"mlops-kit-{stage}-{ident.removesuffix('Alarm')}",
            alarm_description=why,
            metric=queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(5), statistic="Maximum"),
            threshold=1, evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING)
    for name, (fn, minutes) in monitors.items():
        ident = MONITOR_ALARM_IDS[name]
        alarms[ident] = cw.Alarm(
            scope, f"{ident}Alarm", alarm_name=f"mlops-kit-{stage}-{ident}",
            alarm_description=f"{name} failed three runs in a row: drift and probes are "
                              f"blind, automatic rollback cannot see an incident",
            metric=fn.metric_errors(period=Duration.minutes(minutes), statistic="Sum"),
            threshold=1, evaluation_periods=3, datapoints_to_alarm=3,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING)
    for alarm in alarms.values():
        alarm.add_alarm_action(action)
    return alarms
