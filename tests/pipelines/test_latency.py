"""The latency gate's measure (pipelines/steps/evaluate.py `measure_latency`): CPU time of the
serving path per request, so it follows the work a model does, not the load on the machine
that evaluates it (issue [K])."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from mlops_kit.core.gates import GATES_BY_NAME
from mlops_pipelines.steps import _io, evaluate
from mlops_pipelines.steps.inference import model_fn, predict_fn

LATENCY_GATE = GATES_BY_NAME["max_p99_latency_ms"]
BURN = "while True: pass"


@pytest.fixture(scope="module")
def model(trained):
    return model_fn(str(trained[0]))


@pytest.fixture(scope="module")
def test_rows(prepared):
    return _io.read_table(_io.find_table(prepared / "test"))


class Burners:
    """`count` processes spinning on the CPU, as other pipelines on the same machine do."""

    def __init__(self, count: int):
        self.count = count

    def __enter__(self):
        self.processes = [subprocess.Popen([sys.executable, "-c", BURN])
                          for _ in range(self.count)]
        time.sleep(0.3)  # running, and competing, before the measurement starts
        return self

    def __exit__(self, *exc_info):
        for process in self.processes:
            process.kill()
            process.wait()


def test_the_document_keeps_the_gated_keys_and_adds_the_wall_clock(model, test_rows):
    latency = evaluate.measure_latency(model, test_rows, samples=200, rounds=2)
    assert set(latency) == {"p50_ms", "p99_ms", "wall_p50_ms", "wall_p99_ms", "samples",
                            "rounds"}
    assert LATENCY_GATE.json_path == "latency.p99_ms"
    assert (latency["samples"], latency["rounds"]) == (200, 2)
    assert 0 < latency["p50_ms"] <= latency["p99_ms"]
    assert 0 < latency["wall_p50_ms"] <= latency["wall_p99_ms"]


def test_time_spent_waiting_is_not_counted(model, test_rows, monkeypatch):
    """A request that waits 20 ms (for the CPU, a lock, I/O) costs its CPU time, not 20 ms."""
    def waiting_predict(data, loaded):
        time.sleep(0.020)
        return predict_fn(data, loaded)

    monkeypatch.setattr(evaluate, "predict_fn", waiting_predict)
    latency = evaluate.measure_latency(model, test_rows, samples=50, warmup=2, rounds=1)
    assert latency["wall_p50_ms"] >= 20
    assert latency["p99_ms"] < 10, latency


def test_other_processes_on_the_cores_barely_move_it(model, test_rows):
    """Two CPU burners on a 2-core machine: the wall-clock p99 follows them, the gated p99
    stays within a small factor of the quiet figure (measured ~1.0-2x; bound 4x)."""
    quiet = evaluate.measure_latency(model, test_rows)
    with Burners(2):
        loaded = evaluate.measure_latency(model, test_rows)
    print(f"\nquiet  {quiet}\nloaded {loaded}")
    assert loaded["p99_ms"] <= 4 * quiet["p99_ms"], (quiet, loaded)
    assert loaded["p50_ms"] <= 4 * quiet["p50_ms"], (quiet, loaded)


def test_a_model_doing_ten_times_the_work_fails_a_tight_gate_even_under_load(
        model, test_rows, monkeypatch):
    """The gate still catches a slower model: ten predictions per request (ten times the
    booster's work) against the real one, both measured while a burner competes."""
    with Burners(1):
        normal = evaluate.measure_latency(model, test_rows, samples=500)

        def tenfold_predict(data, loaded):
            for _ in range(9):
                predict_fn(data, loaded)
            return predict_fn(data, loaded)

        monkeypatch.setattr(evaluate, "predict_fn", tenfold_predict)
        slow = evaluate.measure_latency(model, test_rows, samples=500)
    print(f"\nnormal {normal}\nslow   {slow}")
    assert slow["p50_ms"] >= 3 * normal["p50_ms"], (normal, slow)
    tight = 2 * normal["p99_ms"]
    assert LATENCY_GATE.passes(normal["p99_ms"], tight)
    assert not LATENCY_GATE.passes(slow["p99_ms"], tight), (normal, slow, tight)
