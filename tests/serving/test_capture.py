"""Data capture: SageMaker's line format and key layout, rotation, sampling, torn lines."""

from __future__ import annotations

import base64
import calendar
import json
import shutil
from pathlib import Path

import pytest

from mlops_kit.serving.capture import (CaptureWriter, capture_line, parse_capture_line,
                                       read_capture)

from .conftest import FIXTURES

from builders import fill, tmpfs

SAMPLE = FIXTURES / "data-capture.sample.jsonl"
CSV_ROW = b"412.5,3,0.17,1,0,27,5.2,1"


def test_reader_parses_the_sagemaker_sample_and_skips_its_torn_line():
    records, skipped = read_capture(SAMPLE)
    assert skipped == 1
    assert len(records) == 3
    first, second, third = records
    assert first.input.encoding == "CSV" and first.input.data == CSV_ROW.decode()
    assert first.output.content_type == "text/csv; charset=utf-8"
    assert first.inference_id == "txn-000184223"
    assert second.inference_id is None
    assert third.input.encoding == "BASE64"
    assert third.input.payload() == b"not csv, not json: captured as base64"
    assert first.variant is None  # the fixture path does not follow the key layout


def test_written_lines_are_sagemaker_capture_lines():
    line = capture_line(CSV_ROW, "text/csv", b"0.0312", "text/csv", inference_id="txn-1",
                        inference_time="2026-11-20T09:02:11Z")
    document = json.loads(line)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert document["eventVersion"] == "0"
    assert document["captureData"]["endpointInput"] == {
        "observedContentType": "text/csv", "mode": "INPUT", "data": CSV_ROW.decode(),
        "encoding": "CSV"}
    assert document["captureData"]["endpointOutput"]["mode"] == "OUTPUT"
    meta = document["eventMetadata"]
    assert meta["inferenceId"] == "txn-1" and meta["inferenceTime"] == "2026-11-20T09:02:11Z"
    assert len(meta["eventId"]) == 36
    # The shape matches SageMaker's own lines key for key.
    sample = json.loads(SAMPLE.read_text().splitlines()[0])
    assert _shape(document) == _shape(sample)


def _shape(value):
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    return type(value).__name__


def test_json_and_other_payloads_are_encoded_as_sagemaker_does():
    as_json = json.loads(capture_line(b'{"instances": [[1, 2]]}', "application/json",
                                      b'{"predictions": []}', "application/json"))
    assert as_json["captureData"]["endpointInput"]["encoding"] == "JSON"
    assert "inferenceId" not in as_json["eventMetadata"]
    binary = json.loads(capture_line(b"\x93NUMPY", "application/x-npy", b"0.5", "text/csv"))
    assert binary["captureData"]["endpointInput"]["encoding"] == "BASE64"
    assert base64.b64decode(binary["captureData"]["endpointInput"]["data"]) == b"\x93NUMPY"


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_files_follow_the_key_layout_per_variant_and_rotate(tmp_path):
    clock = Clock(calendar.timegm((2026, 11, 20, 9, 0, 0)) - 2.0)  # 08:59:58Z
    writer = CaptureWriter(tmp_path, "ep", writer_id="w0", clock=clock, max_bytes=2000)
    for variant in ("v3", "v2", "v3"):
        writer.write(variant, CSV_ROW, "text/csv", b"0.1", "text/csv", "id-" + variant)
    clock.now += 3  # crosses the hour: a new file in the next hour's directory
    writer.write("v3", CSV_ROW, "text/csv", b"0.1", "text/csv")
    for _ in range(10):  # ~330 bytes a line: rotates by size
        writer.write("v3", CSV_ROW, "text/csv", b"0.1", "text/csv")
    line_bytes = len(capture_line(CSV_ROW, "text/csv", b"0.1", "text/csv"))
    writer.close()
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.jsonl"))
    hours = {(p.parts[2], "/".join(p.parts[3:7])) for p in files}
    assert hours == {("v3", "2026/11/20/08"), ("v2", "2026/11/20/08"), ("v3", "2026/11/20/09")}
    assert all(p.parts[:2] == ("capture", "ep") and "-w0-" in p.name for p in files)
    rotated = [tmp_path / p for p in files if p.parts[2] == "v3" and p.parts[6] == "09"]
    assert len(rotated) >= 2
    assert all((p.stat().st_size) < 2000 + line_bytes for p in rotated)
    records, skipped = read_capture(tmp_path / "capture")
    assert skipped == 0 and len(records) == 14
    assert {(r.endpoint, r.variant) for r in records} == {("ep", "v3"), ("ep", "v2")}
    assert {r.inference_id for r in records if r.variant == "v2"} == {"id-v2"}


