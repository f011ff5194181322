import threading

import pytest

from mlops_kit.registry.base import (ApprovalStatus, InvalidRegistrationError, RegistrationRequest,
                                     UnknownVersionError)
from mlops_kit.registry.local import LocalRegistry

from registry_cases import INVALID_REQUESTS

GATES = [{"gate": "min_aupr", "passed": True, "value": 0.6, "threshold": 0.4}]
LINEAGE = {"data": {"uri": "file:///d.parquet", "sha256": "ab" * 32}, "code": {"version": "git:x"},
           "parameters": {"seed": 42}, "libraries": {"xgboost-cpu": "3.0.5"}}


@pytest.fixture()
def model_dir(tmp_path):
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / "xgboost-model").write_bytes(b"model-bytes")
    return directory


def request(model_dir, **overrides):
    fields = dict(model_group="fraud-detector", model_artifact=str(model_dir),
                  training_run_id="run-1", metrics={"aupr": 0.6}, latency={"p99_ms": 1.0},
                  gates=GATES, lineage=LINEAGE, owner="alice", use_case="fraud")
    fields.update(overrides)
    return RegistrationRequest(**fields)


def test_register_counts_versions_from_one_and_persists(tmp_path, model_dir):
    registry = LocalRegistry(tmp_path / "home", "fraud-detector")
    first = registry.register(request(model_dir))
    second = registry.register(request(model_dir, training_run_id="run-2"))
    assert (first.version, second.version) == (1, 2)
    assert first.status is ApprovalStatus.PENDING
    reopened = LocalRegistry(tmp_path / "home", "fraud-detector")
    assert [v.version for v in reopened.list_versions()] == [1, 2]
    assert reopened.get(2).training_run_id == "run-2"
    assert reopened.get(1).lineage == LINEAGE
    assert [v.version for v in reopened.list_versions(ApprovalStatus.APPROVED)] == []


def test_artifacts_are_copied_once_by_content(tmp_path, model_dir):
    registry = LocalRegistry(tmp_path / "home", "fraud-detector")
    a = registry.register(request(model_dir))
    b = registry.register(request(model_dir))
    assert a.model_uri == b.model_uri
    (model_dir / "xgboost-model").write_bytes(b"other")
    c = registry.register(request(model_dir))
    assert c.model_uri != a.model_uri
    assert (tmp_path / "home" / "registry" / "artifacts").exists()
    from pathlib import Path
    assert (Path(a.model_uri) / "xgboost-model").read_bytes() == b"model-bytes"


def test_audit_trail_records_registration(tmp_path, model_dir):
    registry = LocalRegistry(tmp_path / "home", "fraud-detector")
    registry.register(request(model_dir))
    (trail,) = registry.transitions(1)
    assert (trail.from_status, trail.to_status, trail.actor) == ("", "PendingManualApproval", "alice")


@pytest.mark.parametrize("overrides,match", INVALID_REQUESTS)
def test_incomplete_or_failing_requests_are_refused_and_nothing_is_written(
        tmp_path, model_dir, overrides, match):
    group = overrides.get("model_group", "fraud-detector")
    registry = LocalRegistry(tmp_path / "home", group)
    with pytest.raises(InvalidRegistrationError, match=match):
        registry.register(request(model_dir, **overrides))
    assert registry.list_versions() == []


def test_wrong_group_and_unknown_version(tmp_path, model_dir):
    registry = LocalRegistry(tmp_path / "home", "other-group")
    with pytest.raises(InvalidRegistrationError, match="model group"):
        registry.register(request(model_dir))
    with pytest.raises(UnknownVersionError, match="no version 3"):
        registry.get(3)


def test_concurrent_registrations_get_distinct_versions(tmp_path, model_dir):
    home = tmp_path / "home"
    LocalRegistry(home, "fraud-detector").register(request(model_dir))
    versions, errors = [], []

    def register():
        try:
            versions.append(LocalRegistry(home, "fraud-detector").register(request(model_dir)).version)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=register) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(versions) == list(range(2, 10))


def test_no_champion_without_deployments(tmp_path, model_dir):
    registry = LocalRegistry(tmp_path / "home", "fraud-detector")
    registry.register(request(model_dir))
    assert registry.champion() is None
