"""A local pipeline run that stops at one point and waits there to be SIGKILLed.

    python _killable_run.py POINT DATA MARKER      (MLOPS_HOME etc. from the environment)

At POINT it writes MARKER and sleeps; tests/fault/test_killed_runs.py kills it. The run is the
real runner (`run_pipeline`, as `mlops pipeline run` calls it); only the stop is added:
  mlflow-migrations  inside MLflow's store creation: tables made, alembic migrations not run
  preprocess         inside preprocess, after the first split is written
  train              inside training, after round 5
  tracking           inside MLflow tracking: run created, metrics and model logged, not ended
  evaluate           inside evaluation, before the latency measurement
  register           gates passed, run folder in place, before the registry transaction
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

POINTS = ("mlflow-migrations", "preprocess", "train", "tracking", "evaluate", "register")


def park(marker: Path) -> None:
    marker.write_text(str(os.getpid()))
    while True:
        time.sleep(60)


def main(point: str, data: str, marker: str) -> None:
    if point not in POINTS:
        sys.exit(f"unknown point {point}; known: {', '.join(POINTS)}")
    marker_path = Path(marker)
    from mlops_kit.config import LocalSettings
    from mlops_kit.local import pipeline_runner
    from mlops_kit.registry.local import LocalRegistry
    from mlops_pipelines.steps import _io, evaluate

    class Reporter(pipeline_runner.SilentReporter):
        def step_started(self, step, total=None):
            if point == "register" and step == "register":
                park(marker_path)

        def step_progress(self, step, completed, total, note=""):
            if point == "train" and completed >= 5:
                park(marker_path)

    if point == "mlflow-migrations":
        import mlflow.store.db.utils as db_utils

        db_utils._upgrade_db = lambda engine: park(marker_path)
    elif point == "preprocess":
        write_table = _io.write_table
        written = []

        def write_then_park(frame, path):
            write_table(frame, path)
            written.append(path)
            if len(written) == 1:
                park(marker_path)

        _io.write_table = write_then_park
    elif point == "tracking":
        from mlflow import MlflowClient

        MlflowClient.set_terminated = lambda self, *args, **kwargs: park(marker_path)
    elif point == "evaluate":
        evaluate.measure_latency = lambda *args, **kwargs: park(marker_path)

    settings = LocalSettings.from_env()
    pipeline_runner.run_pipeline(settings, LocalRegistry(settings.home, settings.model_group),
                                 data=Path(data), overrides={"num_round": "60",
                                                                 "min_test_positives": "10"},
                                 reporter=Reporter())
    sys.exit(f"run finished without reaching {point}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
