import json
import math
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from mlops_kit.core.alarms import (PUBLISH_DELAY_MINUTES, SERVICE_METRICS_LAG_MINUTES,
                                   AlarmDefinition, Datapoint, aggregate, alarm_state, evaluate,
                                   fit_to_schedule, load_definitions, load_specs, replay)
from mlops_kit.monitoring.alarm_events import parse_alarm_event
from mlops_kit.monitoring.evaluator import LocalAlarmEvaluator
from mlops_kit.monitoring.metrics import LocalMetricStore, MetricDatum

SPECS = {s.id: s for s in load_specs()}
DEFS = {d.id: d for d in load_definitions()}
T0 = datetime(2026, 11, 27, 12, tzinfo=timezone.utc)
MIN = timedelta(minutes=1)


def test_definitions_cover_the_issue_and_name_alarms_by_endpoint():
    assert set(DEFS) == {"feature-drift", "prediction-drift", "performance", "champion-5xx",
                         "champion-latency", "capture-stopped", "capture-dropped"}
    # The capture alarms are notify-only (a broken disk or bucket policy is not a bad model),
    # each in the home whose monitor publishes its metric.
    assert {d.id for d in DEFS.values() if not d.rollback} == {"capture-stopped",
                                                               "capture-dropped"}
    assert DEFS["capture-stopped"].homes == ("aws",)
    assert DEFS["capture-dropped"].homes == ("local",)
    assert all(d.homes == ("aws", "local") for d in DEFS.values() if d.rollback)
    assert DEFS["feature-drift"].alarm_name("prod-ep") == "prod-ep-feature-drift"
    # Every alarm is endpoint-level: a promotion or rollback never needs an alarm change.
    for d in DEFS.values():
        assert d.resolved_dimensions("e", "v3") == {"EndpointName": "e"}
        assert d.namespace == "MLOpsKit/Monitoring" and not d.variant_scoped
    assert {s.cadence for s in SPECS.values()} == {"per_run", "per_minute"}
    assert SPECS["champion-5xx"].cadence == SPECS["champion-latency"].cadence == "per_minute"


def test_settings_fitted_to_a_ten_minute_schedule():
    fitted = {d.id: (d.period_seconds, d.evaluation_periods, d.datapoints_to_alarm)
              for d in fit_to_schedule(SPECS.values(), 10)}
    # per run: one period per run, the rule's N plus one period whose run may not be visible
    # yet; per minute: 10 (schedule) + 3 (lag) + 2 (publish delay) + N minutes.
    assert fitted == {"feature-drift": (600, 4, 2), "prediction-drift": (600, 4, 2),
                      "performance": (600, 3, 2), "champion-5xx": (60, 18, 3),
                      "champion-latency": (60, 20, 3), "capture-stopped": (600, 3, 2),
                      "capture-dropped": (600, 2, 1)}
    assert {d.id: d.period_seconds for d in DEFS.values()} == {
        k: v[0] for k, v in fitted.items()}  # load_definitions() defaults to 10 minutes


def test_fitting_follows_the_schedule_and_refuses_what_cloudwatch_would():
    spec = SPECS["champion-5xx"]
    assert spec.fit(5).evaluation_periods == 5 + 3 + 2 + 3
    assert spec.fit(15, lag_minutes=0, publish_delay_minutes=0).evaluation_periods == 18
    drift = SPECS["feature-drift"]
    assert (drift.fit(15).period_seconds, drift.fit(15).evaluation_periods) == (900, 4)
    assert drift.fit(1).evaluation_periods == 3 + 2  # a 2-minute delay spans two 1-minute runs
    assert drift.fit(10, publish_delay_minutes=0).evaluation_periods == 3
    with pytest.raises(ValueError, match="one-day"):
        drift.fit(24 * 60)
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ValueError):
            drift.fit(bad)
    with pytest.raises(ValueError, match="cadence"):
        replace(drift, cadence="hourly")


# -- the fitting holds the datapoints the monitor publishes ---------------------------------

GOOD_BAD = {"feature-drift": (0.05, 0.6), "prediction-drift": (0.02, 0.5),
            "performance": (0.8, 0.1), "champion-5xx": (0.0, 20.0),
            "champion-latency": (20_000.0, 250_000.0),
            "capture-stopped": (0.0, 400.0), "capture-dropped": (0.0, 12.0)}


