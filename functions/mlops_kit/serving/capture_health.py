"""A capture writer's health, as /ping and its health file report it.

While capture fails, each writer keeps `{home}/health/capture/{endpoint}/{writer}.json`
(tempfile + os.replace, off the capture folder) with its counts, which the local monitor turns
into `CaptureRecordsDropped`.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_kit.core.timestamps import epoch_iso_seconds
from mlops_kit.serving.capture_file import CAPTURE_DIR

HEALTH_DIR = "health"


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


def failure_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def write_health_file(path: Path, document: dict[str, Any], temp_prefix: str) -> None:
    """Replace `path` with `document` atomically (readers never see half a file); raises
    OSError, leaving no temporary file behind."""
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=temp_prefix)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
