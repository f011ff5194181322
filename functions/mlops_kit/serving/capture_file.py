"""Where capture files sit, and one open capture file.

Files sit under `{home}/capture/{endpoint}/{variant}/yyyy/mm/dd/hh/` (SageMaker's key layout
below its S3 prefix: the variant is known from the path, not the line), one file per writer
(per worker process, so processes never interleave).

A record goes in with one `write(2)` on an O_APPEND descriptor, so once the kernel has it a
worker crash or restart cannot lose or tear it; a line cut short by a full disk is truncated
away.
"""

from __future__ import annotations

import errno
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

CAPTURE_DIR = "capture"


def capture_root(home: str | Path) -> Path:
    return Path(home) / CAPTURE_DIR


def capture_file_path(endpoint_root: Path, variant_name: str, writer_id: str,
                      now: float) -> Path:
    """A new file's path in the hour folder of `now`, unique to this writer."""
    moment = time.gmtime(now)
    directory = endpoint_root.joinpath(variant_name, time.strftime("%Y/%m/%d/%H", moment))
    millis = int((now % 1) * 1000)
    name = (f"{time.strftime('%M-%S', moment)}-{millis:03d}-{writer_id}-"
            f"{uuid.uuid4().hex[:12]}.jsonl")
    return directory / name


def key_parts(path: Path) -> tuple[str | None, str | None]:
    """(endpoint, variant) from a path that follows the layout, else (None, None)."""
    parts = path.parts
    if len(parts) >= 7 and all(p.isdigit() for p in parts[-5:-1]) and len(parts[-5]) == 4:
        return parts[-7], parts[-6]
    return None, None


@dataclass
class CaptureFile:
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

    @classmethod
    def create(cls, path: Path, deadline: float) -> "CaptureFile":
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        return cls(fd, path, deadline)

    def append(self, line: bytes) -> None:
        """Write the whole line or, raising OSError, none of it (when it can be cut off)."""
        written = 0
        try:
            while written < len(line):  # regular files write short only when the disk is full
                count = os.write(self.fd, line[written:] if written else line)
                if count == 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                written += count
        except OSError:
            if written:  # part of the line went in: cut it off, readers never see it torn
                try:
                    os.ftruncate(self.fd, self.size)
                except OSError:
                    pass  # left torn: `read_capture` and the monitor count and skip it
            raise
        self.size += len(line)
        self.pending += 1
        self.dirty = True

    def close(self) -> list[tuple[OSError, int]]:
        """fdatasync what is pending, close, and remove the file if nothing went in. Never
        raises: the failures come back as (error, records it lost) for the writer to count."""
        failures: list[tuple[OSError, int]] = []
        try:
            if self.dirty:
                os.fdatasync(self.fd)
        except OSError as exc:
            failures.append((exc, self.pending))
        try:
            os.close(self.fd)
        except OSError as exc:  # e.g. a deferred write error reported at close
            failures.append((exc, 0))
        if self.size == 0:  # opened for a record that could not be written
            try:
                self.path.unlink()
            except OSError:
                pass
        return failures