def publish(spec, schedule: int, bad, *, runs_from: datetime, runs: int,
            delay: timedelta) -> tuple[list[Datapoint], list[datetime]]:
    """What the drift monitor publishes, run by run: a per-run datum stamped with the run's
    time, or the S minutes [run - S - lag, run - lag), each visible `delay` after the run."""
    good_value, bad_value = GOOD_BAD[spec.id]
    lag = timedelta(minutes=SERVICE_METRICS_LAG_MINUTES)
    step = timedelta(minutes=schedule)
    points, run_times = [], []
    for k in range(runs):
        run = runs_from + k * step
        run_times.append(run)
        if spec.cadence == "per_run":
            stamps = [run]
        else:
            stamps = [run - step - lag + i * MIN for i in range(schedule)]
        points += [Datapoint(t, bad_value if bad(t, run) else good_value, run + delay)
                   for t in stamps]
    return points, run_times


def states(transitions):
    return [t.state for t in transitions]


CASES = [(alarm, schedule, phase, delay)
         for alarm in sorted(SPECS) for schedule in (5, 10, 15)
         for phase, delay in ((0, timedelta(0)), (3, timedelta(seconds=50)),
                              (schedule - 1, timedelta(minutes=PUBLISH_DELAY_MINUTES)))]


@pytest.mark.parametrize("alarm,schedule,phase,delay", CASES)
def test_a_sustained_incident_alarms_within_one_interval_and_holds(alarm, schedule, phase,
                                                                    delay):
    spec = SPECS[alarm]
    definition = spec.fit(schedule)
    m = spec.datapoints_to_alarm
    incident, recovery = T0 + timedelta(hours=2), T0 + timedelta(hours=4)
    step, lag = timedelta(minutes=schedule), timedelta(minutes=SERVICE_METRICS_LAG_MINUTES)
    if spec.cadence == "per_run":  # a run is bad once its whole window is in the incident
        bad = lambda t, run: incident <= run - step and run <= recovery  # noqa: E731
    else:
        bad = lambda t, run: incident <= t < recovery  # noqa: E731
    points, runs = publish(spec, schedule, bad, runs_from=T0 + phase * MIN,
                           runs=int(6 * 60 / schedule), delay=delay)
    if spec.cadence == "per_run":
        mth_bad_run = [r for r in runs if bad(None, r)][m - 1]
        latest = mth_bad_run + step + delay + MIN  # its period closes, then one evaluation
    else:  # the first run whose window holds M bad minutes
        first = next(r for r in runs if r - lag >= incident + m * MIN)
        latest = first + delay + MIN
    for range_periods in (None, definition.evaluation_periods + 2):  # longer real ranges too
        transitions = replay(definition, points, T0, T0 + timedelta(hours=6),
                             range_periods=range_periods)
        assert states(transitions) == ["OK", "ALARM", "OK"], transitions
        alarmed, cleared = transitions[1].at, transitions[2].at
        assert incident < alarmed <= latest
        assert cleared > recovery  # never flapped back to OK while the incident lasted


@pytest.mark.parametrize("alarm,schedule,phase,delay", CASES)
def test_healthy_traffic_and_a_short_blip_stay_ok(alarm, schedule, phase, delay):
    spec = SPECS[alarm]
    definition = spec.fit(schedule)
    healthy, _ = publish(spec, schedule, lambda t, run: False, runs_from=T0 + phase * MIN,
                         runs=int(4 * 60 / schedule), delay=delay)
    assert states(replay(definition, healthy, T0, T0 + timedelta(hours=4))) == ["OK"]
    # One breaching datapoint fewer than the rule needs: one run, or M - 1 minutes.
    blip_at = T0 + timedelta(hours=2) + phase * MIN
    few = spec.datapoints_to_alarm - 1
    if spec.cadence == "per_run":
        end = blip_at + few * timedelta(minutes=schedule)
        bad = lambda t, run: blip_at <= run < end  # noqa: E731
    else:
        bad = lambda t, run: blip_at <= t < blip_at + few * MIN  # noqa: E731
    blip, _ = publish(spec, schedule, bad, runs_from=T0 + phase * MIN,
                      runs=int(4 * 60 / schedule), delay=delay)
    assert sum(1 for p in blip if p.value == GOOD_BAD[alarm][1]) == few
    assert states(replay(definition, blip, T0, T0 + timedelta(hours=4))) == ["OK"]


