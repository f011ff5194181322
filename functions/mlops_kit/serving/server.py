"""The local endpoint: a supervisor process and N single-threaded worker processes.

The supervisor owns the listening socket. It accepts each connection and hands the socket to
the worker with the fewest open connections, over a Unix socket (SCM_RIGHTS). Compared with
workers sharing the port through SO_REUSEPORT, whose kernel hash can put 6 of 8 keep-alive
connections on one worker, this keeps the load even, and a restarting worker cannot drop
connections queued in its own accept backlog. The cost is paid per connection, not per request.

Each worker loads every variant of the endpoint (warm, XGBoost nthread=1), then serves its
connections on an asyncio loop (HTTP/1.1 on llhttp in `http.py`, the answers in
`wire.py`) and follows the state file through its
`ScoringRouter`. A worker that dies is restarted (with back-off if it keeps dying).

Shutdown (SIGTERM or SIGINT to the supervisor): the supervisor stops accepting and signals
the workers; each worker answers the requests it has received, closes its connections, fsyncs
and closes its capture files, and exits; the supervisor waits `drain_seconds` for them before
killing what is left.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from mlops_kit.serving.capture import (DEFAULT_MAX_BYTES, DEFAULT_MAX_SECONDS,
                                       DEFAULT_SYNC_SECONDS)
from mlops_kit.serving.http import DEFAULT_MAX_BODY_BYTES

log = logging.getLogger("mlops_kit.serving")

MSG_READY = b"R"
MSG_CLOSED = b"C"
MSG_CONNECTION = b"F"


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ServeConfig:
    home: str
    endpoint: str
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = field(default_factory=default_workers)
    capture_percent: float = 100.0
    capture_max_bytes: int = DEFAULT_MAX_BYTES
    capture_max_seconds: float = DEFAULT_MAX_SECONDS
    capture_sync_seconds: float = DEFAULT_SYNC_SECONDS
    drain_seconds: float = 10.0
    keepalive_seconds: float = 60.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    startup_seconds: float = 120.0

    def __post_init__(self):
        if self.workers < 1:
            raise ValueError("--workers must be at least 1")
        if not 0 <= self.capture_percent <= 100:
            raise ValueError("--capture-percent must be between 0 and 100")
        if not 0 <= self.port <= 65535:
            raise ValueError("--port must be between 0 and 65535")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ServeConfig":
        return cls(**json.loads(text))


class _Worker:
    def __init__(self, index: int):
        self.index = index
        self.process: subprocess.Popen | None = None
        self.channel: socket.socket | None = None
        self.ready = False
        self.connections = 0
        self.started_at = 0.0
        self.failures = 0
        self.restart_at = 0.0

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Supervisor:
    """Runs the endpoint until SIGTERM/SIGINT (or `stop()`); `run()` returns an exit code."""

    def __init__(self, config: ServeConfig, *, announce: Callable[[str], None] | None = None):
        self.config = config
        self.announce = announce or (lambda line: print(line, flush=True))
        self.port: int | None = None
        self._workers = [_Worker(i) for i in range(config.workers)]
        self._selector = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._stopping = False
        self._next = 0
        self._wake_r, self._wake_w = socket.socketpair()

    # -- lifecycle -----------------------------------------------------------------------------
    def run(self) -> int:
        previous = self._install_signals()
        try:
            self._listen()
            for worker in self._workers:
                self._spawn(worker)
            if not self._wait_ready():
                self._shutdown()
                return 1
            host = self.config.host
            self.announce(f"serving endpoint '{self.config.endpoint}' on http://{host}:{self.port}"
                          f" ({len(self._workers)} workers, capture "
                          f"{self.config.capture_percent:g}%)")
            self._loop()
            self._shutdown()
            return 0
        finally:
            self._restore_signals(previous)

    def stop(self) -> None:
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _install_signals(self):
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            previous_fd = signal.set_wakeup_fd(self._wake_w.fileno())
        except ValueError:  # not the main thread: the caller stops us with stop()
            return None
        handlers = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        return previous_fd, handlers

    def _restore_signals(self, previous) -> None:
        if previous is None:
            return
        previous_fd, handlers = previous
        signal.set_wakeup_fd(previous_fd)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum, _frame) -> None:
        if not self._stopping:
            log.info("received %s: draining", signal.Signals(signum).name)
        self._stopping = True

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET6 if ":" in self.config.host else socket.AF_INET,
                                 socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.config.host, self.config.port))
        listener.listen(1024)
        listener.setblocking(False)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._selector.register(listener, selectors.EVENT_READ, "accept")

    def _spawn(self, worker: _Worker) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        command = [sys.executable, "-m", "mlops_kit.serving.worker", self.config.to_json(),
                   str(worker.index), str(theirs.fileno())]
        worker.process = subprocess.Popen(command, pass_fds=(theirs.fileno(),),
                                          stdin=subprocess.DEVNULL)
        theirs.close()
        ours.setblocking(False)
        worker.channel = ours
        worker.ready = False
        worker.connections = 0
        worker.started_at = time.monotonic()
        self._selector.register(ours, selectors.EVENT_READ, worker)

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.config.startup_seconds
        while not all(w.ready for w in self._workers):
            if self._stopping:
                return False
            if time.monotonic() > deadline:
                log.error("workers not ready after %.0f s", self.config.startup_seconds)
                return False
            for key, _ in self._selector.select(timeout=0.2):
                if isinstance(key.data, _Worker):
                    self._read_channel(key.data)
                elif key.data == "wake":
                    self._drain_wake()
            for worker in self._workers:
                if not worker.alive and not worker.ready:
                    log.error("worker %d exited during start-up (code %s)", worker.index,
                              worker.process.returncode if worker.process else "?")
                    return False
        return True

    def _loop(self) -> None:
        while not self._stopping:
            for key, _ in self._selector.select(timeout=0.5):
                if key.data == "accept":
                    self._accept()
                elif key.data == "wake":
                    self._drain_wake()
                else:
                    self._read_channel(key.data)
            self._check_workers()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(256):
                pass
        except BlockingIOError:
            pass

    # -- connections ---------------------------------------------------------------------------
    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                connection, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: keep running, retry on the next event
                log.warning("accept failed: %s", exc)
                return
            try:
                self._dispatch(connection)
            finally:
                connection.close()  # the worker holds its own duplicate now

    def _dispatch(self, connection: socket.socket) -> None:
        """To the ready worker with the fewest connections; ties go round-robin."""
        ready = [w for w in self._workers if w.ready and w.channel is not None]
        count = len(ready)
        start = self._next
        for i in sorted(range(count), key=lambda i: (ready[i].connections, (i - start) % count)):
            worker = ready[i]
            try:
                socket.send_fds(worker.channel, [MSG_CONNECTION], [connection.fileno()])
            except OSError:
                continue
            worker.connections += 1
            self._next = (i + 1) % count
            return
        log.warning("no worker ready: connection closed")

    def _read_channel(self, worker: _Worker) -> None:
        channel = worker.channel
        if channel is None:
            return
        while True:
            try:
                message = channel.recv(4096)
            except BlockingIOError:
                return
            except OSError:
                message = b""
            if not message:  # the worker is gone
                self._selector.unregister(channel)
                channel.close()
                worker.channel = None
                worker.ready = False
                return
            for byte in message:
                if byte == MSG_READY[0]:
                    worker.ready = True
                elif byte == MSG_CLOSED[0]:
                    worker.connections = max(0, worker.connections - 1)

    def _check_workers(self) -> None:
        now = time.monotonic()
        for worker in self._workers:
            if worker.alive:
                continue
            if worker.restart_at == 0.0:
                code = worker.process.returncode if worker.process else None
                quick = now - worker.started_at < 10
                worker.failures = worker.failures + 1 if quick else 1
                delay = min(30.0, 0.5 * 2 ** (worker.failures - 1)) if quick else 0.0
                log.warning("worker %d exited (code %s); restarting in %.1f s", worker.index,
                            code, delay)
                worker.restart_at = now + delay
                if worker.channel is not None:
                    self._selector.unregister(worker.channel)
                    worker.channel.close()
                    worker.channel = None
                worker.ready = False
            if now >= worker.restart_at:
                worker.restart_at = 0.0
                self._spawn(worker)

    # -- shutdown ------------------------------------------------------------------------------
    def _shutdown(self) -> None:
        if self._listener is not None:
            # close() resets the connections the kernel has completed but we have not accepted
            # (their requests may already be sent): hand them to the workers, which answer them.
            self._accept()
            self._selector.unregister(self._listener)
            self._listener.close()
            self._listener = None
        for worker in self._workers:
            if worker.alive:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.config.drain_seconds + 5
        for worker in self._workers:
            if worker.process is None:
                continue
            try:
                worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker %d did not drain in time: killed", worker.index)
                worker.process.kill()
                worker.process.wait()
            if worker.channel is not None:
                try:
                    self._selector.unregister(worker.channel)
                except KeyError:
                    pass
                worker.channel.close()
                worker.channel = None
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def worker_pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.alive]


def serve(config: ServeConfig, *, announce: Callable[[str], None] | None = None) -> int:
    """Run the endpoint in the foreground until SIGTERM/SIGINT. Returns the exit code."""
    return Supervisor(config, announce=announce).run()


def configure_logging(level: int = logging.INFO) -> None:
    root = logging.getLogger("mlops_kit")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(level)

