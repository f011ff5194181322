"""Batch scoring: a CSV or Parquet file through the endpoint's champion, chunk by chunk.

The model comes from the same `ScoringRouter` (and model cache) as the endpoint, so batch and
REST traffic follow the same state file. The state is checked before each chunk: after a
rollback, the next chunk is scored by the new champion, and the `variant` and `version` columns
say which model scored each row. Scoring is vectorised: `encode_table`, the Arrow twin of
`train.encode_frame` (identical matrices, ~5x faster; unusual column types go through
`encode_frame` itself), then `inplace_predict` on a copy of the booster that uses every core
(serving boosters keep nthread=1).

Input: `.csv` (read with pyarrow's streaming reader: feature columns typed from the model's
feature spec, other columns carried through as text) or `.parquet` (types kept). Columns are
found by name, so the id columns and the label need no rule of their own here: they are carried
to the output like every column the model does not read, never scored (the endpoint and the
stream pass ids through and ignore the label the same way, `inference.RowReader`). Output:
`.csv` or `.parquet`, the input columns plus `score`, `variant`, `version`, written to a
temporary file beside the target and renamed into place only when complete. Chunks are written
on a helper thread while the next one is read and scored (at most three chunks in memory).
"""

from __future__ import annotations

import os
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from mlops_kit.serving.router import LoadedVariant, ScoringRouter

OUTPUT_COLUMNS = ("score", "variant", "version")
CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")


class BatchInputError(ValueError):
    """The input cannot be scored (unreadable, missing features, non-numeric values...)."""


@dataclass
class BatchSummary:
    input: str
    output: str
    rows: int = 0
    chunks: int = 0
    seconds: float = 0.0
    predict_seconds: float = 0.0
    variants: dict[str, int] = field(default_factory=dict)
    """variant name → version, for every variant that scored some rows."""

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {"input": self.input, "output": self.output, "rows": self.rows,
                "chunks": self.chunks, "seconds": round(self.seconds, 4),
                "predict_seconds": round(self.predict_seconds, 4),
                "rows_per_second": round(self.rows_per_second, 1), "variants": self.variants}


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    raise BatchInputError(f"{path}: use a .csv or .parquet file")


def _threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover
        return max(1, os.cpu_count() or 1)


class _BatchModels:
    """Multi-threaded copies of the serving boosters, one per loaded model."""

    def __init__(self, threads: int):
        self.threads = threads
        self._boosters: dict[tuple, object] = {}

    def booster(self, variant: LoadedVariant):
        key = variant.handle.key
        booster = self._boosters.get(key)
        if booster is None:
            booster = variant.model.booster.copy()
            booster.set_param({"nthread": self.threads})
            self._boosters = {key: booster}  # keep only the model in use
        return booster


def _csv_batches(path: Path, spec, block_bytes: int) -> Iterator:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with open(path, "rb") as handle:
        header = handle.readline().decode("utf-8", "replace").strip()
    if not header:
        raise BatchInputError(f"{path} is empty")
    columns = pacsv.read_csv(pa.py_buffer((header + "\n").encode())).column_names
    types = {name: pa.string() for name in columns}
    for name in spec.features:
        if name in types:
            types[name] = pa.string() if name in spec.categorical else pa.float64()
    reader = pacsv.open_csv(
        path, read_options=pacsv.ReadOptions(block_size=block_bytes),
        convert_options=pacsv.ConvertOptions(column_types=types))
    yield from reader


def _parquet_batches(path: Path, chunk_rows: int) -> Iterator:
    import pyarrow.parquet as pq

    yield from pq.ParquetFile(path).iter_batches(batch_size=chunk_rows)


def _rechunk(batches: Iterator, chunk_rows: int) -> Iterator:
    """Exactly `chunk_rows` rows per table (the last one may hold fewer)."""
    import pyarrow as pa

    pending: list = []
    held = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        held += batch.num_rows
        while held >= chunk_rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, chunk_rows)
            rest = table.slice(chunk_rows)
            pending = rest.to_batches() if rest.num_rows else []
            held = rest.num_rows
    if held:
        yield pa.Table.from_batches(pending)


