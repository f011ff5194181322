"""Fixtures for the serving tests: three model versions, endpoint homes, a real server process."""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlops_kit.clock import utc_now_iso
from mlops_kit.endpoint_state import EndpointState, ServedVariant, load_state, save_state

ENDPOINT = "fraud-scorer-test"
FIXTURES = Path(__file__).parent / "fixtures"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


@pytest.fixture(scope="session")
def model_versions(trained, tmp_path_factory):
    """Model dirs for versions 1-3: the trained booster cut at 10, 25 and all its rounds, so the
    three variants give different scores for the same row."""
    import xgboost as xgb

    from mlops_pipelines.steps import inference, train

    model_dir, _ = trained
    spec = inference.FeatureSpec.from_dict(json.loads((model_dir / inference.SPEC_FILE).read_text()))
    booster = xgb.Booster()
    booster.load_model(str(model_dir / inference.MODEL_FILE))
    root = tmp_path_factory.mktemp("versions")
    rounds = booster.num_boosted_rounds()
    dirs = {}
    for version, cut in ((1, min(10, rounds)), (2, min(25, rounds)), (3, rounds)):
        dirs[version] = root / f"v{version}"
        train.save_model(booster[:cut], spec, dirs[version])
    return dirs


@pytest.fixture(scope="session")
def sample_rows(prepared):
    """Test-split rows as CSV lines (in feature order) and as {feature: value} objects."""
    import pandas as pd

    from mlops_pipelines.steps.schema import FRAUD_SAMPLE_SCHEMA as S

    test = pd.read_parquet(prepared / "test" / "test.parquet").head(200)
    features = list(S.features)
    lines, objects = [], []
    for row in test[features].itertuples(index=False):
        values = ["" if pd.isna(v) else v for v in row]
        lines.append(",".join(str(v) for v in values))
        objects.append({f: (None if v == "" else (v.item() if hasattr(v, "item") else v))
                        for f, v in zip(features, values)})
    return lines, objects, test


def make_state(model_versions, weights: dict[int, float], generation: int = 1,
               endpoint: str = ENDPOINT) -> EndpointState:
    variants = tuple(ServedVariant(f"v{v}", v, str(model_versions[v]), float(w))
                     for v, w in sorted(weights.items(), reverse=True))
    return EndpointState(endpoint, "InService", variants, f"{endpoint}-config", utc_now_iso(), generation)


def write_state(home: Path, model_versions, weights: dict[int, float],
                endpoint: str = ENDPOINT) -> EndpointState:
    current = load_state(home, endpoint)
    state = make_state(model_versions, weights, (current.generation + 1) if current else 1,
                       endpoint)
    save_state(home, state)
    return state


@pytest.fixture()
def home(tmp_path, model_versions):
    """A $MLOPS_HOME whose endpoint serves v3 (weight 1) with v2 and v1 warm at weight 0."""
    write_state(tmp_path, model_versions, {3: 1.0, 2: 0.0, 1: 0.0})
    return tmp_path


# -- a real server process ----------------------------------------------------------------------
@dataclass
class RunningServer:
    process: subprocess.Popen
    port: int
    home: Path
    endpoint: str
    stderr_path: Path

    @property
    def path(self) -> str:
        return f"/endpoints/{self.endpoint}/invocations"

    def connection(self, timeout: float = 10.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: dict | None = None, timeout: float = 10.0):
        connection = self.connection(timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def invoke(self, body, content_type="text/csv", **headers):
        return self.request("POST", self.path, body, {"Content-Type": content_type, **headers})

    def wait_generation(self, generation: int, timeout: float = 15.0) -> None:
        """Until every worker serves `generation` (each /ping lands on some worker)."""
        deadline = time.monotonic() + timeout
        streak = 0
        while time.monotonic() < deadline:
            status, _, body = self.request("GET", "/ping", timeout=5)
            ok = status == 200 and json.loads(body)["generation"] >= generation
            streak = streak + 1 if ok else 0
            if streak >= 6:
                return
            time.sleep(0.02)
        raise AssertionError(f"server did not reach generation {generation} in {timeout} s")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)
            raise AssertionError("server did not stop within the timeout: killed")

    def logs(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def start_server(home: Path, *args: str, endpoint: str = ENDPOINT,
                 log_dir: Path | None = None) -> RunningServer:
    stderr_path = (log_dir or home) / f"server-{time.monotonic_ns()}.log"
    env = {**os.environ, "MLOPS_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "mlops_kit.cli.serving", "serve", "--port", "0",
               "--endpoint", endpoint, "--workers", "2", *args]
    stderr = open(stderr_path, "wb")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, env=env,
                               stdin=subprocess.DEVNULL)
    stderr.close()
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout],
                     daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2).decode()
        except queue.Empty:
            if process.poll() is not None:
                break
            continue
        found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if found:
            return RunningServer(process, int(found.group(1)), home, endpoint, stderr_path)
    process.kill()
    process.wait(timeout=STOP_TIMEOUT)
    raise AssertionError(f"server did not start: {stderr_path.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def server_home(tmp_path_factory, model_versions):
    home = tmp_path_factory.mktemp("server-home")
    write_state(home, model_versions, {3: 1.0, 2: 0.0, 1: 0.0})
    return home


@pytest.fixture(scope="module")
def server(server_home):
    """One server (2 workers, capture 100%) for a test module; stopped with SIGTERM at the end."""
    running = start_server(server_home)
    try:
        yield running
    finally:
        running.stop()


class Transport:
    """An asyncio transport that keeps what the protocol writes, for in-process wire tests."""

    def __init__(self):
        self.data = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.closed = True


def worker_pids(supervisor: int) -> list[int]:
    """The live worker processes of a server's supervisor."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            state, parent = stat.rsplit(")", 1)[1].split()[:2]
            if int(parent) == supervisor and state != "Z":  # a killed worker not reaped yet
                found.append(int(entry.name))
    return found


def wait_for_workers(running: RunningServer, count: int,
                     timeout: float = START_TIMEOUT) -> list[int]:
    """The server's live workers, once `count` of them run and it answers /ping.

    The server prints its address when it listens, which can be before every worker has
    started (on a loaded machine, seconds before).
    """
    deadline = time.monotonic() + timeout
    while True:
        workers = worker_pids(running.process.pid)
        if len(workers) == count and running.request("GET", "/ping", timeout=5)[0] == 200:
            return workers
        assert time.monotonic() < deadline, (
            f"{len(workers)} of {count} workers after {timeout:.0f} s: {running.logs()}")
        time.sleep(0.05)


@contextmanager
def client_pool(client: Callable[[int], None], count: int,
                stop: threading.Event) -> Iterator[list[Future]]:
    """`client(n)` for n in range(count) on threads, with `stop` set on the way out.

    Setting `stop` before the pool waits for its clients matters: a failed assertion in the
    block would otherwise leave the pool waiting forever on clients that never stop.
    """
    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(client, n) for n in range(count)]
        try:
            yield futures
        finally:
            stop.set()
