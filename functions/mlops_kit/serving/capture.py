"""Data capture in SageMaker's format, and a reader that survives torn lines.

Each captured request is one JSON line, as a SageMaker real-time endpoint writes it:

    {"captureData": {"endpointInput":  {"observedContentType": "text/csv", "mode": "INPUT",
                                        "data": "412.5,3,...", "encoding": "CSV"},
                     "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT",
                                        "data": "0.0312", "encoding": "CSV"}},
     "eventMetadata": {"eventId": "<uuid4>", "inferenceId": "<X-Amzn-SageMaker-Inference-Id>",
                       "inferenceTime": "2026-11-20T09:02:11Z"},
     "eventVersion": "0"}

`data` is the payload text for CSV and JSON content types and base64 for anything else
(`encoding` says which), `inferenceId` only appears when the caller sent one. Files sit under
`{home}/capture/{endpoint}/{variant}/yyyy/mm/dd/hh/` (SageMaker's key layout below its S3 prefix:
the variant is known from the path, not the line), one file per writer (per worker process,
so processes never interleave), rotated by size, by age and at each hour boundary.

Durability: a record is written with one `write(2)` on an O_APPEND descriptor *before* the
response is sent. Once the kernel has it, a worker crash or restart cannot lose or tear it; the
files are fdatasync'ed every `sync_seconds` (by a helper thread in the endpoint's workers, off
the request path), at rotation and at close, which bounds what a machine crash can lose to the
last second. A crash can at worst leave a torn last line, which `read_capture` counts and
skips.

Capture is an observer: it never fails a request. Any OSError opening, writing, rotating or
fdatasync'ing a file (full disk, read-only folder, permissions) drops that record and counts it
(`CaptureWriter.health()`: dropped records, the last cause and path, since when); a line cut
short by a full disk is truncated away. The failure is logged when it starts, then once per
`log_seconds` while it lasts (never once per request), and once when capture resumes. Writing
is retried after `retry_seconds` on a new file, on the next request or by the sync thread's
probe (so /ping recovers without traffic). While it fails, each writer keeps
`{home}/health/capture/{endpoint}/{writer}.json` (tempfile + os.replace, off the capture folder)
with its counts, which the local monitor turns into `CaptureRecordsDropped`; when that folder
cannot be written either, /ping and the log still say it.
"""

from __future__ import annotations

import base64
import errno
import json
import logging
import os
import random
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from mlops_kit.core.timestamps import epoch_iso_seconds
from mlops_kit.serving.kernel import CSV_TYPES, JSON_TYPES, media_type

log = logging.getLogger(__name__)

_quote = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
CAPTURE_DIR = "capture"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_SECONDS = 300.0
DEFAULT_SYNC_SECONDS = 1.0
DEFAULT_RETRY_SECONDS = 1.0
"""After a failed write, records are dropped without touching the disk for this long; then
the next record (or the sync thread's probe) tries a new file."""
DEFAULT_LOG_SECONDS = 60.0
"""A failure that lasts is logged once per this many seconds, with the records dropped."""
HEALTH_DIR = "health"


def capture_root(home: str | Path) -> Path:
    return Path(home) / CAPTURE_DIR


def capture_health_dir(home: str | Path, endpoint_name: str) -> Path:
    """Where each writer of `endpoint_name` keeps its health file: under $MLOPS_HOME/health,
    not in the capture folder (the one that is full or read-only when capture fails)."""
    return Path(home) / HEALTH_DIR / CAPTURE_DIR / endpoint_name


@dataclass(frozen=True)
class CaptureHealth:
    """One writer's capture health, as /ping and the health file report it."""
    failing: bool
    dropped: int
    """Records dropped since the writer started."""
    written: int
    cause: str = ""
    """The last failure's reason ("No space left on device"), empty if none yet."""
    path: str = ""
    since: float | None = None
    """Epoch second of the first drop of the current failure (or of the last one)."""
    dropped_in_failure: int = 0
    """Records dropped since `since`."""

    def describe(self) -> str:
        if not self.cause:
            return "data capture healthy"
        where = f" ({self.path})" if self.path else ""
        state = "failing" if self.failing else "recovered from"
        return (f"data capture {state}: {self.cause}{where}, {self.dropped_in_failure} "
                f"records dropped since {epoch_iso_seconds(self.since or 0)}")

    def to_dict(self) -> dict[str, Any]:
        return {"failing": self.failing, "dropped": self.dropped, "written": self.written,
                "cause": self.cause, "path": self.path,
                "since": epoch_iso_seconds(self.since) if self.since is not None else None,
                "dropped_in_failure": self.dropped_in_failure, "reason": self.describe()}


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _encode(payload: bytes, content_type: str) -> tuple[str, str]:
    """(data, encoding) as SageMaker records a payload of this content type."""
    kind = media_type(content_type)
    if kind in CSV_TYPES or kind in JSON_TYPES:
        try:
            return payload.decode("utf-8"), "CSV" if kind in CSV_TYPES else "JSON"
        except UnicodeDecodeError:
            pass
    return base64.b64encode(payload).decode("ascii"), "BASE64"


