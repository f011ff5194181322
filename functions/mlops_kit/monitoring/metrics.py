"""Monitoring metrics: CloudWatch embedded metric format (EMF) in both homes.

In AWS, Powertools Metrics prints EMF to the function's log and CloudWatch turns it into
metrics. Locally the same EMF documents are appended to $MLOPS_HOME/metrics/metrics.jsonl,
which the local alarm evaluator reads.

Local state is written so that a full or read-only disk leaves nothing half-written:
`write_atomically` (a temp file in the same folder, fsync, os.replace) and `append_lines` (one
locked O_APPEND write, fsync, cut back to the previous end if it fails) raise
`mlops_kit.ports.StateWriteError` naming the path and the cause; the previous content stands.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Mapping, Protocol, Sequence

# The record and its names live in the catalogue (core), so adapters build datapoints without
# importing this module; they stay importable from here.
from mlops_kit.core.metric_catalogue import NAMESPACE, MetricDatum, epoch_millis  # noqa: F401
from mlops_kit.ports import StateWriteError


def write_atomically(path: str | Path, data: bytes | str) -> None:
    """Replace `path` with `data`: readers see the old content or the new, never part of it.
    StateWriteError (the old content intact, no temp file left) when it cannot be written."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise StateWriteError(path, exc) from exc
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def append_lines(path: str | Path, data: bytes | str) -> None:
    """Append complete lines to a .jsonl file, durably, without ever leaving a torn line: one
    write under an exclusive lock, fsync'ed; if it fails the file is cut back to where it
    ended (StateWriteError). A torn last line left by a crash gets its newline first, so the
    next line is never glued to it."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    if not raw:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StateWriteError(path, exc) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        end = os.fstat(fd).st_size
        if end and os.pread(fd, 1, end - 1) != b"\n":
            raw = b"\n" + raw
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as exc:
            try:
                os.ftruncate(fd, end)
            except OSError:
                pass
            raise StateWriteError(path, exc) from exc
    finally:
        os.close(fd)  # releases the lock


class MetricSink(Protocol):
    """Where a run's datapoints go: EMF through Powertools (AWS), the local store."""

    def put(self, data: Sequence[MetricDatum]) -> None: ...


class LocalMetricStore:
    def __init__(self, home: str | Path):
        self.path = Path(home) / "metrics" / "metrics.jsonl"

    def put(self, data: Sequence[MetricDatum]) -> None:
        """Append the datapoints, all or none (StateWriteError when the disk refuses)."""
        if not data:
            return
        append_lines(self.path, "".join(json.dumps(d.to_emf(), sort_keys=True) + "\n"
                                        for d in data))

    def read(self) -> list[MetricDatum]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        data = []
        for line in text.splitlines():
            try:
                data.extend(MetricDatum.from_emf(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line after a crash
        return data

    def query(self, namespace: str, name: str, dimensions: Mapping[str, str],
              start: datetime, end: datetime) -> list[MetricDatum]:
        return [d for d in self.read()
                if d.namespace == namespace and d.name == name
                and dict(d.dimensions) == dict(dimensions) and start <= d.timestamp < end]


class PowertoolsMetricSink:
    """EMF through Powertools, one document per datum (EMF allows one dimension set per
    document), each stamped with its datum's own time: the champion's per-minute SageMaker
    values, republished together every run, land in their own minutes (CloudWatch takes EMF
    timestamps up to 14 days old and 2 hours ahead).

    The dimensions are exactly the datum's: Powertools would add a `service` dimension from
    POWERTOOLS_SERVICE_NAME (set on every kit Lambda), and a metric with {EndpointName,
    service} is another metric than the alarms' {EndpointName}."""

    def put(self, data: Sequence[MetricDatum]) -> None:
        from aws_lambda_powertools.metrics import MetricUnit, single_metric

        for datum in data:
            unit = getattr(MetricUnit, datum.unit, MetricUnit.NoUnit) if datum.unit != "None" \
                else MetricUnit.NoUnit
            with single_metric(name=datum.name, unit=unit, value=datum.value,
                               namespace=datum.namespace) as metric:
                metric.service = None  # no implicit `service` dimension (see above)
                for key, value in datum.dimensions.items():
                    metric.add_dimension(name=key, value=value)
                metric.set_timestamp(epoch_millis(datum.timestamp))
