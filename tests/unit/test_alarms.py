import json
import math
from datetime import datetime, timedelta, timezone

import pytest

from mlops_kit.core.alarms import aggregate, evaluate, load_definitions
from mlops_kit.monitoring.alarm_events import parse_alarm_event
from mlops_kit.monitoring.evaluator import LocalAlarmEvaluator
from mlops_kit.monitoring.metrics import LocalMetricStore, MetricDatum

DEFS = {d.id: d for d in load_definitions()}


def test_definitions_cover_the_issue_and_name_alarms_by_endpoint():
    assert set(DEFS) == {"feature-drift", "prediction-drift", "performance", "champion-5xx",
                         "champion-latency"}
    for d in DEFS.values():
        assert 1 <= d.datapoints_to_alarm <= d.evaluation_periods
        assert d.treat_missing_data in ("missing", "notBreaching", "breaching", "ignore")
    assert DEFS["feature-drift"].alarm_name("fraud-scorer-prod") == "fraud-scorer-prod-feature-drift"
    # Every alarm is endpoint-level: a promotion or rollback never needs an alarm change.
    for d in DEFS.values():
        assert d.resolved_dimensions("e", "v3") == {"EndpointName": "e"}
        assert d.namespace == "MLOpsKit/Monitoring"


def test_m_of_n():
    d = DEFS["feature-drift"]  # > 0.25, 2 of 3, missing = notBreaching
    assert evaluate(d, [[0.1], [0.3], [0.4]])[0] == "ALARM"
    assert evaluate(d, [[0.3], [0.1], [0.1]])[0] == "OK"
    assert evaluate(d, [[0.3], [], [0.1]])[0] == "OK"
    assert evaluate(d, [[], [], []])[0] == "OK"  # notBreaching: no data is not an alarm
    assert evaluate(d, [[0.1, 0.5], [0.3], []])[0] == "ALARM"  # statistic Maximum


@pytest.mark.parametrize("treatment,expected", [("missing", "INSUFFICIENT_DATA"),
                                                ("breaching", "ALARM"),
                                                ("ignore", "OK"), ("notBreaching", "OK")])
def test_missing_data_treatments(treatment, expected):
    from dataclasses import replace

    d = replace(DEFS["feature-drift"], treat_missing_data=treatment)
    assert evaluate(d, [[], [], []], previous_state="OK")[0] == expected


def test_statistics():
    assert aggregate([1, 2, 3], "Sum") == 6
    assert aggregate([5, 1], "Minimum") == 1
    assert aggregate(list(range(1, 101)), "p99") == 99
    assert math.isnan(aggregate([], "Average"))


def test_local_evaluator_emits_one_event_per_transition_in_cloudwatch_shape(tmp_path):
    store = LocalMetricStore(tmp_path)
    evaluator = LocalAlarmEvaluator(tmp_path, "ep", [DEFS["feature-drift"]], time_scale=0.01)
    start = datetime(2026, 11, 27, 12, tzinfo=timezone.utc)
    period = timedelta(seconds=3)  # 300 s × 0.01
    events = []
    for i, value in enumerate([0.05, 0.04, 0.5, 0.6, 0.7]):
        at = start + i * period
        store.put([MetricDatum("FeaturePSIMax", value, {"EndpointName": "ep"}, at)])
        events += evaluator.evaluate(at + period)
    states = [e["detail"]["state"]["value"] for e in events]
    assert states == ["OK", "ALARM"]
    alarm = parse_alarm_event(events[-1])
    assert (alarm.alarm_name, alarm.endpoint_name, alarm.previous_state) == \
        ("ep-feature-drift", "ep", "OK")
    assert alarm.reason_data["recentDatapoints"][-1] == 0.6
    assert evaluator.states()["ep-feature-drift"]["state"] == "ALARM"


def test_torn_metric_line_is_skipped(tmp_path):
    store = LocalMetricStore(tmp_path)
    store.put([MetricDatum("X", 1.0, {"EndpointName": "e"}, datetime.now(timezone.utc))])
    with open(store.path, "a") as handle:
        handle.write('{"_aws": {"Timest')
    assert [d.value for d in store.read()] == [1.0]