def test_the_former_one_minute_windows_never_alarm_on_what_the_monitor_publishes():
    """The reviewed defect, as a control: 3 of 3 one-minute periods, data up to 13 min late."""
    old = AlarmDefinition(id="champion-5xx", namespace="MLOpsKit/Monitoring",
                          metric="ChampionInvocation5XXErrors", statistic="Sum",
                          period_seconds=60, evaluation_periods=3, datapoints_to_alarm=3,
                          comparison="GreaterThanThreshold", threshold=5,
                          treat_missing_data="notBreaching")
    spec = SPECS["champion-5xx"]
    always_bad, _ = publish(spec, 10, lambda t, run: True, runs_from=T0, runs=30,
                            delay=timedelta(seconds=30))
    assert states(replay(old, always_bad, T0, T0 + timedelta(hours=5))) == ["OK"]
    assert "ALARM" in states(replay(spec.fit(10), always_bad, T0, T0 + timedelta(hours=5)))


# -- CloudWatch's evaluation, hand-checked -------------------------------------------------------

def definition(**overrides) -> AlarmDefinition:
    base = dict(id="x", namespace="N", metric="M", statistic="Maximum", period_seconds=300,
                evaluation_periods=3, datapoints_to_alarm=3, comparison="GreaterThanThreshold",
                threshold=3, treat_missing_data="missing")
    return AlarmDefinition(**{**base, **overrides})


def pattern(text: str, period: int = 300) -> tuple[list[Datapoint], datetime]:
    """'0 - X' oldest first: 0 within the threshold (3), X breaching, - missing; evaluated
    right after the last period ends."""
    points = [Datapoint(T0 + i * timedelta(seconds=period), {"0": 1.0, "X": 9.0}[c])
              for i, c in enumerate(text.split()) if c != "-"]
    return points, T0 + len(text.split()) * timedelta(seconds=period)


# The documentation's two tables ("How alarm state is evaluated when data is missing"): 5
# datapoints retrieved; MISSING, IGNORE (None: the current state is kept), BREACHING,
# NOT BREACHING.
DOC_3_OF_3 = [("0 - X - X", "OK", "OK", "OK", "OK"),
              ("0 - - - -", "OK", "OK", "OK", "OK"),
              ("- - - - -", "INSUFFICIENT_DATA", None, "ALARM", "OK"),
              ("0 X X - X", "ALARM", "ALARM", "ALARM", "ALARM"),
              ("- - - - X", "INSUFFICIENT_DATA", None, "ALARM", "OK"),
              ("X - - - -", "ALARM", None, "ALARM", "OK")]
DOC_2_OF_3 = [("0 - X - X", "ALARM", "ALARM", "ALARM", "ALARM"),
              ("0 0 X 0 X", "ALARM", "ALARM", "ALARM", "ALARM"),
              ("0 - X - -", "OK", "OK", "ALARM", "OK"),
              ("- - - - 0", "OK", "OK", "ALARM", "OK"),
              ("- - - - X", "INSUFFICIENT_DATA", None, "ALARM", "OK")]


@pytest.mark.parametrize("m,row", [(3, r) for r in DOC_3_OF_3] + [(2, r) for r in DOC_2_OF_3])
def test_the_documented_missing_data_tables(m, row):
    text, *expected = row
    points, at = pattern(text)
    for treatment, want in zip(("missing", "ignore", "breaching", "notBreaching"), expected):
        d = definition(datapoints_to_alarm=m, treat_missing_data=treatment)
        for previous in ("OK", "ALARM"):
            got = alarm_state(d, points, at, previous, range_periods=5).state
            assert got == (previous if want is None else want), (text, treatment, previous)


def test_m_of_n_counts_breaches_anywhere_in_the_window():
    d = definition(datapoints_to_alarm=2, treat_missing_data="notBreaching")
    assert alarm_state(d, *pattern("X 0 X")).state == "ALARM"
    assert alarm_state(d, *pattern("X 0 0 X")).state == "OK"  # the first X left the window
    assert alarm_state(d, *pattern("0 X X 0")).state == "ALARM"
    result = alarm_state(d, *pattern("0 X - X"))
    assert (result.values, result.breaching, result.real) == ((9.0, None, 9.0), 2, 2)


