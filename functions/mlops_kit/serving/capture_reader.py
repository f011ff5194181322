"""Reading capture files back, skipping (and counting) torn or corrupt lines.

A machine crash can at worst leave a torn last line in a capture file; readers skip it rather
than fail on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Iterator

from mlops_kit.serving.capture_file import key_parts
from mlops_kit.serving.capture_record import CaptureRecord, parse_capture_line


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
        endpoint, variant = key_parts(path)
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
