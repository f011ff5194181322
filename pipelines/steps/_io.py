"""File helpers shared by the steps: table I/O by extension, digests, atomic writes."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


class BadInputError(Exception):
    """Input the pipeline cannot use. `cause` is one line; `details` say where and why."""

    def __init__(self, cause: str, details: list[str] | None = None):
        super().__init__(cause)
        self.cause = cause
        self.details = details or []

    def __str__(self) -> str:
        return "\n".join([self.cause, *(f"  - {d}" for d in self.details)])


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def find_table(directory: str | Path) -> Path:
    """The one data file of a channel directory (SageMaker delivers a prefix, not a file)."""
    directory = Path(directory)
    if directory.is_file():
        return directory
    if not directory.is_dir():
        raise BadInputError(f"input not found: {directory}")
    tables = sorted(p for p in directory.iterdir()
                    if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES)
    if not tables:
        raise BadInputError(f"no CSV or Parquet file in {directory}")
    if len(tables) > 1:
        raise BadInputError(f"more than one data file in {directory}",
                            [p.name for p in tables])
    return tables[0]


def read_table(path: str | Path, columns: list[str] | None = None):
    """Read CSV or Parquet by extension; every failure becomes a BadInputError naming the file."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise BadInputError(f"data file not found: {path}")
    if not path.is_file():
        raise BadInputError(f"data path is not a file: {path}")
    if path.stat().st_size == 0:
        raise BadInputError(f"data file is empty: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path, usecols=columns, low_memory=False)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path, columns=columns)
    except pd.errors.EmptyDataError:
        raise BadInputError(f"data file has no rows or columns: {path}") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadInputError(f"cannot read {path.name}: {first_line}") from None
    raise BadInputError(f"unsupported data file type '{suffix}' for {path.name}",
                        ["use .csv or .parquet"])


def write_table(frame, path: str | Path) -> None:
    """Write CSV or Parquet by extension, atomically (temporary file, then rename)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise BadInputError(f"unsupported output type '{suffix}' for {path.name}",
                            ["use .csv or .parquet"])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, document: Any) -> None:
    """Atomic JSON write with sorted keys, so identical content gives identical bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle, indent=2, sort_keys=True, allow_nan=False)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())
