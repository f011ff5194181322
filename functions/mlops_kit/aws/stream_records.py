"""What one Kinesis record holds, for the stream scorer Lambda: the features it scores, as one
CSV line in the model's feature order, and the ids it passes through.

The rule is the endpoint's (`mlops_pipelines.steps.inference.RowReader`, which this Lambda
cannot import: it ships without numpy), so a record is read the same on every scoring path:

* A JSON object holds features by name (at the top level or under "features"); id keys are
  passed through to the output, the label key is ignored, an `inferenceId` names the request,
  any other key is an error (a misspelt feature would otherwise be scored as missing).
* A CSV line or a JSON list of exactly len(features) values is the features in model order.
  One in the data's column order (ids, features and label, as the training file has them),
  with or without the label, has its ids passed through and its label dropped.

Configured by FEATURE_ORDER (the contract's `feature_order`), RECORD_ID_FIELD, and the data's
id columns, label and column order (`ID_COLUMNS`, `LABEL_COLUMN`, `DATA_COLUMNS`; the
defaults are the bundled sample schema's, `FRAUD_SAMPLE_SCHEMA`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from mlops_kit.contract import FUNCTIONS, StreamScorerSettings

_DEFAULTS = {env.field: env.default for env in FUNCTIONS["stream_scorer"].env}
SAMPLE_ID_COLUMNS: tuple[str, ...] = _DEFAULTS["id_columns"]
SAMPLE_LABEL: str = _DEFAULTS["label_column"]
"""The contract's defaults (ID_COLUMNS, LABEL_COLUMN): the sample schema's, a test holds them
equal to `FRAUD_SAMPLE_SCHEMA`."""
INFERENCE_ID = "inferenceId"


class BadRecord(ValueError):
    """A record that cannot be scored as it is; retrying it will not help."""


@dataclass(frozen=True)
class RecordLayout:
    """The model's features, the data's id columns, label and column order."""
    features: tuple[str, ...]
    id_columns: tuple[str, ...] = SAMPLE_ID_COLUMNS
    label: str = SAMPLE_LABEL
    record_id_field: str = "id"
    columns: tuple[str, ...] = ()
    """The data's column order; empty: ids, features (model order), label."""

    @classmethod
    def from_settings(cls, cfg: StreamScorerSettings) -> "RecordLayout":
        return cls(tuple(cfg.feature_order), tuple(cfg.id_columns), cfg.label_column.strip(),
                   cfg.record_id_field, tuple(cfg.data_columns))

    @property
    def data_columns(self) -> tuple[str, ...]:
        if self.columns:
            return self.columns
        ids = tuple(c for c in self.id_columns if c not in self.features)
        return ids + self.features + ((self.label,) if self.label else ())

    def positional_layouts(self) -> dict[int, tuple[tuple[int, ...], tuple[int, ...]]]:
        """width → (feature positions, id positions) of the data-order rows (the features-only
        width wins a tie, as in RowReader)."""
        layouts: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        full = self.data_columns
        if not self.features or not set(self.features) <= set(full):
            return layouts
        for layout in (full, tuple(c for c in full if c != self.label)):
            if len(layout) != len(self.features):
                layouts.setdefault(len(layout), (
                    tuple(layout.index(n) for n in self.features),
                    tuple(layout.index(n) for n in self.id_columns if n in layout)))
        return layouts

    def known_keys(self) -> set[str]:
        return (set(self.features) | set(self.id_columns) | {self.record_id_field, INFERENCE_ID}
                | ({self.label} if self.label else set()))


@dataclass(frozen=True)
class ReadRecord:
    line: str
    """The features as one CSV line in model order (what the endpoint scores)."""
    ids: dict[str, Any]
    """The id columns the record sent, by name (passed through to the output)."""
    record_id: str | None
    """RECORD_ID_FIELD's value, else the only id column's: the output's `id`."""
    inference_id: str | None = None


