"""One endpoint worker process, started by the supervisor (`server.py`):

    python -m mlops_kit.serving.worker CONFIG_JSON INDEX CHANNEL_FD

It loads the endpoint's variants, tells the supervisor it is ready, then serves the connections
the supervisor passes it until SIGTERM/SIGINT (or until the supervisor goes away), and drains.
"""

from __future__ import annotations

import sys


def _lean_imports() -> None:
    """Hide pandas and scikit-learn from XGBoost in this process.

    `import xgboost` imports both when they are installed (for its scikit-learn wrappers and
    DataFrame inputs): ~5 of the ~6.5 s a worker took to start on the 2-core machine. A worker
    needs neither (numpy in, numpy out), and a restarted worker is back in ~1.5 s instead.
    """
    for name in ("pandas", "sklearn"):
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


_lean_imports()

import asyncio  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402

from mlops_kit.serving.capture import CaptureWriter  # noqa: E402
from mlops_kit.serving.router import ScoringRouter  # noqa: E402
from mlops_kit.serving.server import (MSG_CLOSED, MSG_READY, ServeConfig,  # noqa: E402
                                      configure_logging)
from mlops_kit.serving.wire import ConnectionRegistry, EndpointApp, HttpProtocol  # noqa: E402

log = logging.getLogger("mlops_kit.serving.worker")

TICK_SECONDS = 1.0
SWEEP_EVERY_TICKS = 5
DRAIN_IDLE_SECONDS = 1.0
"""On shutdown, a kept-alive connection is closed once it has been idle this long. Closing it
at once would reset the next request of a client that is sending continuously (often already
in the socket's buffer): it gets an answer with `Connection: close` instead."""


class WorkerProcess:
    def __init__(self, config: ServeConfig, index: int, channel: socket.socket):
        self.config = config
        self.index = index
        self.channel = channel
        self.router: ScoringRouter | None = None
        self.capture: CaptureWriter | None = None
        self.registry = ConnectionRegistry(self._connection_closed,
                                           keepalive_seconds=config.keepalive_seconds)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Future | None = None
        self._unsent_closes = 0
        self._adopting = 0
        self._ticks = 0
        self._factory = None

    async def run(self) -> int:
        loop = self._loop = asyncio.get_running_loop()
        self._stopped = loop.create_future()
        config = self.config
        self.router = ScoringRouter(config.home, config.endpoint, background=True)
        table = self.router.refresh()
        if table is None:
            log.warning("worker %d: %s; /ping answers 503 until it is deployed", self.index,
                        self.router.last_error or f"endpoint '{config.endpoint}' has no state "
                                                  f"at {self.router.path}")
        if config.capture_percent > 0:
            self.capture = CaptureWriter(
                config.home, config.endpoint, percent=config.capture_percent,
                writer_id=f"w{self.index}-{os.getpid()}", max_bytes=config.capture_max_bytes,
                max_seconds=config.capture_max_seconds, sync_seconds=config.capture_sync_seconds)
            self.capture.start_background_sync()
        app = EndpointApp(self.router, self.capture)
        registry, max_body = self.registry, config.max_body_bytes
        self._factory = lambda: HttpProtocol(app.handle, registry, max_body)
        self.channel.setblocking(False)
        loop.add_reader(self.channel.fileno(), self._on_channel)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.begin_drain)
        loop.call_later(TICK_SECONDS, self._tick)
        self.channel.send(MSG_READY)
        await self._stopped
        await self._drain()
        return 0

    # -- connections from the supervisor -------------------------------------------------------
    def _on_channel(self) -> None:
        while True:
            try:
                message, fds, _flags, _addr = socket.recv_fds(self.channel, 64, 16)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                message, fds = b"", []
            if not message and not fds:  # the supervisor is gone: drain and exit
                self._loop.remove_reader(self.channel.fileno())
                self.begin_drain()
                return
            for fd in fds:
                self._adopt(fd)

    def _adopt(self, fd: int) -> None:
        try:
            sock = socket.socket(fileno=fd)
            sock.setblocking(False)
        except OSError:
            os.close(fd)
            self._connection_closed()
            return
        self._adopting += 1
        self._loop.create_task(self._connect(sock))

    async def _connect(self, sock: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, sock)
        except OSError:
            sock.close()
            self._connection_closed()
        finally:
            self._adopting -= 1

    def _connection_closed(self) -> None:
        self._unsent_closes += 1
        self._flush_closes()

    def _flush_closes(self) -> None:
        while self._unsent_closes:
            try:
                self.channel.send(MSG_CLOSED * min(self._unsent_closes, 1024))
            except (BlockingIOError, InterruptedError):
                return  # retried on the next tick
            except OSError:
                self._unsent_closes = 0
                return
            self._unsent_closes -= min(self._unsent_closes, 1024)

    # -- housekeeping --------------------------------------------------------------------------
    def _tick(self) -> None:
        self._ticks += 1
        try:
            # Follow the state file without traffic too: new variants load before requests come.
            self.router.refresh()
            if self._ticks % SWEEP_EVERY_TICKS == 0:
                self.registry.sweep()
            self._flush_closes()
        finally:
            if not self._stopped.done():
                self._loop.call_later(TICK_SECONDS, self._tick)

    def begin_drain(self) -> None:
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    async def _drain(self) -> None:
        """Answer what has been received, close every connection, then flush the capture."""
        registry = self.registry
        registry.draining = True  # every answer from now on closes its connection
        self._on_channel()  # connections the supervisor passed before it stopped are served too
        deadline = time.monotonic() + self.config.drain_seconds
        while (registry.connections or self._adopting) and time.monotonic() < deadline:
            idle_before = time.monotonic() - DRAIN_IDLE_SECONDS
            for connection in list(registry.connections):
                if connection.last_active < idle_before:
                    connection.drain()  # closes it unless a request is partly received
            await asyncio.sleep(0.02)
        if registry.connections:
            log.warning("worker %d: %d connection(s) still open after %.0f s: closed",
                        self.index, len(registry.connections), self.config.drain_seconds)
            registry.abort_all()
            await asyncio.sleep(0)
        if self.capture is not None:
            self.capture.close()
        if self.router is not None:
            self.router.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    config = ServeConfig.from_json(args[0])
    index = int(args[1])
    channel = socket.socket(fileno=int(args[2]))
    configure_logging()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # until the loop installs its handlers
    return asyncio.run(WorkerProcess(config, index, channel).run())


if __name__ == "__main__":
    sys.exit(main())
