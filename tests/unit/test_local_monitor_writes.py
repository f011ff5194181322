"""The local monitor on a full or read-only disk: a tick raises StateWriteError naming the
path and the cause, and whatever was there before is intact (no half-written state file, no
torn metrics line, no temp file left behind)."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mlops_kit.config import LocalSettings
from mlops_kit.local.monitor import LocalMonitor
from mlops_kit.monitoring.metrics import (LocalMetricStore, MetricDatum, append_lines,
                                          write_atomically)
from mlops_kit.ports import StateWriteError

from builders import fill, tmpfs

T0 = datetime(2026, 11, 27, 12, tzinfo=timezone.utc)



def settings(home: Path) -> LocalSettings:
    return LocalSettings(home=home, model_group="g", use_case="u", owner="o",
                         endpoint_name="ep")


def test_a_full_metrics_disk_raises_state_write_error_and_keeps_every_earlier_line(tmp_path):
    home = tmp_path / "home"
    with tmpfs(home / "metrics"):
        store = LocalMetricStore(home)
        store.put([MetricDatum("FeaturePSIMax", 0.1, {"EndpointName": "ep"}, T0)])
        fill(home / "metrics")
        puts = 0
        with pytest.raises(StateWriteError):  # the file's last page takes a few more lines
            while True:
                store.put([MetricDatum("FeaturePSIMax", 0.1, {"EndpointName": "ep"}, T0)])
                puts += 1
        before = store.path.read_bytes()
        monitor = LocalMonitor(settings(home))
        with pytest.raises(StateWriteError) as raised:
            monitor.tick(T0 + timedelta(minutes=10))
        assert raised.value.path == str(store.path)
        assert "No space left on device" in str(raised.value)
        assert store.path.read_bytes() == before  # not a byte of a torn line
        assert [d.value for d in store.read()] == [0.1] * (1 + puts)


def test_a_read_only_alarm_state_raises_state_write_error_and_keeps_the_previous_states(
        tmp_path):
    home = tmp_path / "home"
    with tmpfs(home / "alarms") as alarms:
        monitor = LocalMonitor(settings(home))
        monitor.tick(T0)
        path = home / "alarms" / "ep.json"
        before = path.read_bytes()
        assert json.loads(before)  # the states of every alarm
        subprocess.run(["mount", "-o", "remount,ro", str(alarms)], check=True)
        with pytest.raises(StateWriteError) as raised:
            LocalMonitor(settings(home)).tick(T0 + timedelta(minutes=10))
        assert raised.value.path == str(path)
        assert "Read-only file system" in str(raised.value)
        assert path.read_bytes() == before
        assert sorted(p.name for p in alarms.iterdir()) == ["ep.json"]  # no temp file


def test_write_atomically_leaves_the_old_content_and_no_temp_file_when_the_disk_is_full(
        tmp_path):
    with tmpfs(tmp_path / "state") as folder:
        target = folder / "state.json"
        write_atomically(target, json.dumps({"v": 1}))
        fill(folder)
        with pytest.raises(StateWriteError):
            write_atomically(target, json.dumps({"v": 2, "pad": "x" * 10_000}))
        assert json.loads(target.read_text()) == {"v": 1}
        assert sorted(p.name for p in folder.iterdir()) == ["filler", "state.json"]


def test_an_append_after_a_torn_line_starts_on_a_new_line(tmp_path):
    store = LocalMetricStore(tmp_path)
    store.put([MetricDatum("AUPR", 0.5, {"EndpointName": "ep"}, T0)])
    with open(store.path, "a") as handle:  # a crash mid-append
        handle.write('{"_aws": {"Timestamp": 17')
    store.put([MetricDatum("AUPR", 0.6, {"EndpointName": "ep"}, T0)])
    assert [d.value for d in store.read()] == [0.5, 0.6]
    append_lines(store.path, "")  # nothing to append: nothing written
    assert store.path.read_text().endswith("\n")


def test_the_dropped_capture_count_is_counted_once_across_monitor_runs(tmp_path):
    """`mlops monitor --once` builds a new monitor each run: what it counted is kept."""
    home = tmp_path / "home"
    health = home / "health" / "capture" / "ep"
    health.mkdir(parents=True)
    (health / "w0-1.json").write_text(json.dumps({"dropped": 7, "failing": True,
                                                  "reason": "data capture failing: x"}))
    assert LocalMonitor(settings(home)).tick(T0).capture_dropped == 7
    (health / "w1-2.json").write_text(json.dumps({"dropped": 3, "failing": False}))
    result = LocalMonitor(settings(home)).tick(T0 + timedelta(minutes=10))
    assert result.capture_dropped == 3
    assert result.value("CaptureRecordsDropped", EndpointName="ep") == 3
    assert result.capture_failing == ["data capture failing: x"]