def test_torn_and_corrupt_lines_are_counted_and_skipped(tmp_path):
    writer = CaptureWriter(tmp_path, "ep", writer_id="w0")
    for _ in range(5):
        writer.write("v1", CSV_ROW, "text/csv", b"0.1", "text/csv")
    path = writer.open_files()[0]
    writer.close()
    data = path.read_bytes()
    path.write_bytes(data[:-57])  # a crash mid-write leaves a torn last line
    other = path.with_name("other.jsonl")
    other.write_text('{"captureData": {}}\n\n' + data.decode().splitlines()[0] + "\n"
                     + "{\"not\": \"capture\"}\n")
    records, skipped = read_capture([path, other])
    assert (len(records), skipped) == (5, 3)


def test_sampling_percentages(tmp_path):
    never = CaptureWriter(tmp_path, "ep", percent=0)
    always = CaptureWriter(tmp_path, "ep", percent=100)
    half = CaptureWriter(tmp_path, "ep", percent=50, seed=3)
    assert not any(never.sampled() for _ in range(100))
    assert all(always.sampled() for _ in range(100))
    assert sum(half.sampled() for _ in range(2000)) == pytest.approx(1000, abs=100)
    with pytest.raises(ValueError):
        CaptureWriter(tmp_path, "ep", percent=101)


def test_parse_rejects_records_missing_sagemaker_fields():
    good = SAMPLE.read_text().splitlines()[0]
    assert parse_capture_line(good).event_id
    document = json.loads(good)
    del document["eventMetadata"]["eventId"]
    with pytest.raises(ValueError):
        parse_capture_line(json.dumps(document))


def test_reader_accepts_directories(tmp_path):
    target = tmp_path / "capture" / "ep" / "v1" / "2026" / "11" / "20" / "09"
    target.mkdir(parents=True)
    shutil.copy(SAMPLE, target / "02-11-000-x.jsonl")
    records, skipped = read_capture(tmp_path / "capture")
    assert (len(records), skipped) == (3, 1)
    assert {r.variant for r in records} == {"v1"} and records[0].path.endswith("x.jsonl")
    assert Path(records[0].path).exists()


# -- failures: capture never fails the request ------------------------------------------------
import logging  # noqa: E402
import subprocess  # noqa: E402


def write_n(writer: CaptureWriter, n: int, variant: str = "v1") -> None:
    for _ in range(n):
        writer.write(variant, CSV_ROW, "text/csv", b"0.1", "text/csv")


