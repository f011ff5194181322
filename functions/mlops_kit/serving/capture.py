"""Data capture in SageMaker's format, and a reader that survives torn lines.

Each captured request is one JSON line, as a SageMaker real-time endpoint writes it, under
`{home}/capture/{endpoint}/{variant}/yyyy/mm/dd/hh/`, one file per writer (per worker
process), rotated by size, by age and at each hour boundary. A record is on its way to the disk
before the response is sent, fdatasync'ed within `sync_seconds`; capture never fails a request:
what it cannot write it drops, counts and reports (/ping, the log, a health file).

The pieces, re-exported here as the one import for callers:
- `capture_record`: the line format, written (`capture_line`) and parsed back;
- `capture_file`: the folder layout and one open file (append, fdatasync, close);
- `capture_writer`: `CaptureWriter`, with sampling, rotation, background sync and the
  failure accounting (durability and failure handling are described there);
- `capture_health`: `CaptureHealth` and the per-writer health file;
- `capture_reader`: `read_capture` and `iter_capture`, which count and skip torn lines.
"""

from __future__ import annotations

from mlops_kit.serving.capture_file import CAPTURE_DIR, capture_root
from mlops_kit.serving.capture_health import HEALTH_DIR, CaptureHealth, capture_health_dir
from mlops_kit.serving.capture_reader import capture_files, iter_capture, read_capture
from mlops_kit.serving.capture_record import (CapturedPayload, CaptureRecord, capture_line,
                                              new_event_id, parse_capture_line)
from mlops_kit.serving.capture_writer import (DEFAULT_LOG_SECONDS, DEFAULT_MAX_BYTES,
                                              DEFAULT_MAX_SECONDS, DEFAULT_RETRY_SECONDS,
                                              DEFAULT_SYNC_SECONDS, CaptureWriter)

__all__ = [
    "CAPTURE_DIR", "HEALTH_DIR", "DEFAULT_LOG_SECONDS", "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_SECONDS", "DEFAULT_RETRY_SECONDS", "DEFAULT_SYNC_SECONDS",
    "CaptureHealth", "CaptureRecord", "CaptureWriter", "CapturedPayload", "capture_files",
    "capture_health_dir", "capture_line", "capture_root", "iter_capture", "new_event_id",
    "parse_capture_line", "read_capture",
]