def _estimate_block_bytes(path: Path, chunk_rows: int) -> int:
    with open(path, "rb") as handle:
        sample = handle.read(1 << 16)
    lines = max(1, sample.count(b"\n"))
    per_row = max(16, len(sample) // lines)
    return int(min(64 << 20, max(1 << 20, per_row * chunk_rows)))


def read_chunks(path: str | Path, spec, chunk_rows: int) -> Iterator:
    """pyarrow Tables of at most `chunk_rows` rows from a CSV or Parquet file."""
    import pyarrow as pa

    path = Path(path)
    kind = _kind(path)
    if not path.is_file():
        raise BatchInputError(f"input file not found: {path}")
    try:
        if kind == "csv":
            batches = _csv_batches(path, spec, _estimate_block_bytes(path, chunk_rows))
        else:
            batches = _parquet_batches(path, chunk_rows)
        yield from _rechunk(batches, chunk_rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise BatchInputError(f"{path}: {str(exc).splitlines()[0]}") from None


def encode_table(table, spec) -> np.ndarray:
    """`train.encode_frame` for a pyarrow table, computed in Arrow (about 5x faster).

    Same matrix, value for value: numeric features cast to float32 (nulls → NaN), categorical
    features coded by their index in the spec's vocabulary (unknown or null → NaN). Column types
    whose conversion could differ from pandas' (a numeric column stored as text, a categorical
    column stored as numbers) go through `encode_frame` itself.
    """
    import pyarrow as pa

    missing = [name for name in spec.features if name not in table.column_names]
    if missing:
        raise BatchInputError(f"input lacks feature column(s) {', '.join(missing)}")
    columns = []
    for name in spec.features:
        column = table.column(name)
        kind = column.type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if name in spec.categorical:
            if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
                return _encode_with_pandas(table, spec)
            columns.append(_category_codes(column.cast(pa.string()), spec.categorical[name]))
        else:
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)
                    or pa.types.is_boolean(kind)):
                return _encode_with_pandas(table, spec)
            values = column.cast(pa.float32(), safe=False)
            columns.append(values.to_numpy(zero_copy_only=False))
    if not columns:
        return np.empty((table.num_rows, 0), np.float32)
    return np.ascontiguousarray(np.column_stack(columns), dtype=np.float32)