def csv_value(name: str, value: Any) -> str:
    if value is None or value == "":
        return ""  # XGBoost reads an empty CSV field as missing
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # a JSON integer beyond float range
            raise BadRecord(f"feature '{name}' is out of range") from None
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            # A categorical value: passed on as text (quoted when CSV needs it); the endpoint
            # knows which features are categorical and answers 400 for a bad numeric one.
            if "\n" in value or "\r" in value:
                raise BadRecord(f"feature '{name}' holds a line break") from None
            return f'"{value.replace(chr(34), chr(34) * 2)}"' if any(
                c in value for c in ',"') else value
    else:
        raise BadRecord(f"feature '{name}' is not a number: {type(value).__name__}")
    if math.isnan(number):
        return ""
    if math.isinf(number):
        raise BadRecord(f"feature '{name}' is infinite")
    return repr(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)


def _record_id(layout: RecordLayout, ids: Mapping[str, Any], explicit: Any = None
               ) -> str | None:
    if explicit is None and len(layout.id_columns) == 1:
        explicit = ids.get(layout.id_columns[0])
    return None if explicit is None else str(explicit)


def _positional(values: Sequence[Any], layout: RecordLayout, what: str) -> ReadRecord:
    features = layout.features
    if not features or len(values) == len(features):
        names = features or [f"column {i}" for i in range(len(values))]
        return ReadRecord(",".join(csv_value(n, v) for n, v in zip(names, values)), {}, None)
    found = layout.positional_layouts().get(len(values))
    if found is None:
        hint = (f" (or the data's {len(layout.data_columns)} columns "
                f"{', '.join(layout.data_columns)}, with or without the label)"
                if layout.positional_layouts() else "")
        raise BadRecord(f"{len(values)} {what} for {len(features)} features{hint}")
    positions, id_positions = found
    ids = {layout.data_columns[p]: values[p] for p in id_positions}
    line = ",".join(csv_value(features[i], values[p]) for i, p in enumerate(positions))
    return ReadRecord(line, ids, _record_id(layout, ids))


def _named(parsed: dict[str, Any], layout: RecordLayout) -> ReadRecord:
    nested = parsed.get("features")
    if isinstance(nested, dict):
        outer = {k: v for k, v in parsed.items() if k != "features"}
        merged = {**outer, **nested}
    else:
        merged = parsed
    unknown = merged.keys() - layout.known_keys()
    if unknown:
        raise BadRecord(f"unknown feature(s) {', '.join(sorted(map(str, unknown)))}")
    missing = [name for name in layout.features if name not in merged]
    if missing:
        raise BadRecord(f"missing feature(s): {', '.join(missing)}")
    ids = {name: merged[name] for name in layout.id_columns if name in merged}
    inference_id = merged.get(INFERENCE_ID)
    line = ",".join(csv_value(name, merged[name]) for name in layout.features)
    return ReadRecord(line, ids, _record_id(layout, ids, merged.get(layout.record_id_field)),
                      None if inference_id is None else str(inference_id))


def read_record(data: bytes, layout: RecordLayout) -> ReadRecord:
    """The record's features line and ids, by the one rule (module docstring)."""
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise BadRecord("record is not UTF-8 text") from None
    if not text:
        raise BadRecord("empty record")
    if text[0] in "{[":
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadRecord(f"not valid JSON: {exc.msg} at {exc.pos}") from None
        if not layout.features:
            raise BadRecord("JSON record but FEATURE_ORDER is not configured")
        if isinstance(parsed, list):
            return _positional(parsed, layout, "values")
        if not isinstance(parsed, dict):
            raise BadRecord("JSON record must be an object of features")
        return _named(parsed, layout)
    if "\n" in text or "\r" in text:
        raise BadRecord("a CSV record must be one line")
    return _positional([v.strip() for v in text.split(",")], layout, "CSV values")


def to_csv(data: bytes, cfg: StreamScorerSettings) -> tuple[str, str | None]:
    """The record as one CSV line in feature order, and its id when it carries one."""
    record = read_record(data, RecordLayout.from_settings(cfg))
    return record.line, record.record_id
