"""The one drift run (`monitoring.run.DriftRun`) over fake ports: what it reads in which window,
what it joins, what it publishes and when it publishes nothing but the home's metrics."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from mlops_kit.core import drift
from mlops_kit.core.metric_catalogue import CAPTURE_RECORDS_DROPPED, CATALOGUE
from mlops_kit.monitoring.drift_monitor import ChampionBaseline
from mlops_kit.monitoring.ground_truth import MIN_LABELLED_ROWS, GroundTruth
from mlops_kit.monitoring.run import DriftRun, HomeSignals, NotServing, Schedule, Serving

AT = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
SCHEDULE = Schedule(interval=timedelta(minutes=10), capture_window=timedelta(minutes=15),
                    label_lookback=timedelta(hours=6), service_lag=timedelta(minutes=3))


def baseline() -> ChampionBaseline:
    rng = np.random.default_rng(0)
    return ChampionBaseline(2, "v2", {"amount": drift.numeric_baseline(rng.lognormal(3, 1, 5000),
                                                                       10)},
                            ("amount",), drift.numeric_baseline(rng.beta(1, 20, 5000), 10))


def record(amount: float, score: float, inference_id: str | None) -> dict:
    meta = {"eventId": "e"} | ({"inferenceId": inference_id} if inference_id else {})
    return {"captureData": {
        "endpointInput": {"observedContentType": "text/csv", "data": f"{amount}"},
        "endpointOutput": {"observedContentType": "text/csv", "data": f"{score}"}},
        "eventMetadata": meta}


class Sink(list):
    def put(self, data):
        self.append(list(data))


class Baselines:
    def __init__(self, serving):
        self.answer = serving

    def serving(self, endpoint_name):
        return self.answer


class Capture:
    def __init__(self, by_variant):
        self.by_variant, self.calls = by_variant, []

    def read(self, endpoint_name, variant_names, start, end):
        self.calls.append((tuple(variant_names), start, end))
        return self.by_variant


class Labels:
    def __init__(self, labels):
        self.labels, self.remembered, self.calls = labels, [], []

    def remember(self, variant_name, decoded):
        self.remembered.append((variant_name, len(decoded.scores)))

    def landed(self, endpoint_name, start, end):
        self.calls.append(("landed", start, end))
        return GroundTruth(dict(self.labels))

    def scores(self, endpoint_name, baseline, ids, start, end):
        self.calls.append(("scores", start, end))
        return {f"t{i}": (0.9 if i % 10 == 0 else 0.1) for i in range(100)}


class Home:
    def __init__(self):
        self.seen, self.committed = [], 0

    def measure(self, endpoint_name, serving, decoded, windows):
        self.seen.append((serving is not None, windows.service))
        return HomeSignals([CAPTURE_RECORDS_DROPPED.datum(0, {"EndpointName": endpoint_name},
                                                          windows.at)], {"capture_dropped": 0})

    def commit(self):
        self.committed += 1


def champion_traffic() -> dict:
    rng = np.random.default_rng(1)
    rows = [record(a * 3, 0.2, f"t{i}") for i, a in enumerate(rng.lognormal(3, 1, 300))]
    return {"v2": (rows, 1), "v1": ([], 0)}


def labels_of(count: int) -> dict[str, int]:
    return {f"t{i}": int(i % 10 == 0) for i in range(count)}


def make(capture=None, labels=None, serving=None, home=None, sink=None):
    serving = serving or Serving(baseline(), ("v2", "v1"))
    return DriftRun("ep", baselines=Baselines(serving), capture=capture or Capture(
        champion_traffic()), sink=sink if sink is not None else Sink(), schedule=SCHEDULE,
        labels=labels, home=home)


def test_a_run_reads_its_windows_and_publishes_drift_aupr_and_the_homes_metrics_at_once():
    capture, labels, home, sink = Capture(champion_traffic()), Labels(labels_of(100)), Home(), Sink()
    result = make(capture, labels, home=home, sink=sink).run(AT)
    assert capture.calls == [(("v2", "v1"), AT - timedelta(minutes=15), AT)]
    assert labels.calls == [("landed", AT - timedelta(minutes=10), AT),
                            ("scores", AT - timedelta(hours=6), AT)]
    assert labels.remembered == [("v2", 300)]  # the champion's scores, before the join
    assert home.seen == [(True, (AT - timedelta(minutes=13), AT - timedelta(minutes=3)))]
    assert len(sink) == 1 and sink[0] == result.metrics and home.committed == 1
    endpoint = {d.name: d.value for d in result.metrics if d.dimensions == {"EndpointName": "ep"}}
    assert endpoint["AUPR"] == 1.0 and endpoint["FeaturePSIMax"] > 0.25
    assert "CaptureRecordsDropped" in endpoint
    assert result.records == {"v2": 301, "v1": 0} and result.skipped == {"v2": 1, "v1": 0}
    summary = result.summary()
    assert summary["status"] == "published" and summary["champion"] == 2
    assert summary["capture_dropped"] == 0 and summary["metrics"] == len(result.metrics)
    assert all(d.timestamp == AT for d in result.metrics)


def test_every_datum_of_a_run_is_in_the_catalogue():
    result = make(labels=Labels(labels_of(100))).run(AT)
    known = {(m.namespace, m.name): m for m in CATALOGUE}
    for datum in result.metrics:
        metric = known[(datum.namespace, datum.name)]
        assert metric.publishes(datum.dimensions) and datum.unit == metric.unit


def test_too_few_labels_read_no_scores_and_publish_no_aupr():
    labels = Labels(labels_of(MIN_LABELLED_ROWS - 1))
    result = make(labels=labels).run(AT)
    assert [c[0] for c in labels.calls] == ["landed"]
    assert "AUPR" not in {d.name for d in result.metrics}


def test_labels_given_are_joined_instead_of_the_feeds():
    labels = Labels({})
    result = make(labels=labels).run(AT, labels=labels_of(100))
    assert [c[0] for c in labels.calls] == ["scores"]
    assert [d.value for d in result.metrics if d.name == "AUPR"] == [1.0]


def test_without_a_labels_feed_there_is_no_aupr():
    assert "AUPR" not in {d.name for d in make().run(AT).metrics}


def test_nothing_serving_publishes_only_the_homes_metrics_and_says_why():
    home, sink = Home(), Sink()
    result = make(serving=NotServing("no variant takes traffic"), home=home, sink=sink).run(AT)
    assert result.summary() == {"status": "skipped", "reason": "no variant takes traffic"}
    assert home.seen == [(False, (AT - timedelta(minutes=13), AT - timedelta(minutes=3)))]
    assert [d.name for d in sink[0]] == ["CaptureRecordsDropped"] and home.committed == 1


def test_a_sink_that_fails_commits_nothing_the_home_counted():
    class Full:
        def put(self, data):
            raise OSError(28, "No space left on device")

    home = Home()
    with pytest.raises(OSError):
        make(home=home, sink=Full()).run(AT)
    assert home.committed == 0


def test_unreadable_capture_is_counted_with_its_reason():
    torn = json.loads(json.dumps(record(1.0, 0.5, None)))
    del torn["captureData"]["endpointOutput"]
    result = make(capture=Capture({"v2": ([torn], 2)})).run(AT)
    assert result.skipped_reasons["v2"] == {
        "malformed record": 1, "unreadable line (torn, not JSON or not an object)": 2}