def _category_codes(column, vocabulary) -> np.ndarray:
    """Codes of a string column by the serving rule (`inference.category_key`: "1.0" names the
    category "1", as the endpoint reads it): the rule runs once per distinct value, in Python,
    and Arrow maps every row to its distinct value."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from mlops_pipelines.steps.inference import category_key

    position = {category: float(code) for code, category in enumerate(vocabulary)}
    distinct = pc.unique(column)
    distinct_codes = pa.array([position.get(category_key(value)) if value is not None else None
                               for value in distinct.to_pylist()], pa.float32())
    codes = pc.take(distinct_codes, pc.index_in(column, value_set=distinct))
    return codes.to_numpy(zero_copy_only=False)


def _encode_with_pandas(table, spec) -> np.ndarray:
    from mlops_pipelines.steps.train import encode_frame

    try:
        return encode_frame(table.select(list(spec.features)).to_pandas(), spec)
    except (ValueError, TypeError) as exc:
        raise BatchInputError(f"cannot encode features: {exc}") from None


def score_table(table, variant: LoadedVariant, booster) -> np.ndarray:
    """Scores for one chunk: vectorised encoding + inplace_predict (all cores)."""
    return booster.inplace_predict(encode_table(table, variant.model.spec),
                                   validate_features=False)


def score_file(router: ScoringRouter, input_path: str | Path, output_path: str | Path, *,
               chunk_rows: int = 100_000, variant: str | None = None,
               threads: int | None = None) -> BatchSummary:
    """Score `input_path` into `output_path` (atomically) with the champion, or `variant`."""
    import pyarrow as pa

    if chunk_rows < 1:
        raise BatchInputError("chunk_rows must be at least 1")
    input_path, output_path = Path(input_path), Path(output_path)
    out_kind = _kind(output_path)
    if output_path.resolve() == input_path.resolve():
        raise BatchInputError("output must differ from input")
    summary = BatchSummary(str(input_path), str(output_path))
    models = _BatchModels(threads or _threads())
    first = router.select(variant) if variant else router.champion()
    import pyarrow.compute  # noqa: F401  (imports paid before the clock starts)

    started = time.perf_counter()
    output_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = output_path.parent / f".{output_path.name}.{uuid.uuid4().hex[:8]}.tmp"
    writer = None
    try:
        for table in read_chunks(input_path, first.model.spec, chunk_rows):
            chosen = router.select(variant) if variant else router.champion()
            clash = [c for c in OUTPUT_COLUMNS if c in table.column_names]
            if clash:
                raise BatchInputError(f"input already has column(s) {', '.join(clash)}")
            predict_started = time.perf_counter()
            scores = score_table(table, chosen, models.booster(chosen))
            summary.predict_seconds += time.perf_counter() - predict_started
            rows = table.num_rows
            table = (table.append_column("score", pa.array(scores, pa.float32()))
                     .append_column("variant", pa.repeat(chosen.variant_name, rows))
                     .append_column("version", pa.array(np.full(rows, chosen.version,
                                                                np.int64))))
            if writer is None:
                writer = _WriteBehind(_open_writer(temporary, out_kind, table.schema))
            writer.write_table(table)  # written while the next chunk is read and scored
            summary.rows += rows
            summary.chunks += 1
            summary.variants[chosen.variant_name] = chosen.version
        if writer is None:
            raise BatchInputError(f"{input_path} holds no rows")
        writer.close()
        writer = None
        os.replace(temporary, output_path)
    finally:
        if writer is not None:  # only on failure: report the first error, not the close's
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                pass
        temporary.unlink(missing_ok=True)
    summary.seconds = time.perf_counter() - started
    return summary


class _WriteBehind:
    """Writes chunks on a helper thread (pyarrow releases the GIL), one chunk behind."""

    def __init__(self, writer):
        import queue
        import threading

        self._writer = writer
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="batch-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            table = self._queue.get()
            if table is None:
                return
            if self._error is None:
                try:
                    self._writer.write_table(table)
                except BaseException as exc:  # re-raised on the caller's thread
                    self._error = exc

    def write_table(self, table) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(table)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        try:
            self._writer.close()
        finally:
            if self._error is not None:
                error, self._error = self._error, None
                raise error


def _open_writer(path: Path, kind: str, schema):
    if kind == "csv":
        return _CsvWriter(path)
    import pyarrow.parquet as pq

    return pq.ParquetWriter(path, schema)


class _CsvWriter:
    """CSV chunks appended to one file; values are quoted only in chunks that need it."""

    def __init__(self, path: Path):
        self._handle = open(path, "wb")
        self._header = True

    def write_table(self, table) -> None:
        import pyarrow.csv as pacsv

        style = "needed" if _needs_quotes(table) else "none"
        header_style = "needed" if any(_SPECIAL.search(n) for n in table.column_names) else "none"
        pacsv.write_csv(table, self._handle, write_options=pacsv.WriteOptions(
            include_header=self._header, quoting_style=style, quoting_header=header_style))
        self._header = False

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()


_SPECIAL = re.compile(r'[,"\r\n]')


def _needs_quotes(table) -> bool:
    import pyarrow as pa
    import pyarrow.compute as pc

    for column in table.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            if pc.any(pc.match_substring_regex(column, r'[,"\r\n]')).as_py():
                return True
    return False
