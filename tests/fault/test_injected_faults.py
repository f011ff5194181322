"""Injected faults on the local home (issue [E]): corrupt capture files, a dying warm fallback,
a half-written registry record. Each case asserts the real outcome and that nothing is lost or
half-written."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import datetime, timezone

import pytest

from mlops_kit.local.control_plane import publish
from mlops_kit.local.monitor import LocalMonitor
from mlops_kit.ports import StateWriteError
from mlops_kit.monitoring.drift_monitor import (UNREADABLE_LINE, compute_metrics, decode_capture,
                                                parse_capture_lines)
from mlops_kit.registry.base import UnknownVersionError
from mlops_kit.registry.local import LocalRegistry

from ._world import (ENDPOINT, GROUP, alarm_event, approve_and_deploy, baseline_amounts,
                     make_home, request, weights, write_baselines)


def capture_line(amount: float, channel: str, score: float) -> str:
    return json.dumps({"captureData": {
        "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
                          "data": f"{amount},{channel}", "encoding": "CSV"},
        "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT",
                           "data": f"{score}", "encoding": "CSV"}},
        "eventMetadata": {"eventId": "e", "inferenceTime": "2026-11-27T10:00:00Z"},
        "eventVersion": "0"})


WRONG_SCHEMA = [
    {"hello": "world"},                                                  # no captureData
    {"captureData": "not an object"},
    {"captureData": {"endpointInput": ["a", "list"], "endpointOutput": {}}},
    {"captureData": {"endpointInput": {"observedContentType": "text/csv", "data": 5},
                     "endpointOutput": {"observedContentType": "text/csv", "data": "0.1"}}},
    {"captureData": {"endpointInput": {"observedContentType": "application/json", "data": 5},
                     "endpointOutput": {"observedContentType": "text/csv", "data": "0.1"}}},
    {"captureData": {"endpointInput": {"observedContentType": "text/csv", "data": "1,pos"},
                     "endpointOutput": {"observedContentType": "text/csv", "data": 0.1}}},
]
ODD_METADATA = {"captureData": {
    "endpointInput": {"observedContentType": "text/csv", "data": "1,pos"},
    "endpointOutput": {"observedContentType": "text/csv", "data": "0.1"}},
    "eventMetadata": "not an object"}
"""A readable row with unreadable metadata: scored, only its inference id is dropped."""


def test_corrupt_capture_files_are_skipped_with_reasons_and_drift_comes_from_the_good_lines(
        tmp_path):
    settings, registry = make_home(tmp_path, versions=1)
    approve_and_deploy(settings, registry, 1)
    folder = settings.home / "capture" / ENDPOINT / "v1" / "2026" / "11" / "27" / "10"
    folder.mkdir(parents=True)
    good = [capture_line(a * 3, "online", 0.2) for a in baseline_amounts()[:300]]
    # A good file whose last line was torn by a crash, then a newline written after restart.
    (folder / "a-good.jsonl").write_text("\n".join(good) + "\n" + good[0][:40] + "\n")
    (folder / "b-binary.jsonl").write_bytes(b"\x00\xff\xfe garbage \x89PNG\r\n\x1a\n\xde\xad\n")
    (folder / "c-empty.jsonl").write_bytes(b"")
    # One line that stays valid but is not a capture record of ours at all (a JSON list).
    (folder / "d-schema.jsonl").write_text(
        "\n".join(json.dumps(r) for r in [*WRONG_SCHEMA, ODD_METADATA]) + "\n[1, 2, 3]\n")

    monitor = LocalMonitor(settings)
    result = monitor.tick(datetime(2026, 11, 27, 10, 5, tzinfo=timezone.utc))

    # torn line + 3 binary lines + JSON list = 5 unreadable; 7 wrong-schema records
    assert result.records == {"v1": 300 + 1 + 5 + len(WRONG_SCHEMA)}
    assert result.skipped == {"v1": 5 + len(WRONG_SCHEMA)}
    reasons = result.skipped_reasons["v1"]
    assert reasons[UNREADABLE_LINE] == 5
    assert reasons["malformed record"] == len(WRONG_SCHEMA)
    assert sum(reasons.values()) == result.skipped["v1"]
    # The drift is exactly what the 301 readable records alone give.
    baseline = monitor.champion_baseline()
    records, _ = parse_capture_lines("\n".join([*good, json.dumps(ODD_METADATA)]))
    expected = compute_metrics(baseline, {"v1": decode_capture(records, baseline.feature_order)},
                               endpoint_name=ENDPOINT, at=result.at)
    expected_max = next(d.value for d in expected if d.name == "FeaturePSIMax")
    assert result.value("FeaturePSIMax", EndpointName=ENDPOINT) == pytest.approx(expected_max)
    assert expected_max > 0.25  # amounts tripled: the good lines do show drift
    # Nothing is read twice: the next tick sees no new records.
    assert monitor.tick(datetime(2026, 11, 27, 10, 10, tzinfo=timezone.utc)).records == {"v1": 0}


@pytest.mark.parametrize("failure", ["http-500", "connection-refused", "model-dir-gone"])
def test_a_dying_fallback_fails_its_probe_and_the_rollback_skips_it(tmp_path, failure):
    settings, registry = make_home(tmp_path, versions=3)
    for version in (1, 2, 3):
        approve_and_deploy(settings, registry, version)
    v2_model = registry.get(2).model_uri

    def invoke(variant: str, body: str) -> tuple[int, str]:
        rows = body.count("\n") + 1
        if variant == "v2":
            if failure == "http-500":
                return 500, '{"ErrorCode": "InternalFailure"}'
            if failure == "connection-refused":
                raise ConnectionRefusedError("worker for v2 is gone")
            shutil.rmtree(v2_model)  # deleted under the server: a fresh worker cannot load it
        model_dir = registry.get(int(variant[1:])).model_uri
        if not (tmp_path / model_dir).exists():
            return 500, f'{{"ErrorCode": "ModelError", "Message": "{model_dir} not found"}}'
        return 200, "\n".join(["0.05"] * rows)

    results = LocalMonitor(settings).probe(invoke, datetime.now(timezone.utc))
    assert {r.variant_name: r.ok for r in results} == {"v3": True, "v2": False, "v1": True}

    (outcome,) = publish(settings, alarm_event())
    assert (outcome.action, outcome.from_version, outcome.to_version) == ("rolled_back", 3, 1)
    assert weights(settings) == {3: 0.0, 2: 0.0, 1: 1.0}
    record = registry.deployments(ENDPOINT)[-1]
    assert "v2: failed its last probe" in record.evidence["skipped"]


# -- a half-written registry record --------------------------------------------------------

@pytest.fixture()
def empty_registry(tmp_path):
    baseline, evaluation = write_baselines(tmp_path / "baselines")
    model = tmp_path / "model"
    model.mkdir()
    (model / "xgboost-model").write_text("weights" * 100)
    (model / "feature-map.json").write_text("{}")
    return LocalRegistry(tmp_path / "home", GROUP), request(model, baseline, evaluation)


def stored_artifacts(registry):
    return sorted(p.name for p in registry.artifacts.iterdir()) if registry.artifacts.exists() \
        else []


def test_a_crash_between_the_artifact_copy_and_the_row_leaves_no_version_and_heals(
        empty_registry, monkeypatch):
    registry, req = empty_registry
    real_connect = sqlite3.connect

    def disk_fails_on_commit(*args, **kwargs):
        connection = real_connect(*args, **kwargs)
        return _FailingCommit(connection)

    monkeypatch.setattr(sqlite3, "connect", disk_fails_on_commit)
    # The disk error reaches the caller as the kit's StateWriteError, naming the database.
    with pytest.raises(StateWriteError, match="registry.db: disk I/O"):
        registry.register(req)
    monkeypatch.undo()
    # The artifact was stored whole (content-addressed, renamed into place) but no version,
    # no transition: the transaction rolled back.
    (digest,) = stored_artifacts(registry)
    assert registry.list_versions() == [] and registry.transitions() == []
    with pytest.raises(UnknownVersionError):
        registry.get(1)
    # The next registration of the same model reuses the stored artifact: version 1, whole.
    version = registry.register(req)
    assert version.version == 1 and version.model_uri.endswith(digest)
    assert stored_artifacts(registry) == [digest]
    assert [t.to_status for t in registry.transitions(1)] == ["PendingManualApproval"]


class _FailingCommit:
    """A connection whose COMMIT fails as a full or failing disk makes it fail."""

    def __init__(self, connection):
        self._connection = connection

    def execute(self, sql, *args):
        if sql.strip().upper() == "COMMIT":
            raise sqlite3.OperationalError("disk I/O error")
        return self._connection.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._connection, name)


def test_a_crash_while_copying_the_artifact_leaves_no_partial_artifact_and_no_row(
        empty_registry, monkeypatch):
    registry, req = empty_registry
    real_copy = shutil.copyfile  # what copytree's copy2 calls for each file

    def copy_one_file_then_die(src, dst, *args, **kwargs):
        if copied:
            raise OSError(28, "No space left on device")
        copied.append(src)
        return real_copy(src, dst, *args, **kwargs)

    copied: list = []
    monkeypatch.setattr(shutil, "copyfile", copy_one_file_then_die)
    with pytest.raises(OSError, match="No space left"):
        registry.register(req)
    monkeypatch.undo()
    assert copied  # the copy really was cut in the middle
    # Neither a half-filled artifact under its digest nor a staging leftover, nor a row.
    assert stored_artifacts(registry) == []
    assert registry.list_versions() == []
    version = registry.register(req)
    (digest,) = stored_artifacts(registry)
    assert sorted(p.name for p in (registry.artifacts / digest).iterdir()) == [
        "feature-map.json", "xgboost-model"]
    assert version.version == 1


def test_a_row_whose_artifact_is_gone_is_refused_at_deployment_and_healed_by_reregistering(
        tmp_path):
    settings, registry = make_home(tmp_path, versions=2)
    approve_and_deploy(settings, registry, 1)
    shutil.rmtree(registry.get(2).model_uri)
    registry.approve(2, actor="bob", reason="ship")
    from mlops_kit.deploy.events import model_package_event

    with pytest.raises(FileNotFoundError, match="v2"):
        publish(settings, model_package_event(GROUP, 2, "Approved"))
    # Refused before anything changed: v1 still serves, no record of a v2 deployment.
    assert weights(settings) == {1: 1.0}
    assert [d.version for d in registry.deployments(ENDPOINT)] == [1]
    # The registry still answers (what `mlops registry list/show/status` read).
    assert [v.version for v in registry.list_versions()] == [1, 2]
    assert registry.get(2).status == "Approved" and registry.champion(ENDPOINT).version == 1
    # The refused approval stays in the outbox, counted, for redelivery.
    (kept,) = registry.pending_events()
    assert kept.attempts == 1 and "FileNotFoundError" in kept.last_error
    # Registering the same model again restores the artifact under the same content address;
    # the next delivery (here with another event) redelivers the kept approval first: it
    # deploys, and the new event finds v2 serving.
    again = registry.register(request(tmp_path / "model2", *write_baselines(tmp_path / "b2")))
    assert again.model_uri == registry.get(2).model_uri
    (outcome,) = publish(settings, model_package_event(GROUP, 2, "Approved"))
    assert outcome.action == "unchanged" and weights(settings) == {2: 1.0, 1: 0.0}
    assert registry.pending_events() == []
    redelivered = next(e for e in registry.outbox() if e.seq == kept.seq)
    assert [o["action"] for o in redelivered.outcome["outcomes"]] == ["deployed"]
