"""MLflow's store for local pipeline runs: created once per home, under a lock, whole.

The SQLite store is created under `$MLOPS_HOME/.mlflow.lock`, in a temporary file renamed into
place when migrated, so parallel first runs never race alembic and a run killed mid-migration
leaves no half-made store.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from mlops_kit.config import LocalSettings

TRACKING_LOCK_TIMEOUT_S = 600.0


def quiet_mlflow() -> None:
    # MLflow logs its database migrations at INFO on first use; they are not the user's concern.
    # It reads the level from the environment when it is first imported.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def _exclusive(lock_file: Path, timeout: float = TRACKING_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold an exclusive flock on `lock_file` (created if missing); released on exit or death."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{lock_file} held by another run for over {timeout:.0f} s")
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def prepare_tracking(settings: LocalSettings, *, abandoned_runs: Sequence[str] = ()) -> None:
    """MLflow's store and this model group's experiment, each created once per home.

    Under `settings.mlflow_lock`: a home without `mlflow.db` gets one built in a temporary file
    (MLflow's alembic migrations, ~2 s, the experiment) and renamed into place, so parallel
    first runs wait for one creator instead of racing it, and a creator killed mid-migration
    leaves only a temporary file, removed by the next creator. Later runs find the store and
    the experiment and go on. The MLflow runs of `abandoned_runs` (pipeline run ids whose process
    died) that still say RUNNING are marked KILLED.
    """
    from mlflow import MlflowClient

    with _exclusive(settings.mlflow_lock):
        if not settings.mlflow_db.exists():
            for leftover in settings.home.glob(".mlflow-*.db*"):  # a creator that died
                leftover.unlink(missing_ok=True)
            _create_store(settings)
        client = MlflowClient(tracking_uri=settings.mlflow_uri)
        experiment = client.get_experiment_by_name(settings.model_group)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(
            settings.model_group, artifact_location=settings.mlflow_artifact_root)
    for run_id in abandoned_runs:
        for run in client.search_runs(
                [experiment_id], filter_string=f"tags.`mlops.pipeline_run` = '{run_id}' "
                                               "and attributes.status = 'RUNNING'"):
            client.set_terminated(run.info.run_id, status="KILLED")


def _create_store(settings: LocalSettings) -> None:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    staged = settings.home / f".mlflow-{secrets.token_hex(4)}.db"
    uri = f"sqlite:///{staged.resolve()}"
    try:
        store = SqlAlchemyStore(uri, settings.mlflow_artifact_root)
        try:
            store.create_experiment(settings.model_group,
                                    artifact_location=settings.mlflow_artifact_root)
        finally:
            store.engine.dispose()
            getattr(SqlAlchemyStore, "_engine_map", {}).pop(uri, None)
        os.replace(staged, settings.mlflow_db)
    except BaseException:
        for leftover in settings.home.glob(f"{staged.name}*"):
            leftover.unlink(missing_ok=True)
        raise