def capture_line(input_body: bytes, input_type: str, output_body: bytes, output_type: str,
                 *, inference_id: str | None = None, event_id: str | None = None,
                 inference_time: str | None = None) -> bytes:
    """One capture record as a JSON line (newline included)."""
    in_data, in_encoding = _encode(input_body, input_type)
    out_data, out_encoding = _encode(output_body, output_type)
    inference = f',"inferenceId":{_quote(inference_id)}' if inference_id else ""
    return (
        '{"captureData":{"endpointInput":{"observedContentType":%s,"mode":"INPUT","data":%s,'
        '"encoding":"%s"},"endpointOutput":{"observedContentType":%s,"mode":"OUTPUT","data":%s,'
        '"encoding":"%s"}},"eventMetadata":{"eventId":"%s"%s,"inferenceTime":"%s"},'
        '"eventVersion":"0"}\n' % (
            _quote(input_type or ""), _quote(in_data), in_encoding, _quote(output_type or ""),
            _quote(out_data), out_encoding, event_id or new_event_id(), inference,
            inference_time or epoch_iso_seconds(int(time.time())))
    ).encode("ascii")


def new_event_id(bits: Callable[[int], int] = random.getrandbits) -> str:
    """A random (version 4) UUID string, several times cheaper than str(uuid.uuid4())."""
    value = (bits(128) & ~(0xF000 << 64) | (0x4000 << 64)) & ~(0xC << 60) | (0x8 << 60)
    text = "%032x" % value
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


@dataclass
class _OpenFile:
    fd: int
    path: Path
    deadline: float
    """Rotate at this epoch second: the file's age limit or the end of its hour."""
    size: int = 0
    dirty: bool = False
    pending: int = 0
    """Records written since the last fdatasync (lost if it fails)."""
    broken: bool = False
    """Its fdatasync failed (sync thread): the writing thread retires it on the next write."""


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
        self._files: dict[str, _OpenFile] = {}
        self._retired: list[_OpenFile] = []
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
            self._append(handle, line)
        except OSError as exc:
            self._failed(variant_name, exc, handle)
            return
        self.records += 1
        if self._failing:
            self._recovered("a record was written")

    def _append(self, handle: _OpenFile, line: bytes) -> None:
        written = 0
        try:
            while written < len(line):  # regular files write short only when the disk is full
                count = os.write(handle.fd, line[written:] if written else line)
                if count == 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                written += count
        except OSError:
            if written:  # part of the line went in: cut it off, readers never see it torn
                try:
                    os.ftruncate(handle.fd, handle.size)
                except OSError:
                    pass  # left torn: `read_capture` and the monitor count and skip it
            raise
        handle.size += len(line)
        handle.pending += 1
        handle.dirty = True

    def _rotate(self, variant_name: str, now: float) -> _OpenFile:
        moment = time.gmtime(now)
        directory = self.root.joinpath(variant_name, time.strftime("%Y/%m/%d/%H", moment))
        directory.mkdir(parents=True, exist_ok=True)
        millis = int((now % 1) * 1000)
        name = (f"{time.strftime('%M-%S', moment)}-{millis:03d}-{self.writer_id}-"
                f"{uuid.uuid4().hex[:12]}.jsonl")
        path = directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        hour_end = (int(now) // 3600 + 1) * 3600
        handle = _OpenFile(fd, path, min(now + self.max_seconds, hour_end))
        self._replace(variant_name, handle)
        return handle

    def _replace(self, variant_name: str, handle: _OpenFile | None) -> None:
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
    def _failed(self, variant_name: str, exc: OSError, handle: _OpenFile | None) -> None:
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
                self._cause, self._cause_path = _reason(exc), path
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
                self._cause, self._cause_path = _reason(exc), str(exc.filename or self.root)
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
                    "pid": os.getpid(), "updated_at": epoch_iso_seconds(time.time()), **health.to_dict()}
        directory = self.health_path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{self.writer_id}.")
            try:
                with os.fdopen(fd, "w") as handle:
                    json.dump(document, handle, sort_keys=True)
                os.replace(tmp, self.health_path)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        except OSError as exc:
            with self._lock:
                self._health_dirty = True  # tried again on the next sync
            if not self._health_warned:
                self._health_warned = True
                log.warning("cannot write the capture health file %s: %s (only /ping and this "
                            "log report capture failures)", self.health_path, _reason(exc))

    def _close_retired(self) -> None:
        with self._lock:
            retired, self._retired = self._retired, []
        for handle in retired:
            try:
                if handle.dirty:
                    os.fdatasync(handle.fd)
            except OSError as exc:
                self._drop(exc, str(handle.path), handle.pending)
            try:
                os.close(handle.fd)
            except OSError as exc:  # e.g. a deferred write error reported at close
                self._drop(exc, str(handle.path), 0)
            if handle.size == 0:  # opened for a record that could not be written
                try:
                    handle.path.unlink()
                except OSError:
                    pass
                continue
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


