"""Staging folders of local pipeline runs: owned by a lock, swept only when the owner is gone;
MLflow's store created once per home, whole (functions/mlops_kit/local/pipeline_runner.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlops_kit.config import LocalSettings
from mlops_kit.local.pipeline_runner import (CLAIM_PREFIX, UNLOCKED_STAGING_MAX_AGE_S,
                                             StagingClaim, prepare_tracking,
                                             sweep_abandoned_runs)

RUN_ID = "20261203T101500Z-a1b2c3"

HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(600)
"""


def dead_run(runs: Path, run_id: str = RUN_ID) -> Path:
    """What a SIGKILLed run leaves: its folder with partial output and an unheld lock file."""
    folder = runs / f".staging-{run_id}"
    (folder / "preprocess").mkdir(parents=True)
    (folder / "preprocess" / "train.parquet").write_bytes(b"partial")
    (runs / f".staging-{run_id}.lock").touch()
    return folder


@pytest.fixture()
def holder():
    """Another process holding a lock file, as a live parallel run holds its own."""
    started = []

    def hold(path: Path) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)],
                                   stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip() == "held"
        started.append(process)
        return process

    yield hold
    for process in started:
        process.kill()
        process.wait()


def test_a_claim_locks_before_the_folder_exists_and_leaves_nothing(tmp_path):
    runs = tmp_path / "runs"
    with StagingClaim(runs) as claim:
        assert claim.folder.is_dir() and claim.lock_file.exists()
        assert claim.folder.name == f".staging-{claim.run_id}"
        assert sweep_abandoned_runs(runs) == []  # its own folder: held, so never swept
        assert claim.folder.is_dir()
        claim.folder.rename(runs / claim.run_id)
    assert sorted(p.name for p in runs.iterdir()) == [claim.run_id]


def test_a_dead_runs_folder_and_lock_file_are_swept(tmp_path):
    runs = tmp_path / "runs"
    dead_run(runs)
    (runs / "20261203T090000Z-000000").mkdir()  # a finished run: not staging
    assert sweep_abandoned_runs(runs) == [RUN_ID]
    assert sorted(p.name for p in runs.iterdir()) == ["20261203T090000Z-000000"]


def test_a_live_runs_folder_is_kept_until_its_process_dies(tmp_path, holder):
    runs = tmp_path / "runs"
    folder = dead_run(runs)
    live = holder(runs / f".staging-{RUN_ID}.lock")
    assert sweep_abandoned_runs(runs) == []
    assert folder.is_dir()
    live.kill()
    live.wait()
    assert sweep_abandoned_runs(runs) == [RUN_ID]
    assert not folder.exists() and list(runs.iterdir()) == []


def test_a_lock_file_without_its_folder_is_swept_only_when_unheld(tmp_path, holder):
    runs = tmp_path / "runs"
    runs.mkdir()
    other = "20261203T101501Z-d4e5f6"
    (runs / f".staging-{RUN_ID}.lock").touch()  # died between locking and its folder
    holder(runs / f".staging-{other}.lock")  # alive, its folder about to be made
    assert sweep_abandoned_runs(runs) == [RUN_ID]
    assert [p.name for p in runs.iterdir()] == [f".staging-{other}.lock"]


def test_claim_files_of_dead_processes_go_and_live_ones_stay(tmp_path, holder):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / f"{CLAIM_PREFIX}dead").touch()
    holder(runs / f"{CLAIM_PREFIX}live")
    sweep_abandoned_runs(runs)
    assert [p.name for p in runs.iterdir()] == [f"{CLAIM_PREFIX}live"]


def test_an_unlocked_folder_of_an_older_kit_is_swept_only_once_stale(tmp_path):
    runs = tmp_path / "runs"
    folder = runs / f".staging-{RUN_ID}"
    (folder / "model").mkdir(parents=True)
    assert sweep_abandoned_runs(runs) == []  # recent: maybe an older kit's live run
    old = time.time() - UNLOCKED_STAGING_MAX_AGE_S - 60
    for path in (folder / "model", folder):
        os.utime(path, (old, old))
    assert sweep_abandoned_runs(runs) == [RUN_ID]
    assert not folder.exists()


def test_names_not_of_the_runners_shape_are_left_alone(tmp_path):
    runs = tmp_path / "runs"
    for name in (".staging-notes", ".staging-20261203T101500Z-a1b2c3-copy", ".hidden"):
        (runs / name).mkdir(parents=True)
    assert sweep_abandoned_runs(runs) == []
    assert len(list(runs.iterdir())) == 3


def test_tracking_store_is_made_whole_once_and_dead_runs_are_marked_killed(tmp_path):
    from mlflow import MlflowClient

    settings = LocalSettings(home=tmp_path / "home", model_group="g", use_case="u", owner="o")
    settings.home.mkdir()
    half_made = settings.home / ".mlflow-0badf00d.db"  # a creator killed mid-migration
    half_made.write_bytes(b"SQLite format 3\x00 and then nothing")
    prepare_tracking(settings)
    assert settings.mlflow_db.exists() and not half_made.exists()
    client = MlflowClient(tracking_uri=settings.mlflow_uri)
    experiment = client.get_experiment_by_name("g")
    assert experiment.artifact_location == settings.mlflow_artifact_root

    killed = client.create_run(experiment.experiment_id, tags={"mlops.pipeline_run": RUN_ID})
    other = client.create_run(experiment.experiment_id, tags={"mlops.pipeline_run": "live"})
    created = settings.mlflow_db.stat().st_ino
    prepare_tracking(settings, abandoned_runs=[RUN_ID])
    assert settings.mlflow_db.stat().st_ino == created  # reused, not made again
    assert client.get_run(killed.info.run_id).info.status == "KILLED"
    assert client.get_run(other.info.run_id).info.status == "RUNNING"