def test_only_complete_aligned_periods_count():
    d = definition(evaluation_periods=1, datapoints_to_alarm=1, statistic="Sum", threshold=10,
                   treat_missing_data="notBreaching")
    point = [Datapoint(T0 + timedelta(minutes=1), 11.0)]
    assert alarm_state(d, point, T0 + timedelta(minutes=4, seconds=59)).state == "OK"
    assert alarm_state(d, point, T0 + timedelta(minutes=5)).state == "ALARM"
    # Sum over one aligned period: two halves of a breach either side of 12:05 stay apart...
    split = [Datapoint(T0 + timedelta(minutes=4, seconds=59), 6.0),
             Datapoint(T0 + timedelta(minutes=5, seconds=1), 6.0)]
    assert alarm_state(d, split, T0 + timedelta(minutes=10)).values == (6.0,)
    assert alarm_state(d, split, T0 + timedelta(minutes=10)).state == "OK"
    # ...and add up inside it.
    joined = [Datapoint(T0 + timedelta(minutes=5, seconds=1), 6.0),
              Datapoint(T0 + timedelta(minutes=9, seconds=59), 6.0)]
    assert alarm_state(d, joined, T0 + timedelta(minutes=10)).state == "ALARM"


def test_late_data_counts_once_visible_and_while_its_period_is_in_range():
    point = [Datapoint(T0 + timedelta(seconds=10), 9.0, published=T0 + timedelta(minutes=5))]
    short = definition(period_seconds=60, evaluation_periods=1, datapoints_to_alarm=1,
                       treat_missing_data="notBreaching")
    wide = replace(short, evaluation_periods=6)
    assert alarm_state(wide, point, T0 + timedelta(minutes=4, seconds=59)).state == "OK"
    assert alarm_state(wide, point, T0 + timedelta(minutes=5)).state == "ALARM"
    assert alarm_state(short, point, T0 + timedelta(minutes=5)).state == "OK"  # out of range
    assert alarm_state(wide, point, T0 + timedelta(minutes=7)).state == "OK"  # aged out
    timeline = replay(wide, point, T0 - timedelta(minutes=2), T0 + timedelta(minutes=10))
    assert [(t.at, t.state) for t in timeline] == [
        (T0 - timedelta(minutes=2), "OK"), (T0 + timedelta(minutes=5), "ALARM"),
        (T0 + timedelta(minutes=7), "OK")]


def test_replay_reports_each_transition_at_its_time():
    d = definition(period_seconds=60, evaluation_periods=2, datapoints_to_alarm=2,
                   treat_missing_data="notBreaching")
    points = [Datapoint(T0 + i * MIN, 9.0) for i in range(4)]  # 12:00..12:03 breach
    start = T0 - timedelta(minutes=1, seconds=30)
    timeline = replay(d, points, start, T0 + timedelta(minutes=10))
    assert [(t.at - T0, t.previous_state, t.state) for t in timeline] == [
        (start - T0, "INSUFFICIENT_DATA", "OK"),
        (timedelta(minutes=2, seconds=30), "OK", "ALARM"),
        (timedelta(minutes=5, seconds=30), "ALARM", "OK")]
    assert timeline[1].evaluation.datapoints == [9.0, 9.0]
    # missing: no data is INSUFFICIENT_DATA (the initial state: no transition); "X -" with
    # the breaching datapoint oldest stays ALARM (the documented "X - - - -" case).
    missing = replace(d, treat_missing_data="missing")
    assert [(t.at - T0, t.state) for t in replay(missing, points, start,
                                                 T0 + timedelta(minutes=10))] == [
        (timedelta(minutes=2, seconds=30), "ALARM"),
        (timedelta(minutes=6, seconds=30), "INSUFFICIENT_DATA")]


