"""Nothing lost under faults (issue [K]): an approval and its event are one fact, and a damaged
registry is never mistaken for an empty one.

Each kill test runs the real `mlops` in a process that SIGKILLs itself at one step
(`killpoint.py`), then runs the next command a user would, and checks the intended change is
complete, once."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_kit.cli.app import EXIT_BAD_INPUT, EXIT_DAMAGED_STATE, EXIT_OK
from mlops_kit.deploy.events import model_package_event
from mlops_kit.local.control_plane import local_registry, publish
from mlops_kit.registry.local import MAX_DELIVERY_ATTEMPTS

from ._world import ENDPOINT, GROUP, approve_and_deploy, make_home, weights, write_probes

KILLPOINT = Path(__file__).with_name("killpoint.py")
SIGKILLED = -9


def environment(home: Path) -> dict[str, str]:
    return {**os.environ, "MLOPS_HOME": str(home), "MLOPS_MODEL_GROUP": GROUP,
            "MLOPS_ENDPOINT": ENDPOINT, "MLOPS_OWNER": "carol"}


def mlops(home: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "mlops_kit.cli", *args],
                            env=environment(home), capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    return result


def killed_at(home: Path, target: str, when: str, mode: str, *args: str) -> None:
    result = subprocess.run([sys.executable, str(KILLPOINT), target, when, mode, *args],
                            env=environment(home), capture_output=True, text=True, timeout=120)
    assert result.returncode == SIGKILLED, (f"not killed at {target} ({when}): exit "
                                            f"{result.returncode}\n{result.stderr}")


@pytest.fixture()
def serving_v1(tmp_path):
    """v1 serves; v2 and v3 registered, pending."""
    settings, registry = make_home(tmp_path, versions=3)
    approve_and_deploy(settings, registry, 1)
    write_probes(settings, {"v1": True, "v2": True, "v3": True})
    return settings, local_registry(settings)


APPROVAL_STEPS = [
    # (where the process dies, and the command the user runs next)
    ("mlops_kit.registry.local:LocalRegistry.set_status", "before", "approve"),
    ("mlops_kit.registry.local:LocalRegistry.set_status", "after", "status"),
    # the first call is the delivery of what earlier commands left; the second, the approval's
    # (e.g. waiting there behind a rollback that holds the event lock)
    ("mlops_kit.local.control_plane:single_writer", "before:2", "status"),
    ("mlops_kit.deploy.local_endpoint:LocalEndpoints.deploy", "before", "status"),
    ("mlops_kit.deploy.local_endpoint:LocalEndpoints.deploy", "after", "status"),
    ("mlops_kit.registry.local:LocalRegistry.record_deployment", "after", "status"),
    ("mlops_kit.registry.local:LocalRegistry.mark_delivered", "before", "list"),
    ("mlops_kit.registry.local:LocalRegistry.mark_delivered", "after", "approve"),
]


@pytest.mark.parametrize("target,when,then", APPROVAL_STEPS,
                         ids=[f"{t.split(':')[1]}-{w}" for t, w, _ in APPROVAL_STEPS])
def test_an_approval_killed_at_any_step_is_deployed_once_by_the_next_command(
        serving_v1, target, when, then):
    settings, registry = serving_v1
    killed_at(settings.home, target, when, "cli", "registry", "approve", "2", "--reason", "ship")
    follow_up = {"approve": ("registry", "approve", "2", "--reason", "ship it"),
                 "status": ("status", "--json"), "list": ("registry", "list", "--json")}[then]
    assert mlops(settings.home, *follow_up).returncode == EXIT_OK
    assert registry.get(2).status == "Approved"
    assert weights(settings) == {2: 1.0, 1: 0.0}
    assert [(d.kind, d.version) for d in registry.deployments(ENDPOINT)] == [
        ("promote", 1), ("promote", 2)]
    assert registry.pending_events() == []
    # Approving again changes nothing more.
    again = mlops(settings.home, "registry", "approve", "2", "--reason", "again", "--json")
    assert json.loads(again.stdout)["deployments"] == []
    assert len(registry.deployments(ENDPOINT)) == 2


ROLLBACK_STEPS = [
    ("mlops_kit.registry.local:LocalRegistry.enqueue", "after"),
    ("mlops_kit.deploy.local_endpoint:LocalEndpoints.set_weights", "after"),
    ("mlops_kit.registry.local:LocalRegistry.record_deployment", "after"),
    ("mlops_kit.registry.local:LocalRegistry.mark_delivered", "before"),
]


@pytest.mark.parametrize("target,when", ROLLBACK_STEPS,
                         ids=[f"{t.split(':')[1]}-{w}" for t, w in ROLLBACK_STEPS])
def test_an_alarm_killed_at_any_step_rolls_back_once(serving_v1, target, when):
    settings, registry = serving_v1
    assert mlops(settings.home, "registry", "approve", "2", "--reason", "ship").returncode == 0
    killed_at(settings.home, target, when, "alarm")
    assert mlops(settings.home, "status", "--json").returncode == EXIT_OK
    assert weights(settings) == {2: 0.0, 1: 1.0}
    assert [(d.kind, d.version) for d in registry.deployments(ENDPOINT)] == [
        ("promote", 1), ("promote", 2), ("rollback", 1)]
    assert registry.pending_events() == []
    notifications = (settings.home / "notifications.jsonl")
    rollbacks = [n for n in notifications.read_text().splitlines() if "rollback" in n] \
        if notifications.exists() else []
    # The notification goes with the shift; a kill after the record and before it loses it
    # (the record keeps the reason): never two.
    assert len(rollbacks) <= 1


MANUAL_STEPS = [
    ("mlops_kit.registry.local:LocalRegistry.enqueue", "after"),
    ("mlops_kit.registry.local:LocalRegistry.claim_rollback", "after"),
    ("mlops_kit.deploy.local_endpoint:LocalEndpoints.set_weights", "after"),
    ("mlops_kit.registry.local:LocalRegistry.record_deployment", "after"),
]


@pytest.mark.parametrize("target,when", MANUAL_STEPS,
                         ids=[f"{t.split(':')[1]}-{w}" for t, w in MANUAL_STEPS])
def test_a_manual_rollback_killed_at_any_step_is_completed_once_by_the_next_command(
        serving_v1, target, when):
    settings, registry = serving_v1
    assert mlops(settings.home, "registry", "approve", "2", "--reason", "ship").returncode == 0
    killed_at(settings.home, target, when, "cli", "rollback", "--reason", "scores look wrong")
    assert mlops(settings.home, "status", "--json").returncode == EXIT_OK
    assert weights(settings) == {2: 0.0, 1: 1.0}
    assert [(d.kind, d.version) for d in registry.deployments(ENDPOINT)] == [
        ("promote", 1), ("promote", 2), ("rollback", 1)]
    assert registry.pending_events() == []
    # A second rollback by hand is a new request: it finds no further fallback to move to.
    again = mlops(settings.home, "rollback", "--reason", "again")
    assert again.returncode != EXIT_OK and weights(settings) == {2: 0.0, 1: 1.0}


def test_reapproving_an_approved_version_that_never_deployed_deploys_it(serving_v1):
    settings, registry = serving_v1
    # Approved by something that emitted no event (a home from before the outbox).
    make_home_registry = type(registry)(settings.home, GROUP)
    make_home_registry.approve(2, actor="bob", reason="ship")
    assert weights(settings) == {1: 1.0}
    result = mlops(settings.home, "registry", "approve", "2", "--reason", "deploy it")
    assert result.returncode == EXIT_OK and "never deployed" in result.stdout
    assert weights(settings) == {2: 1.0, 1: 0.0}


def test_an_archived_version_needs_unarchive_to_be_approved(serving_v1):
    settings, registry = serving_v1
    registry.archive(3, actor="retention", reason="retention: old")
    refused = mlops(settings.home, "registry", "approve", "3", "--reason", "ship")
    assert refused.returncode == EXIT_BAD_INPUT and "--unarchive" in refused.stderr
    assert registry.get(3).status == "PendingManualApproval" and weights(settings) == {1: 1.0}
    done = mlops(settings.home, "registry", "approve", "3", "--reason", "ship", "--unarchive")
    assert done.returncode == EXIT_OK, done.stderr
    assert not registry.get(3).archived_at and weights(settings) == {3: 1.0, 1: 0.0}
    assert [t.to_status for t in registry.transitions(3)][-2:] == ["PendingManualApproval",
                                                                    "Approved"]


def test_an_event_that_keeps_failing_is_dead_lettered_and_on_call_told(serving_v1):
    settings, registry = serving_v1
    shutil.rmtree(registry.get(2).model_uri)
    registry.approve(2, actor="bob", reason="ship")  # event kept, undeliverable
    (pending,) = registry.pending_events()
    for attempt in range(1, MAX_DELIVERY_ATTEMPTS):
        with pytest.raises(FileNotFoundError):
            publish(settings, model_package_event(GROUP, 2, "Approved"))
    # Both kept events failed MAX_DELIVERY_ATTEMPTS - 1 times... one more command finishes the
    # first one's last attempt; nothing is left blocking.
    mlops(settings.home, "status", "--json")
    failed = next(e for e in registry.outbox() if e.seq == pending.seq)
    assert failed.delivered_at and failed.outcome["action"] == "failed"
    assert failed.attempts == MAX_DELIVERY_ATTEMPTS
    alerts = (settings.home / "notifications.jsonl").read_text()
    assert "not delivered after 3 attempts" in alerts and weights(settings) == {1: 1.0}


# -- a damaged registry ---------------------------------------------------------------------

def _empty(db: Path) -> None:
    db.write_bytes(b"")


def _truncated(db: Path) -> None:
    os.truncate(db, db.stat().st_size // 2)


def _garbage(db: Path) -> None:
    db.write_bytes(b"not a database at all " * 200)


def _missing(db: Path) -> None:
    db.unlink()


def _foreign(db: Path) -> None:
    db.unlink()
    other = sqlite3.connect(db)
    other.execute("CREATE TABLE notes (text)")
    other.commit()
    other.close()


DAMAGE = {"empty": _empty, "truncated": _truncated, "garbage": _garbage, "missing": _missing,
          "foreign": _foreign}
EVERY_COMMAND = [("registry", "list"), ("registry", "show", "1"), ("status",),
                 ("rollback", "--reason", "alarm"), ("registry", "approve", "2", "--reason", "x"),
                 ("monitor", "--once")]
"""Run against one damage; every damage gets a read and a traffic change (each command is a
process start: the suite stays short)."""
SOME_COMMANDS = [("registry", "list"), ("rollback", "--reason", "alarm")]


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_registry_is_an_error_with_the_way_back_never_an_empty_registry(
        serving_v1, damage):
    settings, registry = serving_v1
    with sqlite3.connect(registry.db_path) as db:  # checkpoint: the database file is whole
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for suffix in ("-wal", "-shm"):
        Path(f"{registry.db_path}{suffix}").unlink(missing_ok=True)
    DAMAGE[damage](registry.db_path)
    before = registry.db_path.read_bytes() if registry.db_path.exists() else None
    for command in EVERY_COMMAND if damage == "truncated" else SOME_COMMANDS:
        result = mlops(settings.home, *command)
        assert result.returncode == EXIT_DAMAGED_STATE, (command, result.stdout, result.stderr)
        assert "damaged" in result.stderr and "mlops registry restore" in result.stderr, \
            result.stderr
        now = registry.db_path.read_bytes() if registry.db_path.exists() else None
        assert now == before, f"{command} changed the damaged file"
    assert weights(settings) == {1: 1.0}  # nothing rolled back into an empty registry
    check = mlops(settings.home, "registry", "check")
    assert check.returncode == EXIT_DAMAGED_STATE
    restored = mlops(settings.home, "registry", "restore")
    assert restored.returncode == EXIT_OK, restored.stderr
    listing = json.loads(mlops(settings.home, "registry", "list", "--json").stdout)
    assert [v["version"] for v in listing["versions"]] == [1, 2, 3]
    assert [d.version for d in registry.deployments(ENDPOINT)] == [1]
    assert mlops(settings.home, "registry", "check").returncode == EXIT_OK


def test_a_new_home_reads_as_empty_and_creates_nothing(tmp_path):
    home = tmp_path / "new"
    listing = mlops(home, "registry", "list", "--json")
    assert listing.returncode == EXIT_OK and json.loads(listing.stdout)["versions"] == []
    assert not home.exists() or not (home / "registry.db").exists()


def test_a_rollback_on_an_empty_home_says_what_to_do(tmp_path):
    result = mlops(tmp_path / "new", "rollback", "--reason", "drill")
    assert result.returncode == 4 and "approve a version first" in result.stdout.lower()


def test_a_healthy_registry_is_not_restored_over_without_force(serving_v1):
    settings, _ = serving_v1
    refused = mlops(settings.home, "registry", "restore")
    assert refused.returncode == EXIT_BAD_INPUT and "--force" in refused.stderr


def test_every_change_leaves_a_restorable_backup(serving_v1):
    settings, registry = serving_v1
    registry.approve(2, actor="bob", reason="ship")
    newest = registry.backups()[-1]
    copy = sqlite3.connect(newest)
    (status,) = copy.execute("SELECT status FROM model_versions WHERE version = 2").fetchone()
    copy.close()
    assert status == "Approved" and len(registry.backups()) <= 3


def test_a_damaged_endpoint_state_is_exit_6_naming_the_file_never_not_deployed(serving_v1):
    settings, registry = serving_v1
    state = settings.home / "endpoints" / f"{ENDPOINT}.json"
    state.write_text(state.read_text()[:40])  # torn by something outside the kit
    for command in (("status",), ("rollback", "--reason", "alarm"),
                    ("registry", "approve", "2", "--reason", "x")):
        result = mlops(settings.home, *command)
        assert result.returncode == EXIT_DAMAGED_STATE, (command, result.stderr)
        assert str(state) in result.stderr and "damaged" in result.stderr
    assert registry.get(2).status == "Approved"  # kept: its event waits in the outbox
    assert [e.detail_type for e in registry.pending_events()] == [
        "SageMaker Model Package State Change"]
