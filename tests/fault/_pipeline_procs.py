"""Real `mlops pipeline run` processes on one home, for the parallel-run and killed-run tests.

Each process pays its imports (pandas, XGBoost, scikit-learn, MLflow, pandera, matplotlib).
Where PYTHONDONTWRITEBYTECODE is set and site-packages holds no bytecode, as on the 2-core test
machine, that is ~10 s of compiling per process, more than the run itself. The processes
therefore write bytecode, outside the tree (PYTHONPYCACHEPREFIX, a per-user folder under the
system temporary directory), and `warm_bytecode` fills it once: what an ordinary install (pip
compiles on install) has anyway. The runs themselves are unchanged.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlops_kit.registry.local import LocalRegistry

GROUP = "fraud-detector"
ROWS = 4000
"""The smallest sample the default gates accept at NUM_ROUND: 1,000-3,000 rows fail min_aupr or
max_calibration_error for some seeds; 4,000 passes for seeds 7 and 11. Metrics are
deterministic, so every run on the same file passes the same way."""
SEED = 11
SMALL_SAMPLE_PARAMS = ("--param", "min_test_positives=10")
"""The small sample's test split holds ~18 positives, fewer than the default gate asks for
(its figures are noise, which is fine for these tests: they are about processes, not quality)."""
NUM_ROUND = 60
PYCACHE = Path(tempfile.gettempdir()) / f"mlops-kit-test-pycache-{os.getuid()}"
HEAVY_IMPORTS = ("mlops_kit.cli.app", "mlops_kit.local.pipeline_runner", "mlops_kit.registry.local",
                 "mlops_pipelines.steps.evaluate", "mlops_pipelines.steps.train",
                 "mlops_pipelines.steps.preprocess", "mlflow", "mlflow.tracking.client",
                 "mlflow.store.tracking.sqlalchemy_store", "alembic.command", "xgboost",
                 "sklearn.metrics", "matplotlib.pyplot", "pandera", "pyarrow.parquet")
HELPER_SCRIPT = Path(__file__).with_name("_killable_run.py")


def child_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(PYTHONPYCACHEPREFIX=str(PYCACHE), MLOPS_HOME=str(home), MLOPS_OWNER="tester",
               MLOPS_MODEL_GROUP=GROUP, MLFLOW_LOGGING_LEVEL="WARNING")
    return env


def warm_bytecode() -> None:
    """Compile the heavy imports into PYCACHE once (a no-op of ~2 s when already warm)."""
    PYCACHE.mkdir(parents=True, exist_ok=True)
    with open(PYCACHE / ".warm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        code = "import matplotlib; matplotlib.use('Agg')\n" + "".join(
            f"import {name}\n" for name in HEAVY_IMPORTS)
        subprocess.run([sys.executable, "-c", code], env=child_env(PYCACHE / "home"),
                       check=True, capture_output=True, timeout=600)


def write_sample(path: Path, rows: int = ROWS, seed: int = SEED) -> Path:
    from mlops_kit.data.synthetic import generate
    from mlops_pipelines.steps._io import write_table

    write_table(generate(rows, seed=seed), path)
    return path


def pipeline_command(data: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mlops_kit.cli", "pipeline", "run", "--data", str(data),
            "--param", f"num_round={NUM_ROUND}", *SMALL_SAMPLE_PARAMS, "--json", *extra]


def start_parked(home: Path, data: Path, point: str, marker: Path) -> subprocess.Popen:
    """A pipeline run that stops at `point` (see _killable_run.py) and waits to be killed."""
    return subprocess.Popen([sys.executable, str(HELPER_SCRIPT), point, str(data), str(marker)],
                            env=child_env(home), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def wait_for_markers(processes: dict[str, subprocess.Popen], markers: dict[str, Path],
                     timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    waiting = set(processes)
    while waiting:
        for point in sorted(waiting):
            if markers[point].exists():
                waiting.discard(point)
            elif processes[point].poll() is not None:
                raise AssertionError(f"run parked at {point} ended with "
                                     f"{processes[point].returncode} before reaching it:\n"
                                     f"{processes[point].stderr.read()[-3000:]}")
        if waiting and time.monotonic() > deadline:
            raise AssertionError(f"never reached: {sorted(waiting)}")
        time.sleep(0.05)


def kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    if process.stderr:
        process.stderr.close()


def registry_versions(home: Path) -> list[int]:
    return [v.version for v in LocalRegistry(home, GROUP).list_versions()]


def mlflow_runs(home: Path) -> dict[str, dict[str, str]]:
    """MLflow run id → {status, pipeline_run} of the group's experiment, read from the store's
    tables (keeps MLflow's ~6 s import out of the test process)."""
    with sqlite3.connect(home / "mlflow.db") as db:
        rows = db.execute(
            "SELECT r.run_uuid, r.status, t.value FROM runs r "
            "JOIN experiments e ON e.experiment_id = r.experiment_id "
            "LEFT JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'mlops.pipeline_run' "
            "WHERE e.name = ?", (GROUP,)).fetchall()
    return {run: {"status": status, "pipeline_run": pipeline_run or ""}
            for run, status, pipeline_run in rows}


def leftovers(home: Path) -> list[str]:
    """Staging folders, lock and claim files under runs/, and half-made MLflow stores."""
    runs = home / "runs"
    found = [p.name for p in runs.glob(".staging-*")] if runs.is_dir() else []
    return sorted(found + [p.name for p in home.glob(".mlflow-*.db*")])