def test_percentiles_and_low_sample_counts():
    assert aggregate(list(range(1, 101)), "p99") == 99
    assert aggregate(list(range(1, 11)), "p50") == 5
    assert aggregate([7.0], "p99.9") == 7.0
    assert aggregate([1, 2, 3], "Sum") == 6 and aggregate([5, 1], "Minimum") == 1
    assert math.isnan(aggregate([], "Average"))
    d = definition(statistic="p90", period_seconds=60, evaluation_periods=1,
                   datapoints_to_alarm=1, threshold=50, treat_missing_data="notBreaching")
    slow_tail = [Datapoint(T0 + timedelta(seconds=i % 60), float(v))
                 for i, v in enumerate([10] * 89 + [100] * 11)]  # p90 = 100, p89 = 10
    assert alarm_state(d, slow_tail, T0 + MIN).state == "ALARM"
    assert alarm_state(replace(d, statistic="p89"), slow_tail, T0 + MIN).state == "OK"
    # "ignore": fewer than 10 / (1 - 0.9) = 100 samples keep the state; 100 are evaluated.
    low = replace(d, evaluate_low_sample_count_percentile="ignore")
    assert alarm_state(low, slow_tail[:99], T0 + MIN, "OK").state == "OK"
    assert alarm_state(low, slow_tail, T0 + MIN, "OK").state == "ALARM"
    with pytest.raises(ValueError):
        definition(statistic="tm99")


def test_bucketed_evaluate_keeps_the_same_rule():
    d = DEFS["feature-drift"]  # > 0.25, 2 of 4, missing = notBreaching
    assert evaluate(d, [[0.1], [0.1], [0.3], [0.4]])[0] == "ALARM"
    assert evaluate(d, [[0.3], [0.1], [0.1], [0.1]])[0] == "OK"
    assert evaluate(d, [[0.3], [], [0.1]])[0] == "OK"
    assert evaluate(d, [[], [], [], []])[0] == "OK"
    assert evaluate(d, [[0.1, 0.5], [0.3], []])[0] == "ALARM"  # statistic Maximum
    for treatment, expected in (("missing", "INSUFFICIENT_DATA"), ("breaching", "ALARM"),
                                ("ignore", "OK"), ("notBreaching", "OK")):
        assert evaluate(replace(d, treat_missing_data=treatment), [[], [], []],
                        previous_state="OK")[0] == expected


def test_from_cloudformation_reads_a_template_alarm_back():
    props = {"AlarmName": "fraud-scorer-dev-champion-latency", "AlarmDescription": "p99",
             "MetricName": "ChampionModelLatency", "Namespace": "MLOpsKit/Monitoring",
             "Dimensions": [{"Name": "EndpointName", "Value": "fraud-scorer-dev"}],
             "ExtendedStatistic": "p99", "Period": 60, "EvaluationPeriods": 20,
             "DatapointsToAlarm": 3, "Threshold": 100000,
             "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "notBreaching"}
    d = AlarmDefinition.from_cloudformation(props["AlarmName"], props)
    assert (d.id, d.statistic, d.period_seconds, d.evaluation_periods, d.datapoints_to_alarm,
            d.threshold, d.treat_missing_data, d.description) == (
        "champion-latency", "p99", 60, 20, 3, 100000.0, "notBreaching", "p99")
    assert d.alarm_name("fraud-scorer-dev") == props["AlarmName"]
    assert d.resolved_dimensions("anything") == {"EndpointName": "fraud-scorer-dev"}
    bare = {k: v for k, v in props.items()
            if k not in ("DatapointsToAlarm", "TreatMissingData", "ExtendedStatistic")}
    d = AlarmDefinition.from_cloudformation("other", {**bare, "Statistic": "Sum"})
    assert (d.id, d.statistic, d.datapoints_to_alarm, d.treat_missing_data) == (
        "other", "Sum", 20, "missing")  # CloudFormation's defaults
    with pytest.raises(ValueError):
        AlarmDefinition.from_cloudformation("m", {**props, "Metrics": []})
    with pytest.raises(ValueError):
        AlarmDefinition.from_cloudformation("m", {**props, "Threshold": {"Ref": "T"}})
    with pytest.raises(ValueError):
        AlarmDefinition.from_cloudformation("m", {**props, "ComparisonOperator":
                                                  "LessThanLowerThreshold"})


# -- the publisher: timestamps kept, windows adjacent ----------------------------------------

def test_powertools_sink_prints_each_datums_own_timestamp_and_dimensions(capsys, monkeypatch):
    from mlops_kit.monitoring.metrics import PowertoolsMetricSink

    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "drift-monitor")  # as on every kit Lambda
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    minutes = [now - timedelta(minutes=13 - i) for i in range(10)]
    PowertoolsMetricSink().put(
        [MetricDatum("ChampionInvocation5XXErrors", float(i), {"EndpointName": "ep"}, at,
                     "Count") for i, at in enumerate(minutes)])
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["_aws"]["Timestamp"] for d in documents] == [
        int(at.timestamp() * 1000) for at in minutes]
    parsed = [datum for d in documents for datum in MetricDatum.from_emf(d)]
    assert [(p.timestamp, p.value, dict(p.dimensions)) for p in parsed] == [
        (at, float(i), {"EndpointName": "ep"}) for i, at in enumerate(minutes)]
    assert all(d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["EndpointName"]]
               for d in documents)