# -- reading ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CapturedPayload:
    content_type: str
    mode: str
    data: str
    encoding: str

    def payload(self) -> bytes:
        """The payload as the endpoint saw (or sent) it."""
        if self.encoding == "BASE64":
            return base64.b64decode(self.data, validate=True)
        return self.data.encode("utf-8")

    def text(self) -> str:
        return self.payload().decode("utf-8")


@dataclass(frozen=True)
class CaptureRecord:
    input: CapturedPayload
    output: CapturedPayload
    event_id: str
    inference_time: str
    inference_id: str | None
    event_version: str
    endpoint: str | None = None
    variant: str | None = None
    """From the file's key (…/{endpoint}/{variant}/yyyy/mm/dd/hh/file), when it follows it."""
    path: str = ""
    line: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


_ENCODINGS = {"CSV", "JSON", "BASE64"}


def _payload(raw: Any, mode: str) -> CapturedPayload:
    if not isinstance(raw, dict):
        raise ValueError(f"endpoint{mode.title()} is not an object")
    payload = CapturedPayload(raw["observedContentType"], raw.get("mode", mode), raw["data"],
                              raw["encoding"])
    if not isinstance(payload.data, str) or payload.encoding not in _ENCODINGS:
        raise ValueError(f"bad {mode} payload")
    if payload.encoding == "BASE64":
        base64.b64decode(payload.data, validate=True)
    return payload


def parse_capture_line(text: str | bytes, *, endpoint: str | None = None,
                       variant: str | None = None, path: str = "", line: int = 0
                       ) -> CaptureRecord:
    """One capture line; ValueError when it is torn or not in SageMaker's capture format."""
    document = json.loads(text)
    try:
        data = document["captureData"]
        meta = document["eventMetadata"]
        record = CaptureRecord(
            _payload(data["endpointInput"], "INPUT"), _payload(data["endpointOutput"], "OUTPUT"),
            str(meta["eventId"]), str(meta["inferenceTime"]), meta.get("inferenceId"),
            str(document.get("eventVersion", "")), endpoint, variant, path, line, document)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"not a capture record: {exc!r}") from None
    return record


def _key_parts(path: Path) -> tuple[str | None, str | None]:
    parts = path.parts
    if len(parts) >= 7 and all(p.isdigit() for p in parts[-5:-1]) and len(parts[-5]) == 4:
        return parts[-7], parts[-6]
    return None, None


def capture_files(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """Files to read: the paths given, with directories expanded to their *.jsonl, sorted."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    found: list[Path] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            found.extend(sorted(p for p in entry.rglob("*.jsonl") if p.is_file()))
        else:
            found.append(entry)
    return found


def iter_capture(paths: str | Path | Iterable[str | Path],
                 on_skip: Callable[[Path, int, str], None] | None = None
                 ) -> Iterator[CaptureRecord]:
    for path in capture_files(paths):
        endpoint, variant = _key_parts(path)
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    yield parse_capture_line(raw, endpoint=endpoint, variant=variant,
                                             path=str(path), line=number)
                except ValueError as exc:  # JSONDecodeError is a ValueError
                    if on_skip is not None:
                        on_skip(path, number, str(exc))


def read_capture(paths: str | Path | Iterable[str | Path]) -> tuple[list[CaptureRecord], int]:
    """Parse capture files (or directories of them): (good records, torn or corrupt lines)."""
    skipped = 0

    def count(_path: Path, _line: int, _reason: str) -> None:
        nonlocal skipped
        skipped += 1

    records = list(iter_capture(paths, on_skip=count))
    return records, skipped