def test_a_full_disk_drops_and_counts_records_logs_once_per_interval_and_recovers(
        tmp_path, caplog):
    timer = Clock(1000.0)
    with tmpfs(tmp_path / "home" / "capture"):
        writer = CaptureWriter(tmp_path / "home", "ep", writer_id="w0", timer=timer,
                               retry_seconds=1.0, log_seconds=60.0)
        write_n(writer, 3)  # healthy: written
        filler = fill(tmp_path / "home" / "capture")
        caplog.set_level(logging.WARNING, "mlops_kit.serving.capture")
        for _ in range(200):  # every record fails or is dropped during the back-off
            write_n(writer, 1)
            timer.now += 0.05  # 10 s in all: nine retries after the back-off
        health = writer.health()
        # The last page of the open file still takes a few lines; every other record is
        # dropped, none is lost unaccounted for.
        assert health.failing and health.dropped + health.written == 203
        assert health.dropped >= 180
        written, dropped = health.written, health.dropped
        assert health.cause == "No space left on device"
        assert str(tmp_path / "home" / "capture" / "ep") in health.path
        assert "data capture failing: No space left on device" in health.describe()
        assert f"{dropped} records dropped since" in health.describe()
        assert len([r for r in caplog.records if "data capture failing" in r.message]) == 1
        timer.now += 60  # the next interval: logged once more
        write_n(writer, 5)
        assert len([r for r in caplog.records if "still failing" in r.message]) == 1
        # No partial line and no pile of empty files were left behind on the full disk.
        writer.sync()
        records, skipped = read_capture(tmp_path / "home" / "capture")
        assert (len(records), skipped) == (written, 0)
        assert len(list((tmp_path / "home" / "capture").rglob("*.jsonl"))) == 1
        # Space freed: within the back-off nothing is tried, then writing resumes by itself.
        filler.unlink()
        write_n(writer, 1)
        assert writer.health().failing and writer.health().dropped == dropped + 6
        timer.now += 1.0
        write_n(writer, 4)
        health = writer.health()
        assert not health.failing and health.dropped == dropped + 6
        assert health.written == written + 4
        assert any("data capture resumed" in r.message for r in caplog.records)
        writer.close()
        records, skipped = read_capture(tmp_path / "home" / "capture")
        assert (len(records), skipped) == (written + 4, 0)


def test_a_read_only_folder_drops_records_and_the_sync_probe_finds_it_writable_again(tmp_path):
    timer = Clock(0.0)
    capture = tmp_path / "home" / "capture"
    with tmpfs(capture):
        subprocess.run(["mount", "-o", "remount,ro", str(capture)], check=True)
        writer = CaptureWriter(tmp_path / "home", "ep", writer_id="w1", timer=timer)
        write_n(writer, 10)
        health = writer.health()
        assert health.failing and health.dropped == 10 and health.written == 0
        assert health.cause == "Read-only file system"
        # The health file sits outside the capture folder and says the same.
        writer.sync()
        document = json.loads((tmp_path / "home" / "health" / "capture" / "ep" / "w1.json")
                              .read_text())
        assert document["failing"] and document["dropped"] == 10
        assert document["cause"] == "Read-only file system"
        subprocess.run(["mount", "-o", "remount,rw", str(capture)], check=True)
        writer.sync()  # still backing off: no probe yet
        assert writer.health().failing
        timer.now += 1.0
        writer.sync()  # no traffic needed: the probe clears the failure
        assert not writer.health().failing
        assert not any(p.name.startswith(".probe") for p in capture.rglob("*"))
        write_n(writer, 2)
        writer.close()
        document = json.loads((tmp_path / "home" / "health" / "capture" / "ep" / "w1.json")
                              .read_text())
        assert not document["failing"] and document["dropped"] == 10 and document["written"] == 2
        assert read_capture(capture)[0].__len__() == 2


def test_a_failing_fdatasync_in_the_sync_thread_counts_the_unsynced_records(tmp_path,
                                                                             monkeypatch):
    import mlops_kit.serving.capture_writer as capture_module

    writer = CaptureWriter(tmp_path, "ep", writer_id="w2", timer=Clock(0.0))
    write_n(writer, 4)

    def failing(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(capture_module.os, "fdatasync", failing)
    writer.sync()  # must not raise: the sync thread keeps running
    health = writer.health()
    assert health.failing and health.dropped == 4 and health.cause == "Input/output error"
    monkeypatch.undo()
    writer._retry_at = 0.0
    write_n(writer, 1)  # the broken file is retired, a new one opened
    assert not writer.health().failing
    writer.close()
    assert len(read_capture(tmp_path / "capture")[0]) == 5


def test_the_health_file_is_written_only_once_something_failed(tmp_path):
    writer = CaptureWriter(tmp_path, "ep", writer_id="w3")
    write_n(writer, 3)
    writer.close()
    assert not (tmp_path / "health").exists()