class FakeCloudWatch:
    """GetMetricData over per-minute data, rounding StartTime down (as CloudWatch does) but
    not EndTime: the minute an unaligned end falls in is returned."""

    def __init__(self):
        self.calls = []

    def get_metric_data(self, MetricDataQueries, StartTime, EndTime):
        self.calls.append((StartTime, EndTime))
        minute = StartTime.replace(second=0, microsecond=0)
        stamps = []
        while minute < EndTime:
            stamps.append(minute)
            minute += MIN
        return {"MetricDataResults": [{"Id": q["Id"], "Timestamps": stamps,
                                       "Values": [1.0] * len(stamps)}
                                      for q in MetricDataQueries]}


def test_consecutive_runs_republish_every_minute_exactly_once():
    from mlops_kit.aws.monitoring import SERVICE_METRICS_LAG, champion_service_metrics

    assert SERVICE_METRICS_LAG == timedelta(minutes=SERVICE_METRICS_LAG_MINUTES) >= 2 * MIN
    cloudwatch, window = FakeCloudWatch(), timedelta(minutes=10)
    seen = []
    for k in range(6):  # runs delivered a few seconds after their minute
        now = T0 + k * window + timedelta(seconds=7)
        data = champion_service_metrics(cloudwatch, "ep", "v2",
                                        now - window - SERVICE_METRICS_LAG,
                                        now - SERVICE_METRICS_LAG)
        seen += [d.timestamp for d in data if d.name == "ChampionInvocation5XXErrors"]
        assert max(d.timestamp for d in data) < now - SERVICE_METRICS_LAG  # only closed minutes
    assert len(seen) == len(set(seen)) == 60
    assert sorted(seen) == [T0 - window - SERVICE_METRICS_LAG + i * MIN for i in range(60)]


# -- the local evaluator ------------------------------------------------------------------------

def test_local_evaluator_emits_one_event_per_transition_in_cloudwatch_shape(tmp_path):
    store = LocalMetricStore(tmp_path)
    evaluator = LocalAlarmEvaluator(tmp_path, "ep", [DEFS["feature-drift"]], time_scale=0.01)
    period = timedelta(seconds=6)  # 600 s × 0.01; 2 of 4 periods
    events = []
    for i, value in enumerate([0.05, 0.04, 0.5, 0.6, 0.7]):
        at = T0 + i * period
        store.put([MetricDatum("FeaturePSIMax", value, {"EndpointName": "ep"}, at)])
        events += [(i, e) for e in evaluator.evaluate(at)]
    assert [(i, e["detail"]["state"]["value"]) for i, e in events] == [(0, "OK"), (4, "ALARM")]
    alarm = parse_alarm_event(events[-1][1])
    assert (alarm.alarm_name, alarm.endpoint_name, alarm.previous_state) == \
        ("ep-feature-drift", "ep", "OK")
    # The tick's own datum is in the period still open; the window is the 4 closed before.
    assert alarm.reason_data["recentDatapoints"] == [0.05, 0.04, 0.5, 0.6]
    assert evaluator.states()["ep-feature-drift"]["state"] == "ALARM"


def test_torn_metric_line_is_skipped(tmp_path):
    store = LocalMetricStore(tmp_path)
    store.put([MetricDatum("X", 1.0, {"EndpointName": "e"}, datetime.now(timezone.utc))])
    with open(store.path, "a") as handle:
        handle.write('{"_aws": {"Timest')
    assert [d.value for d in store.read()] == [1.0]


def test_the_rollback_rule_names_the_rollback_alarms_only():
    from mlops_kit import contract
    from mlops_kit.core.alarms import rollback_alarm_ids

    assert contract._rollback_alarm_ids() == rollback_alarm_ids()  # stdlib reader == typed one
    names = contract.alarm_event_pattern("ep")["detail"]["alarmName"]
    assert names == sorted(f"ep-{i}" for i in rollback_alarm_ids())
    assert "ep-capture-stopped" not in names and "ep-capture-dropped" not in names
