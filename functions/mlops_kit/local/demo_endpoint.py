"""The demo's side of the local endpoint: the `mlops serve` process it starts, a client of its
SageMaker runtime contract, and the live traffic the demo sends through it."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time

from mlops_kit.config import LocalSettings
from mlops_kit.local.demo_records import Timeline, TrafficLog

TRAFFIC_CLIENTS = 2
"""Clients sending live traffic at once, each on every other row."""

START_TIMEOUT_S = 90
STOP_TIMEOUT_S = 15


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EndpointClient:
    """A keep-alive HTTP client of the local endpoint's SageMaker runtime contract."""

    def __init__(self, port: int, endpoint: str):
        self.port, self.endpoint = port, endpoint
        self.local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        if getattr(self.local, "connection", None) is None:
            self.local.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        return self.local.connection

    def invoke(self, body: str, *, variant: str | None = None,
               inference_id: str | None = None) -> tuple[int, str, str]:
        headers = {"Content-Type": "text/csv", "Accept": "text/csv"}
        if variant:
            headers["X-Amzn-SageMaker-Target-Variant"] = variant
        if inference_id:
            headers["X-Amzn-SageMaker-Inference-Id"] = inference_id
        for attempt in (1, 2):
            connection = self._connection()
            try:
                connection.request("POST", f"/endpoints/{self.endpoint}/invocations",
                                   body=body.encode(), headers=headers)
                response = connection.getresponse()
                text = response.read().decode()
                return (response.status, text,
                        response.getheader("X-Amzn-Invoked-Production-Variant", ""))
            except (ConnectionError, http.client.HTTPException, OSError):
                connection.close()
                self.local.connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def ping(self) -> bool:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            connection.request("GET", "/ping")
            ok = connection.getresponse().status == 200
            connection.close()
            return ok
        except OSError:
            return False


def start_endpoint(settings: LocalSettings) -> tuple[subprocess.Popen, EndpointClient]:
    """`mlops serve` on a free port over the demo's home, capturing every request; returned once
    it answers its ping (its output goes to endpoint.log in the home)."""
    port = free_port()
    env = dict(os.environ, MLOPS_HOME=str(settings.home), MLOPS_ENDPOINT=settings.endpoint_name)
    log = open(settings.home / "endpoint.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlops_kit.cli", "serve", "--port", str(port),
         "--workers", "1", "--capture-percent", "100"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    client = EndpointClient(port, settings.endpoint_name)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not client.ping():
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the local endpoint did not start; see "
                               f"{settings.home / 'endpoint.log'}")
        time.sleep(0.2)
    return server, client


def stop_endpoint(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        server.kill()


class LiveTraffic:
    """TRAFFIC_CLIENTS threads sending `rows` to the endpoint from entry to exit, every request
    logged on the timeline; assigning `rows` mid-run changes what they send (the drift)."""

    def __init__(self, client: EndpointClient, rows: list[str], log: TrafficLog,
                 timeline: Timeline):
        self.client, self.rows, self.log, self.timeline = client, rows, log, timeline
        self._stop = threading.Event()
        self._senders = [threading.Thread(target=self._send, args=(worker,), daemon=True)
                         for worker in range(TRAFFIC_CLIENTS)]

    def __enter__(self) -> "LiveTraffic":
        for sender in self._senders:
            sender.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        for sender in self._senders:
            sender.join(timeout=5)

    def _send(self, worker: int) -> None:
        i = worker
        while not self._stop.is_set():
            rows = self.rows
            body = rows[i % len(rows)]
            i += TRAFFIC_CLIENTS
            try:
                status, _, variant = self.client.invoke(body, inference_id=f"demo-{worker}-{i}")
                self.log.add(time.perf_counter() - self.timeline.started, variant,
                             status == 200)
            except OSError:
                self.log.add(time.perf_counter() - self.timeline.started, "", False)
            time.sleep(0.004)
