import json

from mlops_kit.local.monitor import CaptureTail


def line(score: float) -> str:
    return json.dumps({"captureData": {
        "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "data": "1,a",
                          "encoding": "CSV"},
        "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT",
                           "data": str(score), "encoding": "CSV"}},
        "eventMetadata": {"eventId": "x", "inferenceTime": "2026-11-27T00:00:00Z"},
        "eventVersion": "0"})


def test_tail_reads_each_complete_line_once_and_waits_for_a_line_being_written(tmp_path):
    path = tmp_path / "capture" / "ep" / "v1" / "2026" / "11" / "27" / "00" / "w1.jsonl"
    path.parent.mkdir(parents=True)
    tail = CaptureTail(tmp_path / "capture")
    path.write_text(line(0.1) + "\n" + line(0.2)[:30])  # the second line is mid-write
    records, corrupt = tail.read_new("ep")["v1"]
    assert len(records) == 1 and corrupt == 0
    with open(path, "a") as handle:
        handle.write(line(0.2)[30:] + "\n" + "not json\n")
    records, corrupt = tail.read_new("ep")["v1"]
    assert [r["captureData"]["endpointOutput"]["data"] for r in records] == ["0.2"]
    assert corrupt == 1
    assert tail.read_new("ep")["v1"] == ([], 0)


def test_decode_accepts_every_json_shape_the_endpoint_does_and_skips_the_rest():
    from mlops_kit.monitoring.drift_monitor import decode_capture

    def record(data: str) -> dict:
        return {"captureData": {
            "endpointInput": {"observedContentType": "application/json", "data": data,
                              "encoding": "JSON"},
            "endpointOutput": {"observedContentType": "text/csv", "data": "0.1",
                               "encoding": "CSV"}}}

    decoded = decode_capture([record('{"features": [1, "a"]}'), record('{"instances": [[2, "b"]]}'),
                              record('[3, "c"]'), record('{"amount": 4, "channel": "d"}'),
                              record("5"), record('{"features": 7}')], ["amount", "channel"])
    assert decoded.columns["amount"] == [1, 2, 3]
    assert decoded.skipped == 3


def test_small_windows_publish_no_drift_datapoint():
    from datetime import datetime, timezone

    import numpy as np

    from mlops_kit.core import drift
    from mlops_kit.monitoring.drift_monitor import (MIN_ROWS_FOR_DRIFT, ChampionBaseline,
                                                    DecodedCapture, compute_metrics)

    baseline = ChampionBaseline(1, "v1", {"amount": drift.numeric_baseline(np.arange(1000.0), 10)},
                                ("amount",), drift.numeric_baseline(np.linspace(0, 1, 100), 10))
    few = DecodedCapture({"amount": [1.0] * 20}, [0.5] * 20, [None] * 20, records=20)
    names = {d.name for d in compute_metrics(baseline, {"v1": few}, endpoint_name="e",
                                             at=datetime.now(timezone.utc))}
    assert names == {"CaptureRecords", "CaptureSkipped"}
    n = MIN_ROWS_FOR_DRIFT
    enough = DecodedCapture({"amount": list(np.arange(n) * 5.0)}, [0.5] * n, [None] * n, records=n)
    names = {d.name for d in compute_metrics(baseline, {"v1": enough}, endpoint_name="e",
                                             at=datetime.now(timezone.utc))}
    assert {"FeaturePSIMax", "PredictionPSI", "FeaturePSI"} <= names


def test_labels_arriving_later_are_joined_to_captured_scores(tmp_path):
    from mlops_kit.config import LocalSettings
    from mlops_kit.local.monitor import LocalMonitor
    from mlops_kit.monitoring.drift_monitor import DecodedCapture
    from mlops_kit.monitoring.ground_truth import labelled_aupr

    monitor = LocalMonitor(LocalSettings(home=tmp_path, model_group="g", use_case="u",
                                         owner="o", endpoint_name="ep"))
    ids = [f"t{i}" for i in range(100)]
    scored = DecodedCapture({}, [0.9 if i % 10 == 0 else 0.1 for i in range(100)], ids)
    monitor.labels.remember("v1", scored)  # a tick's champion capture, before the labels
    truth = tmp_path / "ground-truth" / "ep" / "day1.jsonl"
    truth.parent.mkdir(parents=True)
    truth.write_text("".join(json.dumps({"inferenceId": f"t{i}", "label": int(i % 10 == 0)})
                             + "\n" for i in range(100)) + '{"inferenceId": "t1", "lab')
    landed = monitor.labels.landed("ep", None, None)
    assert len(landed.labels) == 100 and landed.skipped == 0  # the torn line waits
    scores = monitor.labels.scores("ep", None, landed.labels, None, None)
    assert labelled_aupr(landed.labels, scores) == 1.0  # the positives got the high scores
    assert monitor.labels.read_new("ep") == {}  # each line once


def test_the_local_monitors_alarms_are_fitted_to_its_schedule(tmp_path):
    from mlops_kit.config import LocalSettings
    from mlops_kit.local.monitor import LocalMonitor

    settings = LocalSettings(home=tmp_path, model_group="g", use_case="u", owner="o",
                             endpoint_name="ep")
    periods = lambda m: {d.id: (d.period_seconds, d.evaluation_periods)  # noqa: E731
                         for d in m.evaluator.definitions}
    assert periods(LocalMonitor(settings))["feature-drift"] == (600, 4)  # the stages' 10 min
    demo = periods(LocalMonitor(settings, time_scale=0.005, schedule_minutes=5))
    assert demo["feature-drift"] == (300, 4) and demo["champion-5xx"] == (60, 5 + 3 + 2 + 3)


def test_compressed_ticks_a_little_slower_than_the_period_still_alarm_in_three_ticks(tmp_path):
    """The demo: a tick every 1.5 s plus the tick's own work stands for a 5-minute schedule
    (time_scale 0.005: 300 s periods last 1.5 s). Drift from tick 3 on alarms by tick 6."""
    from datetime import datetime, timedelta, timezone

    from mlops_kit.core.alarms import load_definitions
    from mlops_kit.monitoring.evaluator import LocalAlarmEvaluator
    from mlops_kit.monitoring.metrics import LocalMetricStore, MetricDatum

    drift = [d for d in load_definitions(schedule_minutes=5) if d.id == "feature-drift"]
    for offset in (0.0, 0.4, 1.1):
        home = tmp_path / str(offset)
        store, evaluator = LocalMetricStore(home), LocalAlarmEvaluator(home, "ep", drift,
                                                                        time_scale=0.005)
        start = datetime(2026, 11, 27, 12, tzinfo=timezone.utc) + timedelta(seconds=offset)
        alarm_tick = None
        for tick in range(12):
            at = start + tick * timedelta(seconds=1.8)
            store.put([MetricDatum("FeaturePSIMax", 0.6 if tick >= 4 else 0.05,
                                   {"EndpointName": "ep"}, at)])  # tick 3 still saw normal rows
            if any(e["detail"]["state"]["value"] == "ALARM" for e in evaluator.evaluate(at)):
                alarm_tick = tick
                break
        assert alarm_tick is not None and 5 <= alarm_tick <= 6, (offset, alarm_tick)
