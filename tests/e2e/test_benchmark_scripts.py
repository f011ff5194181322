"""The benchmarks run on demand (`make bench`), not in CI; these runs at tiny sizes keep the
cheap ones from rotting: each must exit 0 and write its figures as JSON with the machine block.
(Serving needs wrk, pipeline and synth take minutes, the peers need .venv-bench: not run here.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def run_benchmark(script: str, *args: str, out: Path) -> dict:
    completed = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args,
                                "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                               timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    document = json.loads(out.read_text())
    assert document["machine"]["cpu_count"] >= 1 and document["command"]
    return document["results"]


def test_drift_benchmark_times_the_kit_and_matches_scipy(tmp_path):
    results = run_benchmark("drift/bench_drift.py", "--rows", "5000", "--reference", "2000",
                            "--features", "4", "--repeat", "1", out=tmp_path / "drift.json")
    assert results["kit_best_seconds"] > 0 and results["ks_max_abs_difference"] <= 1e-12


def test_rollback_benchmark_shifts_weights_through_the_lambda_handler(tmp_path):
    results = run_benchmark("rollback/bench_rollback.py", "--skip-local", "--repeat", "2",
                            "--warmup", "1", out=tmp_path / "rollback.json")["aws_moto"]
    assert len(results["samples_s"]["weights_changed"]) == 2
    assert "UpdateEndpointWeightsAndCapacities" in results["first_invocation_s"]["api_calls"]


def test_cold_import_benchmark_checks_what_a_lambda_imports(tmp_path):
    results = run_benchmark("lambda_cold/bench_cold_import.py", "--repeat", "1",
                            "--bytecode", "pyc", "--only", "probe",
                            out=tmp_path / "cold.json")
    assert [f["function"] for f in results["functions"]] == ["probe"]
    assert results["problems"] == []
