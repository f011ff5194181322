"""Ten `mlops pipeline run` at once on a fresh home all register (issue [K]).

Before: four crashed racing MLflow's schema creation (alembic migrations on one SQLite file) and
six failed the p99-latency gate, which timed requests by the wall clock on a machine running ten
pipelines on two cores. Now the store is created once under a lock and the gate measures CPU
time per request, so all ten register: versions 1..10 exactly once each, one MLflow run each.
"""

from __future__ import annotations

import json
import subprocess
import time

from mlops_kit.registry.local import LocalRegistry

from ._pipeline_procs import (GROUP, NUM_ROUND, ROWS, child_env, kill, leftovers, mlflow_runs,
                              pipeline_command, warm_bytecode, write_sample)

RUNS = 10


def test_ten_parallel_runs_on_a_fresh_home_all_register(tmp_path):
    warm_bytecode()
    home = tmp_path / "home"
    data = write_sample(tmp_path / "sample.csv")
    env = child_env(home)

    started = time.perf_counter()
    processes = [subprocess.Popen(pipeline_command(data), env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(RUNS)]
    try:
        outputs = [p.communicate(timeout=600) for p in processes]
    finally:
        for process in processes:
            kill(process)
    elapsed = time.perf_counter() - started
    print(f"\n{RUNS} parallel runs ({ROWS} rows, num_round={NUM_ROUND}): {elapsed:.1f} s")

    failed = [f"exit {p.returncode}: {err[-1500:]}{out[-1500:]}"
              for p, (out, err) in zip(processes, outputs) if p.returncode != 0]
    assert not failed, f"{len(failed)} of {RUNS} runs failed:\n" + "\n".join(failed)
    results = [json.loads(out) for out, _ in outputs]
    gated = sorted(r["latency"]["p99_ms"] for r in results)
    wall = sorted(r["latency"]["wall_p99_ms"] for r in results)
    print(f"p99 CPU time {gated[0]:.2f}-{gated[-1]:.2f} ms (gated); "
          f"p99 wall clock {wall[0]:.2f}-{wall[-1]:.2f} ms (not gated)")
    assert sorted(r["version"] for r in results) == list(range(1, RUNS + 1))

    versions = LocalRegistry(home, GROUP).list_versions()
    assert sorted(v.version for v in versions) == list(range(1, RUNS + 1))
    assert len({v.lineage["pipeline_run"] for v in versions}) == RUNS

    # One MLflow run per pipeline run, each ended, each the one its version points at.
    runs = mlflow_runs(home)
    assert len(runs) == RUNS
    assert {r["status"] for r in runs.values()} == {"FINISHED"}
    assert {v.training_run_id: v.lineage["pipeline_run"] for v in versions} == {
        run: r["pipeline_run"] for run, r in runs.items()}
    assert leftovers(home) == []
