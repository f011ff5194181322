"""Pipeline runs SIGKILLed at every phase leave a home the next run completes in (issue [K]).

Real runs (`run_pipeline` in their own processes, see _killable_run.py) stop at a point and are
SIGKILLed there: inside MLflow's store creation on a fresh home, then five at once inside
preprocess, training, MLflow tracking, evaluation and just before registration. A sixth run is
parked alive in training throughout. Then `mlops pipeline run` must exit 0 and register version
1, having swept every dead run's staging folder and none of the live one's; the MLflow run left
RUNNING is marked KILLED; the registry holds only the new version.
"""

from __future__ import annotations

import json
import subprocess

from mlops_kit.local.pipeline_runner import sweep_abandoned_runs
from mlops_kit.registry.local import LocalRegistry

from ._pipeline_procs import (GROUP, child_env, kill, leftovers, mlflow_runs, pipeline_command,
                              registry_versions, start_parked, wait_for_markers, warm_bytecode,
                              write_sample)

KILLED_AT = ("preprocess", "train", "tracking", "evaluate", "register")


def test_runs_killed_at_every_phase_leave_a_home_the_next_run_completes_in(tmp_path):
    warm_bytecode()
    home = tmp_path / "home"
    data = write_sample(tmp_path / "sample.csv")
    markers = {point: tmp_path / f"{point}.parked" for point in ("mlflow-migrations",
                                                                  *KILLED_AT, "alive")}

    # A fresh home's first run dies inside MLflow's migrations, holding the store lock.
    first = {"mlflow-migrations": start_parked(home, data, "mlflow-migrations",
                                               markers["mlflow-migrations"])}
    try:
        wait_for_markers(first, markers)
    finally:
        kill(first["mlflow-migrations"])
    assert not (home / "mlflow.db").exists(), "a half-migrated store was put in place"
    assert [p for p in leftovers(home) if p.startswith(".mlflow-")], \
        "the run was not killed inside the store's creation"

    # Five runs at once, each killed at its own phase, and one left alive in training.
    parked = {point: start_parked(home, data, point, markers[point]) for point in KILLED_AT}
    parked["alive"] = start_parked(home, data, "train", markers["alive"])
    try:
        wait_for_markers(parked, markers)
        for point in KILLED_AT:
            kill(parked[point])
        folders = [p for p in leftovers(home) if p.startswith(".staging-")
                   and not p.endswith(".lock")]
        # preprocess, train, tracking and evaluate die with a staging folder (and its lock
        # file), as the live run has one; register dies after its folder became runs/<id>/.
        assert len(folders) == 4 + 1, folders

        done = subprocess.run(pipeline_command(data), env=child_env(home), capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout)
        assert (result["status"], result["version"]) == ("registered", 1)
        assert registry_versions(home) == [1]  # the run killed before registering left none

        # Every dead run's staging folder is gone; the live run's folder and lock file are not.
        left = leftovers(home)
        assert len(left) == 2 and {p.removesuffix(".lock") for p in left} == {left[0]}, left
        # tracking's run, killed before it ended, is KILLED; evaluate's and register's had
        # ended (FINISHED), as has the new one; preprocess, train and the live run never
        # reached tracking.
        runs = mlflow_runs(home)
        assert sorted(r["status"] for r in runs.values()) == ["FINISHED"] * 3 + ["KILLED"], runs
        assert runs[training_run(home)] == {"status": "FINISHED",
                                            "pipeline_run": result["run_id"]}
    finally:
        for process in parked.values():
            kill(process)

    # Once the parked run is dead too, its folder goes as well.
    assert sweep_abandoned_runs(home / "runs")
    assert leftovers(home) == []


def training_run(home) -> str:
    return LocalRegistry(home, GROUP).get(1).training_run_id
