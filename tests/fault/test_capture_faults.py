"""Data capture never fails scoring: a real `mlops serve` (2 workers, capture 100 %) whose
capture folder is a read-only tmpfs, or a tmpfs filled to the last byte while it serves.

Every request is still answered 200 with the model's score; /ping stays 200 but says
"Degraded", naming the cause; the records that could not be written are counted, and the
local monitor turns the count into CaptureRecordsDropped, whose notify-only alarm reaches
ALARM (on-call notified, the rollback controller ignores it). Once the folder is writable
again capture resumes by itself and /ping is Healthy. Every request ends up either captured
or counted as dropped.

Needs root (mount); skipped with the reason where tmpfs cannot be mounted.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mlops_kit.config import LocalSettings
from mlops_kit.registry.local import LocalRegistry
from mlops_kit.serving.capture import capture_health_dir, read_capture

from serving.conftest import (ENDPOINT, model_versions, sample_rows,  # noqa: F401 - fixtures
                              start_server, write_state)
from serving.test_fault_load_and_restart import SCORE_TOLERANCE, handler_scores

from ._world import GROUP, request, write_baselines

from builders import fill

REQUESTS = 200


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), capture_output=True, text=True)


@pytest.fixture()
def capture_tmpfs(tmp_path):
    """$MLOPS_HOME/capture on its own 2 MiB tmpfs (the rest of the home on the normal disk)."""
    home = tmp_path / "home"
    folder = home / "capture"
    folder.mkdir(parents=True)
    mounted = run("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs ({mounted.stderr.strip()}): these tests need a real "
                    f"read-only / full filesystem")
    try:
        yield home, folder
    finally:
        run("umount", "-l", str(folder))


def make_endpoint(home: Path, tmp_path: Path, model_versions) -> LocalSettings:  # noqa: F811
    """v3 serving, v2 and v1 warm; registered with a drift baseline for the monitor."""
    baseline, evaluation = write_baselines(tmp_path / "baselines")
    registry = LocalRegistry(home, GROUP)
    for version in (1, 2, 3):
        registry.register(request(model_versions[version], baseline, evaluation))
    write_state(home, model_versions, {3: 1.0, 2: 0.0, 1: 0.0})
    return LocalSettings(home=home, model_group=GROUP, use_case="fault-suite",
                         owner="fault-suite", endpoint_name=ENDPOINT)


def score_requests(server, lines, expected, count: int) -> tuple[int, int]:
    """`count` CSV requests, each on its own connection (the supervisor alternates workers):
    (answered 200, with the expected score)."""
    ok = correct = 0
    for i in range(count):
        row = i % len(expected)
        status, _, body = server.invoke(lines[row])
        ok += status == 200
        correct += status == 200 and math.isclose(float(body), expected[row],
                                                  rel_tol=SCORE_TOLERANCE, abs_tol=1e-9)
    return ok, correct


def pings(server, count: int = 6) -> list[tuple[int, dict]]:
    answers = []
    for _ in range(count):
        status, _, body = server.request("GET", "/ping", timeout=5)
        answers.append((status, json.loads(body)))
    return answers


def wait_healthy(server, timeout: float = 15.0) -> list[tuple[int, dict]]:
    deadline = time.monotonic() + timeout
    while True:
        answers = pings(server)
        if all(s == 200 and a["status"] == "Healthy" for s, a in answers) \
                or time.monotonic() > deadline:
            return answers
        time.sleep(0.3)


def dropped_by_health_files(home: Path) -> int:
    return sum(json.loads(p.read_text())["dropped"]
               for p in capture_health_dir(home, ENDPOINT).glob("*.json"))


def monitor_alarms_on_drops(settings: LocalSettings) -> int:
    """Two ticks of the local monitor a period apart: the first publishes the drops, the
    second sees the closed period and raises the notify-only alarm. Returns the drops seen."""
    from mlops_kit.local.monitor import LocalMonitor

    monitor = LocalMonitor(settings, time_scale=0.01)  # a 600 s period lasts 6 s
    now = datetime.now(timezone.utc)
    first = monitor.tick(now)
    assert first.capture_dropped > 0 and first.value("CaptureRecordsDropped") == \
        first.capture_dropped
    assert first.capture_failing and all("data capture failing" in r
                                         for r in first.capture_failing)
    second = monitor.tick(now + timedelta(seconds=7))
    name = f"{ENDPOINT}-capture-dropped"
    assert [e["detail"]["state"]["value"] for e in second.events
            if e["detail"]["alarmName"] == name] == ["ALARM"], second.events
    # Notify-only: on-call hears of it; the rollback controller does not act on it.
    assert all(o.action == "ignored" for o in second.outcomes), second.outcomes
    notified = [json.loads(line) for line in
                (settings.home / "notifications.jsonl").read_text().splitlines()]
    assert [n["message"]["alarm"] for n in notified] == [name]
    from mlops_kit.endpoint_state import load_state

    assert {v.variant_name: v.weight for v in load_state(settings.home, ENDPOINT).variants} \
        == {"v3": 1.0, "v2": 0.0, "v1": 0.0}  # no rollback
    return first.capture_dropped


def assert_degraded(answers, cause: str, folder: Path) -> None:
    for status, answer in answers:
        assert status == 200, answer
        assert answer["status"] == "Degraded", answer
        reason = answer["capture"]["reason"]
        assert reason.startswith(f"data capture failing: {cause} ({folder}"), reason
        assert " records dropped since 20" in reason


def test_a_read_only_capture_folder_never_fails_a_request(capture_tmpfs, tmp_path,
                                                          model_versions,  # noqa: F811
                                                          sample_rows):  # noqa: F811
    home, folder = capture_tmpfs
    settings = make_endpoint(home, tmp_path, model_versions)
    lines = sample_rows[0][:100]
    expected = handler_scores({"v3": model_versions[3]}, sample_rows)["v3"]
    assert run("mount", "-o", "remount,ro", str(folder)).returncode == 0
    server = start_server(home, log_dir=tmp_path)
    try:
        ok, correct = score_requests(server, lines, expected, REQUESTS)
        print(f"\nread-only capture folder: {ok}/{REQUESTS} answered 200, {correct} correct")
        assert (ok, correct) == (REQUESTS, REQUESTS)
        assert_degraded(pings(server), "Read-only file system", folder)
        time.sleep(1.5)  # the sync threads write the health files
        assert dropped_by_health_files(home) == REQUESTS
        assert monitor_alarms_on_drops(settings) == REQUESTS
        logs = server.logs()
        assert logs.count("data capture failing") <= 2, logs  # once per worker, not per request

        assert run("mount", "-o", "remount,rw", str(folder)).returncode == 0
        answers = wait_healthy(server)  # no traffic needed: the writers probe the folder
        assert all(a["status"] == "Healthy" for _, a in answers), answers
        ok, correct = score_requests(server, lines, expected, 50)
        assert (ok, correct) == (50, 50)
    finally:
        assert server.stop() == 0
    records, skipped = read_capture(folder)
    assert (len(records), skipped) == (50, 0)  # capture resumed by itself
    assert dropped_by_health_files(home) == REQUESTS
    assert "data capture resumed" in server.logs()


def test_a_full_capture_disk_never_fails_a_request(capture_tmpfs, tmp_path,
                                                   model_versions,  # noqa: F811
                                                   sample_rows):  # noqa: F811
    home, folder = capture_tmpfs
    settings = make_endpoint(home, tmp_path, model_versions)
    lines = sample_rows[0][:100]
    expected = handler_scores({"v3": model_versions[3]}, sample_rows)["v3"]
    server = start_server(home, log_dir=tmp_path)
    try:
        assert score_requests(server, lines, expected, 20) == (20, 20)  # captured
        filler = fill(folder)
        ok, correct = score_requests(server, lines, expected, REQUESTS)
        print(f"\nfull capture disk: {ok}/{REQUESTS} answered 200, {correct} correct")
        assert (ok, correct) == (REQUESTS, REQUESTS)
        assert_degraded(pings(server), "No space left on device", folder)
        time.sleep(1.5)
        dropped = dropped_by_health_files(home)
        assert dropped >= REQUESTS - 40  # the open files' last pages take a few lines
        assert monitor_alarms_on_drops(settings) == dropped

        filler.unlink()
        answers = wait_healthy(server)
        assert all(a["status"] == "Healthy" for _, a in answers), answers
        ok, correct = score_requests(server, lines, expected, 50)
        assert (ok, correct) == (50, 50)
    finally:
        assert server.stop() == 0
    records, skipped = read_capture(folder)
    # Every request was captured or counted as dropped; no torn line was left on the disk.
    assert skipped == 0
    assert len(records) + dropped_by_health_files(home) == 20 + REQUESTS + 50
    assert dropped_by_health_files(home) == dropped
