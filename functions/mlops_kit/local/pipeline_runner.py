"""The pipeline on one machine: the same step scripts as SageMaker, in one process, with the
container paths remapped under $MLOPS_HOME/runs/<run id>/.

Any number of runs may share a home at once, and any of them may die at any point (SIGKILL
included) without blocking the next:
- a run builds `runs/.staging-<id>/` while it holds an flock on `runs/.staging-<id>.lock` (taken
  before the folder exists, dropped by the kernel however the process ends); each run first
  sweeps the staging folders whose lock nobody holds, and marks their MLflow runs KILLED;
- MLflow's SQLite store is created once per home, under `$MLOPS_HOME/.mlflow.lock`, in a
  temporary file renamed into place when migrated, so parallel first runs never race alembic
  and a run killed mid-migration leaves no half-made store;
- registration is one SQLite transaction (`registry/local.py`).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import secrets
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol, Sequence

from mlops_kit.config import LocalSettings
from mlops_kit.core.gates import GATES, GateVerdict, evaluate_gates
from mlops_kit.local import lineage
from mlops_kit.registry.base import ModelRegistry, ModelVersion, RegistrationRequest
from mlops_kit.tracking import run_log
from mlops_pipelines import parameters
from mlops_pipelines.steps import evaluate, preprocess, train
from mlops_pipelines.steps._io import BadInputError, write_table
from mlops_pipelines.steps.schema import FRAUD_SAMPLE_SCHEMA, DatasetSchema

SAMPLE_ROWS = 100_000
STEPS = ("preprocess", "train", "evaluate", "gate", "register")
STAGING_PREFIX = ".staging-"
LOCK_SUFFIX = ".lock"
CLAIM_PREFIX = ".staging-claim-"
RUN_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")
UNLOCKED_STAGING_MAX_AGE_S = 3600.0
"""A staging folder without a lock file was left by a version of the kit before the lock; one
untouched for this long belongs to no live run and is swept too."""
TRACKING_LOCK_TIMEOUT_S = 600.0


class Reporter(Protocol):
    def step_started(self, step: str, total: int | None = None) -> None: ...
    def step_progress(self, step: str, completed: int, total: int, note: str = "") -> None: ...
    def step_finished(self, step: str, seconds: float, note: str = "") -> None: ...


class SilentReporter:
    def step_started(self, step: str, total: int | None = None) -> None:
        pass

    def step_progress(self, step: str, completed: int, total: int, note: str = "") -> None:
        pass

    def step_finished(self, step: str, seconds: float, note: str = "") -> None:
        pass


@dataclass
class PipelineRunResult:
    run_id: str
    run_dir: Path
    parameters: dict[str, Any]
    evaluation: dict[str, Any]
    verdicts: list[GateVerdict]
    version: ModelVersion | None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "run_dir": str(self.run_dir),
            "status": "registered" if self.version else "gates_failed",
            "version": self.version.version if self.version else None,
            "parameters": self.parameters,
            "metrics": self.evaluation["metrics"], "latency": self.evaluation["latency"],
            "gates": [v.to_dict() for v in self.verdicts],
            "timings_seconds": self.timings,
        }


def ensure_sample_data(settings: LocalSettings, rows: int = SAMPLE_ROWS, seed: int = 42) -> Path:
    """The default input: generated once, then reused (deterministic, so reuse is exact)."""
    from mlops_kit.data.synthetic import generate

    path = settings.data_dir / f"fraud-sample-{rows}-seed{seed}.parquet"
    if not path.exists():
        write_table(generate(rows, seed=seed), path)
    return path


def run_pipeline(settings: LocalSettings, registry: ModelRegistry, *,
                 data: Path | None = None, overrides: Mapping[str, str] | None = None,
                 schema_path: Path | None = None, reporter: Reporter | None = None
                 ) -> PipelineRunResult:
    """Run every step; register only when every gate passes. BadInputError leaves nothing."""
    reporter = reporter or SilentReporter()
    try:
        params = parameters.resolve(dict(overrides or {}))
    except ValueError as exc:
        raise BadInputError(str(exc)) from None
    try:
        schema = DatasetSchema.load(schema_path) if schema_path else FRAUD_SAMPLE_SCHEMA
    except ValueError as exc:
        raise BadInputError(f"bad schema: {exc}") from None
    schema = schema.with_target(str(params["target"]))
    data = Path(data) if data else ensure_sample_data(settings)
    data = data.absolute()

    abandoned = sweep_abandoned_runs(settings.runs_dir)
    timings: dict[str, float] = {}
    with StagingClaim(settings.runs_dir) as claim:
        run_id, staging = claim.run_id, claim.folder
        final = settings.runs_dir / run_id
        try:
            manifest = _step(reporter, timings, "preprocess", lambda: preprocess.run(
                data, staging / "preprocess", schema=schema,
                validation_fraction=float(params["validation_fraction"]),
                test_fraction=float(params["test_fraction"]), seed=int(params["seed"]),
                bins=int(params["baseline_bins"])))

            hyperparameters = {name: params[name] for name in parameters.TRAINING_HYPERPARAMETERS}
            code_version = lineage.code_version()
            reporter.step_started("train", int(params["num_round"]))
            started = time.perf_counter()
            _quiet_mlflow()
            prepare_tracking(settings, abandoned_runs=abandoned)
            training = train.run(
                staging / "preprocess" / "train", staging / "preprocess" / "validation",
                staging / "model", staging / "train-output", hyperparameters,
                tracking_uri=settings.mlflow_uri, experiment=settings.model_group,
                artifact_root=settings.mlflow_artifact_root,
                run_tags={"mlops.pipeline_run": run_id, "mlops.code_version": code_version,
                          "mlops.data_sha256": manifest["data"]["sha256"]},
                on_round=lambda done, total, aupr: reporter.step_progress(
                    "train", done, total, f"validation AUPR {aupr:.4f}"))
            timings["train"] = time.perf_counter() - started
            reporter.step_finished("train", timings["train"],
                                   f"best round {training['best_round']}")

            thresholds = {gate.name: float(params[gate.name]) for gate in GATES}
            champion = registry.champion()
            evaluation = _step(reporter, timings, "evaluate", lambda: evaluate.run(
                staging / "model", staging / "preprocess" / "test",
                staging / "preprocess" / "train", staging / "evaluation", thresholds=thresholds,
                champion_location=champion.model_uri if champion else ""))
            verdicts = _step(reporter, timings, "gate",
                             lambda: evaluate_gates(evaluation, thresholds))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        # The run directory appears whole: a crash above leaves only a .staging-* folder, which
        # a later run sweeps once this process is gone (SIGKILL skips the except clause).
        staging.rename(final)

    result = PipelineRunResult(run_id, final, params, evaluation, verdicts, None, timings)
    # Best-effort views for the scientist (a warning, never a lost registration).
    run_log.record_evaluation(settings.mlflow_uri, training["run_id"], evaluation, verdicts,
                              final / "evaluation", manifest=manifest, code_version=code_version)
    if not result.passed:
        reporter.step_finished("register", 0.0, "skipped: a gate failed")
        return result

    request = RegistrationRequest(
        model_group=registry.model_group, model_artifact=str(final / "model"),
        training_run_id=training["run_id"], metrics=evaluation["metrics"],
        # The gated figures and their wall-clock companions; counts stay in evaluation.json.
        latency={k: v for k, v in evaluation["latency"].items() if k.endswith("_ms")},
        gates=[v.to_dict() for v in verdicts],
        lineage={
            "pipeline_run": run_id,
            "data": {"uri": data.as_uri(), "sha256": manifest["data"]["sha256"],
                     "rows": manifest["data"]["rows"], "splits": manifest["splits"]},
            "code": {"version": code_version, "step_scripts": lineage.step_script_digests()},
            "parameters": params,
            "libraries": lineage.library_versions(),
            "container_image": lineage.container_image(),
            "model_sha256": training["model_sha256"],
            "drift_baseline": str(final / "preprocess" / "baseline" / "baseline.json"),
            "evaluation": str(final / "evaluation" / "evaluation.json"),
            "evaluation_report": str(final / "evaluation" / "report.html"),
            "champion_compared": evaluation["champion"].get("location", ""),
        },
        owner=settings.owner, use_case=settings.use_case,
        description=f"pipeline run {run_id}")
    result.version = _step(reporter, timings, "register", lambda: registry.register(request))
    run_log.record_registration(settings, registry, training["run_id"], result.version)
    return result


def _step(reporter: Reporter, timings: dict[str, float], name: str, action):
    reporter.step_started(name)
    started = time.perf_counter()
    outcome = action()
    timings[name] = time.perf_counter() - started
    reporter.step_finished(name, timings[name])
    return outcome


def _quiet_mlflow() -> None:
    # MLflow logs its database migrations at INFO on first use; they are not the user's concern.
    # It reads the level from the environment when it is first imported.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


# -- staging folders: owned by a lock, swept when the owner is gone ------------------------------


class StagingClaim:
    """`runs/.staging-<id>/` for as long as this run lives.

    The run holds an exclusive flock on `runs/.staging-<id>.lock`, created and locked before the
    folder exists and removed only after the folder is renamed or removed: a folder whose lock
    file nobody holds has no live owner. The kernel drops the lock when the process ends, however
    it ends, so a SIGKILLed run is recognisable without trusting a pid (pids are reused).
    """

    def __init__(self, runs_dir: Path):
        self.runs_dir = runs_dir
        self.run_id = ""
        self._fd: int | None = None

    @property
    def folder(self) -> Path:
        return self.runs_dir / f"{STAGING_PREFIX}{self.run_id}"

    @property
    def lock_file(self) -> Path:
        return self.runs_dir / f"{STAGING_PREFIX}{self.run_id}{LOCK_SUFFIX}"

    def __enter__(self) -> "StagingClaim":
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        # Locked under a private name first, then linked to the name sweepers look at: no
        # sweeper ever sees the lock file unlocked while its run is alive.
        fd, claim = tempfile.mkstemp(prefix=CLAIM_PREFIX, dir=self.runs_dir)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            while True:
                self.run_id = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
                try:
                    os.link(claim, self.lock_file)
                    break
                except FileExistsError:  # the same second and the same 24 random bits
                    continue
            self.folder.mkdir()
        except BaseException:
            if self.run_id:
                self.lock_file.unlink(missing_ok=True)
            os.close(fd)
            raise
        finally:
            os.unlink(claim)
        self._fd = fd
        return self

    def __exit__(self, *exc_info) -> None:
        # The folder is renamed or removed by now; the lock file goes first, then the lock.
        self.lock_file.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None


def sweep_abandoned_runs(runs_dir: Path, *, now: float | None = None) -> list[str]:
    """Remove the staging folders (and lock files) of runs that are gone; returns their run ids.

    Gone: nobody holds the folder's lock file (its process ended, SIGKILL included), or there
    is no lock file and nothing in the folder changed for UNLOCKED_STAGING_MAX_AGE_S (left by a
    kit version before the lock). A live run's folder is never touched: its lock is held.
    Only names of the runner's own shape are considered.
    """
    if not runs_dir.is_dir():
        return []
    now = time.time() if now is None else now
    swept: list[str] = []
    for entry in sorted(runs_dir.iterdir()):
        name = entry.name
        if name.startswith(CLAIM_PREFIX):  # a run that died within its first milliseconds
            fd = _lock_if_unowned(entry)
            if fd is not None:
                entry.unlink(missing_ok=True)
                os.close(fd)
            continue
        if not name.startswith(STAGING_PREFIX):
            continue
        run_id = name[len(STAGING_PREFIX):].removesuffix(LOCK_SUFFIX)
        if not RUN_ID.fullmatch(run_id):
            continue
        folder = runs_dir / f"{STAGING_PREFIX}{run_id}"
        lock_file = runs_dir / f"{STAGING_PREFIX}{run_id}{LOCK_SUFFIX}"
        if name.endswith(LOCK_SUFFIX) and folder.exists():
            continue  # handled with its folder
        fd = _lock_if_unowned(lock_file)
        if fd is not None:
            try:
                shutil.rmtree(folder, ignore_errors=True)
                lock_file.unlink(missing_ok=True)
            finally:
                os.close(fd)
        elif lock_file.exists() or not _untouched_for(folder, UNLOCKED_STAGING_MAX_AGE_S, now):
            continue  # a live run's (or a recent unlocked folder: maybe an old kit's live run)
        else:
            shutil.rmtree(folder, ignore_errors=True)
        if run_id not in swept:
            swept.append(run_id)
    return swept


def _lock_if_unowned(lock_file: Path) -> int | None:
    """A descriptor holding `lock_file`'s lock when nobody else holds it; None when its owner is
    alive or there is no such file."""
    try:
        fd = os.open(lock_file, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    return fd


def _untouched_for(folder: Path, seconds: float, now: float) -> bool:
    """True when nothing in `folder` (itself included) changed in the last `seconds`."""
    try:
        newest = folder.stat().st_mtime
        for root, dirs, files in os.walk(folder):
            for child in (*dirs, *files):
                newest = max(newest, os.lstat(os.path.join(root, child)).st_mtime)
    except FileNotFoundError:  # renamed or removed while we looked: not ours to sweep
        return False
    return now - newest >= seconds


# -- MLflow's store: created once per home, under a lock ---------------------------------------


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
