"""`mlops status --backend aws` reads the kit's alarms of the endpoint from CloudWatch."""

from __future__ import annotations

from mlops_kit.core.alarms import load_definitions
from mlops_kit.homes.aws import alarm_states


def test_the_kits_alarms_are_read_with_their_states_and_a_missing_one_is_named(
        aws, make_client):
    cloudwatch = make_client("cloudwatch")
    missing, firing, *others = load_definitions()
    for definition in (firing, *others):
        cloudwatch.put_metric_alarm(
            AlarmName=definition.alarm_name("scorer"), MetricName=definition.metric,
            Namespace=definition.namespace, Statistic="Maximum", Period=300,
            EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanThreshold")
    cloudwatch.set_alarm_state(AlarmName=firing.alarm_name("scorer"), StateValue="ALARM",
                               StateReason="test")
    states = {a["name"]: a for a in alarm_states("scorer", make_client)}
    assert set(states) == {d.alarm_name("scorer") for d in (missing, firing, *others)}
    assert states[missing.alarm_name("scorer")]["state"] == "MISSING"
    assert states[firing.alarm_name("scorer")]["state"] == "ALARM"
    assert states[firing.alarm_name("scorer")]["since"]
    assert {states[d.alarm_name("scorer")]["state"] for d in others} <= {"OK", "INSUFFICIENT_DATA"}
