"""The capture writer: sampling, rotation, fdatasync and failure accounting.

Each writer keeps one open file per variant (see `capture_file`), rotated by size, by age and
at each hour boundary. A record is written *before* the response is sent; the files are
fdatasync'ed every `sync_seconds` (by a helper thread in the endpoint's workers, off the
request path), at rotation and at close, which bounds what a machine crash can lose to the
last second.

Capture is an observer: it never fails a request. Any OSError opening, writing, rotating or
fdatasync'ing a file (full disk, read-only folder, permissions) drops that record and counts it
(`CaptureWriter.health()`: dropped records, the last cause and path, since when). The failure
is logged when it starts, then once per `log_seconds` while it lasts (never once per request),
and once when capture resumes. Writing is retried after `retry_seconds` on a new file, on the
next request or by the sync thread's probe (so /ping recovers without traffic). While it fails,
the writer keeps its health file (see `capture_health`); when that folder cannot be written
either, /ping and the log still say it.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from mlops_kit.core.timestamps import epoch_iso_seconds
from mlops_kit.serving.capture_file import CaptureFile, capture_file_path, capture_root
from mlops_kit.serving.capture_health import (CaptureHealth, capture_health_dir,
                                              failure_reason, write_health_file)
from mlops_kit.serving.capture_record import capture_line, new_event_id

# The facade's name, so that logging configured for `mlops_kit.serving.capture` still applies.
log = logging.getLogger("mlops_kit.serving.capture")

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_SECONDS = 300.0
DEFAULT_SYNC_SECONDS = 1.0
DEFAULT_RETRY_SECONDS = 1.0
"""After a failed write, records are dropped without touching the disk for this long; then
the next record (or the sync thread's probe) tries a new file."""
DEFAULT_LOG_SECONDS = 60.0
"""A failure that lasts is logged once per this many seconds, with the records dropped."""


class CaptureWriter:
    """Appends sampled capture records for one endpoint, one open file per variant.

    `write` is meant for one thread (a worker's event loop). `start_background_sync()` moves
    the periodic fdatasync, the closing of rotated files, the health file and the recovery
    probe to a helper thread so that the request path never waits for the disk.

    `write` never raises OSError: a record that cannot be written is dropped and counted
    (see the module docstring and `health()`).
    """

    def __init__(self, home: str | Path, endpoint_name: str, *, percent: float = 100.0,
                 writer_id: str = "", max_bytes: int = DEFAULT_MAX_BYTES,
                 max_seconds: float = DEFAULT_MAX_SECONDS,
                 sync_seconds: float = DEFAULT_SYNC_SECONDS, seed: int | None = None,
                 clock: Callable[[], float] = time.time,
                 retry_seconds: float = DEFAULT_RETRY_SECONDS,
                 log_seconds: float = DEFAULT_LOG_SECONDS,
                 health_dir: str | Path | None = "",
                 timer: Callable[[], float] = time.monotonic):
        """`health_dir`: where the health file goes ("" = `capture_health_dir(home, ...)`,
        None = none); `timer`: the monotonic clock of back-off and logging (tests)."""
        if not 0 <= percent <= 100:
            raise ValueError(f"capture percent must be between 0 and 100, got {percent}")
        self.root = capture_root(home) / endpoint_name
        self.endpoint_name = endpoint_name
        self.percent = float(percent)
        self.writer_id = writer_id or f"p{os.getpid()}"
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.sync_seconds = sync_seconds
        generator = random.Random(seed)
        self._draw = generator.random
        self._bits = random.Random(None if seed is None else seed + 1).getrandbits
        self._clock = clock
        self._files: dict[str, CaptureFile] = {}
        self._retired: list[CaptureFile] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None
        self._second = -1
        self._second_text = ""
        self._next_sync = 0.0
        self.records = 0
        self.closed_files: list[Path] = []
        self.retry_seconds = retry_seconds
        self.log_seconds = log_seconds
        self._timer = timer
        self.dropped = 0
        self._failing = False
        self._cause = ""
        self._cause_path = ""
        self._since: float | None = None
        self._dropped_in_failure = 0
        self._retry_at = 0.0
        self._next_log = 0.0
        self._last_line = 0
        self._health_dirty = False
        self._health_warned = False
        base = capture_health_dir(home, endpoint_name) if health_dir == "" else health_dir
        self.health_path = Path(base) / f"{self.writer_id}.json" if base is not None else None

    def sampled(self) -> bool:
        """Whether to capture the next request (the sampling percentage)."""
        percent = self.percent
        return percent >= 100 or (percent > 0 and self._draw() * 100 < percent)

    def write(self, variant_name: str, input_body: bytes, input_type: str, output_body: bytes,
              output_type: str, inference_id: str | None = None) -> None:
        """Append one record; on any OSError the record is dropped and counted, never raised."""
        if self._failing and self._timer() < self._retry_at:
            self._drop()  # backing off: the disk is not touched
            return
        now = self._clock()
        second = int(now)
        if second != self._second:
            self._second, self._second_text = second, epoch_iso_seconds(second)
        line = capture_line(input_body, input_type, output_body, output_type,
                            inference_id=inference_id, event_id=new_event_id(self._bits),
                            inference_time=self._second_text)
        self._last_line = len(line)
        handle = self._files.get(variant_name)
        try:
            if (handle is None or handle.broken or now >= handle.deadline
                    or handle.size >= self.max_bytes):
                handle = None
                handle = self._rotate(variant_name, now)
            handle.append(line)
        except OSError as exc:
            self._failed(variant_name, exc, handle)
            return
        self.records += 1
        if self._failing:
            self._recovered("a record was written")

    def _rotate(self, variant_name: str, now: float) -> CaptureFile:
        path = capture_file_path(self.root, variant_name, self.writer_id, now)
        hour_end = (int(now) // 3600 + 1) * 3600
        handle = CaptureFile.create(path, min(now + self.max_seconds, hour_end))
        self._replace(variant_name, handle)
        return handle

    def _replace(self, variant_name: str, handle: CaptureFile | None) -> None:
        """Make `handle` the variant's open file (None: none); the old one is closed by the
        sync thread (or here, without one)."""
        with self._lock:
            old = self._files.pop(variant_name, None)
            if handle is not None:
                self._files[variant_name] = handle
            if old is not None:
                self._retired.append(old)
        if old is not None and self._syncer is None:
            self._close_retired()

    # -- failures ----------------------------------------------------------------------------
    def _failed(self, variant_name: str, exc: OSError, handle: CaptureFile | None) -> None:
        path = exc.filename or (handle.path if handle is not None else self.root)
        # The file is given up (closed by the sync thread): the retry opens a new one, and a
        # file an operator deleted to free space is released.
        self._replace(variant_name, None)
        self._drop(exc, str(path))

    def note_failure(self, exc: BaseException) -> None:
        """A failure outside `write` (the caller's guard): counted and logged the same way."""
        self._drop(exc, str(self.root))

    def _drop(self, exc: BaseException | None = None, path: str = "", records: int = 1) -> None:
        now = self._timer()
        with self._lock:
            self.dropped += records
            self._health_dirty = True
            started = not self._failing
            if exc is not None:
                self._cause, self._cause_path = failure_reason(exc), path
                self._retry_at = now + self.retry_seconds
            if started:
                self._failing = True
                self._since = time.time()
                self._dropped_in_failure = 0
            self._dropped_in_failure += records
            due = started or now >= self._next_log
            if due:
                self._next_log = now + self.log_seconds
            health = self._health_locked()
        if due:
            if started:
                log.warning("%s; scoring continues, capture retried every %g s",
                            health.describe(), self.retry_seconds)
            else:
                log.warning("%s (still failing, %d dropped in all)", health.describe(),
                            health.dropped)

    def _recovered(self, how: str) -> None:
        with self._lock:
            if not self._failing:
                return
            self._failing = False
            self._health_dirty = True
            health = self._health_locked()
        log.warning("data capture resumed (%s) after %s", how,
                    health.describe().removeprefix("data capture recovered from: "))

    def _health_locked(self) -> CaptureHealth:
        return CaptureHealth(self._failing, self.dropped, self.records, self._cause,
                             self._cause_path, self._since, self._dropped_in_failure)

    def health(self) -> CaptureHealth:
        with self._lock:
            return self._health_locked()

    def _probe(self) -> None:
        """While failing and past the back-off: can a file of a record's size be written in
        the capture folder? If so, capture is healthy again (the next record opens a file)."""
        if not self._failing or self._timer() < self._retry_at:
            return
        size = max(self._last_line, 1)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=self.root, prefix=f".probe-{self.writer_id}-")
            try:
                data = b"\n" * size
                while data:
                    data = data[os.write(fd, data):]
            finally:
                os.close(fd)
                os.unlink(name)
        except OSError as exc:
            with self._lock:
                self._cause, self._cause_path = failure_reason(exc), str(exc.filename or self.root)
                self._retry_at = self._timer() + self.retry_seconds
            return
        self._recovered("a probe write succeeded")

    def _publish_health(self) -> None:
        """The health file, once a failure has happened, rewritten when it changed."""
        if self.health_path is None:
            return
        with self._lock:
            if not self._health_dirty:
                return
            self._health_dirty = False
            health = self._health_locked()
        document = {"endpoint": self.endpoint_name, "writer": self.writer_id,
                    "pid": os.getpid(), "updated_at": epoch_iso_seconds(time.time()),
                    **health.to_dict()}
        try:
            write_health_file(self.health_path, document, temp_prefix=f".{self.writer_id}.")
        except OSError as exc:
            with self._lock:
                self._health_dirty = True  # tried again on the next sync
            if not self._health_warned:
                self._health_warned = True
                log.warning("cannot write the capture health file %s: %s (only /ping and this "
                            "log report capture failures)", self.health_path, failure_reason(exc))

    def _close_retired(self) -> None:
        with self._lock:
            retired, self._retired = self._retired, []
        for handle in retired:
            for exc, records in handle.close():
                self._drop(exc, str(handle.path), records)
            if handle.size:  # an empty file (no record could be written) is removed
                self.closed_files.append(handle.path)

    def sync(self) -> None:
        """fdatasync what was written since the last sync; close rotated files; keep the
        health file; while failing, probe whether writing works again. Never raises OSError."""
        with self._lock:
            dirty = [h for h in self._files.values() if h.dirty and not h.broken]
            for handle in dirty:
                handle.dirty = False
        for handle in dirty:
            pending, handle.pending = handle.pending, 0
            try:
                os.fdatasync(handle.fd)
            except OSError as exc:
                # Not closed here (the writing thread may be using it): it retires it.
                handle.broken = True
                self._drop(exc, str(handle.path), pending)
        self._close_retired()
        self._probe()
        self._publish_health()

    def maybe_sync(self) -> None:
        """Sync when `sync_seconds` have passed (callers without the background thread)."""
        now = time.monotonic()
        if now >= self._next_sync:
            self._next_sync = now + self.sync_seconds
            self.sync()

    def start_background_sync(self) -> None:
        if self._syncer is None and self.sync_seconds > 0:
            self._syncer = threading.Thread(target=self._sync_loop, name="capture-sync",
                                            daemon=True)
            self._syncer.start()

    def _sync_loop(self) -> None:
        while not self._stop.wait(self.sync_seconds):
            try:
                self.sync()
            except Exception:  # pragma: no cover - never let the helper thread die
                log.exception("capture sync failed")

    def open_files(self) -> list[Path]:
        return [h.path for h in self._files.values()]

    def close(self) -> None:
        """Stop the sync thread, then fdatasync and close every file."""
        if self._syncer is not None:
            self._stop.set()
            self._syncer.join()
            self._syncer = None
        with self._lock:
            self._retired.extend(self._files.values())
            self._files.clear()
        self._close_retired()
        with self._lock:
            self._health_dirty = self._health_dirty or bool(self._cause)  # the final counts
        self._publish_health()

    def __enter__(self) -> "CaptureWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

