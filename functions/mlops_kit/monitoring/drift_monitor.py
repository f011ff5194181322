"""Drift monitor maths: captured traffic decoded, and its drift against the serving champion's
baseline as datapoints. `mlops_kit.monitoring.run` runs it in both homes (the scheduled Lambda
and the local timer); the metrics are `mlops_kit.core.metric_catalogue`'s:
  FeaturePSI      EndpointName, VariantName, Feature   per feature, per variant
  FeaturePSIMax   EndpointName                         the champion's worst feature (alarmed)
  PredictionPSI   EndpointName                         the champion's scores vs training (alarmed)
  PredictionPSI   EndpointName, VariantName            per variant (dashboards)
  CaptureRecords, CaptureSkipped   EndpointName, VariantName
  CaptureRecords  EndpointName                         every variant's, for the interval (AWS)
  UncapturedInvocations  EndpointName                  AWS only: the interval's invocations
                                                       when the capture held none (alarmed:
                                                       capture-stopped, notify-only)
AUPR (labels joined on inferenceId) is the run's; CaptureRecordsDropped the local home's.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from mlops_kit.core import drift
from mlops_kit.core.metric_catalogue import (CAPTURE_RECORDS, CAPTURE_SKIPPED, FEATURE_PSI,
                                             FEATURE_PSI_MAX, PREDICTION_PSI,
                                             UNCAPTURED_INVOCATIONS, MetricDatum)

MIN_ROWS_FOR_DRIFT = 200
"""Below this, PSI over 10 bins is sampling noise (same-distribution samples of 20 rows give a
median PSI near 1): a quiet period publishes no drift datapoint rather than a false alarm."""


class FeatureOrder(tuple):
    """The model's feature names in order (a tuple of them), knowing the data's columns too:
    a captured row of exactly len(features) values is the features; one in the data's column
    order (ids, features and label, as the training file has them), with or without the label,
    is read by position, its ids and label dropped. The endpoint's own rule
    (`mlops_pipelines.steps.inference.RowReader`), so drift is computed on every row the
    endpoint scored, whichever layout the caller sent."""

    id_columns: tuple[str, ...]
    label: str
    columns: tuple[str, ...]

    def __new__(cls, features: Sequence[str], *, id_columns: Sequence[str] = (),
                label: str = "", columns: Sequence[str] = ()) -> "FeatureOrder":
        order = super().__new__(cls, features)
        order.id_columns, order.label = tuple(id_columns), label
        # The schema's default order (`DatasetSchema.data_columns`) unless it named its own.
        order.columns = tuple(columns) or (order.id_columns + tuple(order)
                                            + ((label,) if label else ()))
        order._positions = {}
        if set(order) <= set(order.columns):
            for layout in (order.columns, tuple(c for c in order.columns if c != label)):
                if len(layout) != len(order):  # a features-only row wins a tie
                    order._positions.setdefault(len(layout),
                                                tuple(layout.index(n) for n in order))
        return order

    def features_of(self, row: Sequence[Any]) -> Sequence[Any] | None:
        """The row's feature values in model order, or None for a width neither layout has."""
        if len(row) == len(self):
            return row
        positions = self._positions.get(len(row))
        return None if positions is None else [row[p] for p in positions]


def _features_of(row: Sequence[Any], feature_order: Sequence[str]) -> Sequence[Any] | None:
    if isinstance(feature_order, FeatureOrder):
        return feature_order.features_of(row)
    return row if len(row) == len(feature_order) else None


@dataclass(frozen=True)
class ChampionBaseline:
    """What the monitor compares against: the champion's training-time distributions."""
    version: int
    variant_name: str
    features: Mapping[str, Any]
    """The preprocess step's baseline.json `features` section."""
    feature_order: tuple[str, ...]
    """A `FeatureOrder` when read from the documents: it knows the data's column order."""
    score_baseline: Mapping[str, Any]
    """evaluation.json's `score_baseline` (quantile bins of the training scores)."""

    @classmethod
    def from_documents(cls, version: int, variant_name: str, baseline: Mapping[str, Any],
                       evaluation: Mapping[str, Any]) -> "ChampionBaseline":
        schema = baseline["schema"]
        # baseline.json's schema names the ids and the label; it lists the data's column
        # order only when the dataset schema declared one (else ids, features, label).
        order = FeatureOrder(tuple(schema["numeric"]) + tuple(schema["categorical"]),
                             id_columns=schema.get("id_columns", ()),
                             label=schema.get("target", ""), columns=schema.get("columns", ()))
        return cls(version, variant_name, baseline["features"], order,
                   evaluation["score_baseline"])


@dataclass
class DecodedCapture:
    columns: dict[str, list[Any]]
    scores: list[float]
    inference_ids: list[str | None]
    records: int = 0
    skipped: int = 0
    skipped_reasons: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped += count
        self.skipped_reasons[reason] = self.skipped_reasons.get(reason, 0) + count

    def add_unreadable_lines(self, count: int) -> None:
        """Lines `parse_capture_lines` could not read (torn, not JSON, not an object): counted
        as records and as skipped, with their reason."""
        if count:
            self.records += count
            self.skip(UNREADABLE_LINE, count)


UNREADABLE_LINE = "unreadable line (torn, not JSON or not an object)"


def parse_capture_lines(text: str) -> tuple[list[dict[str, Any]], int]:
    """JSON Lines of SageMaker capture; a torn or corrupt line is counted, not fatal."""
    records, corrupt = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            corrupt += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            corrupt += 1
    return records, corrupt


def _payload_text(part: Mapping[str, Any]) -> tuple[str, str]:
    # A record of the wrong schema (a part that is not an object, data that is not text) is
    # a ValueError here, so decode_capture skips it instead of crashing the monitor.
    if not isinstance(part, Mapping):
        raise ValueError("capture part is not an object")
    data = part.get("data", "")
    if part.get("encoding") == "BASE64":
        data = base64.b64decode(data).decode("utf-8")
    if not isinstance(data, str):
        raise ValueError("capture data is not text")
    return str(part.get("observedContentType", "")).split(";")[0].strip().lower(), data


def decode_capture(records: Iterable[Mapping[str, Any]], feature_order: Sequence[str]
                   ) -> DecodedCapture:
    """Rows and scores out of SageMaker capture records. Anything unreadable is counted and
    skipped, never fatal: a torn line, another content type, a row of the wrong width. A row
    in the data's column order (ids, label) counts when `feature_order` is a `FeatureOrder`,
    and so does an answer carrying the ids (`id,score` lines)."""
    decoded = DecodedCapture({name: [] for name in feature_order}, [], [])
    for record in records:
        decoded.records += 1
        try:
            capture = record["captureData"]
            input_type, input_text = _payload_text(capture["endpointInput"])
            output_type, output_text = _payload_text(capture["endpointOutput"])
        except (KeyError, TypeError, ValueError, UnicodeDecodeError):
            decoded.skip("malformed record")
            continue
        if input_type == "text/csv":
            rows = [r for r in csv.reader(io.StringIO(input_text)) if r]
        elif input_type == "application/json":
            try:
                document = json.loads(input_text)
            except json.JSONDecodeError:
                decoded.skip("malformed JSON input")
                continue
            rows = _json_rows(document)
            if rows is None:
                decoded.skip("malformed JSON input")
                continue
            rows = [[r.get(n) for n in feature_order] if isinstance(r, dict) else r for r in rows]
        else:
            decoded.skip(f"content type {input_type or 'unknown'}")
            continue
        scores = _scores(output_type, output_text, _sent_ids(rows, feature_order))
        if scores is None or len(scores) != len(rows):
            decoded.skip("output does not match input rows")
            continue
        metadata = record.get("eventMetadata")
        inference_id = metadata.get("inferenceId") if isinstance(metadata, Mapping) else None
        if not isinstance(inference_id, str):
            inference_id = None
        for row, score in zip(rows, scores):
            values = _features_of(row, feature_order)
            if values is None:
                decoded.skip("wrong number of values")
                continue
            for name, value in zip(feature_order, values):
                decoded.columns[name].append(value)
            decoded.scores.append(score)
            decoded.inference_ids.append(inference_id if len(rows) == 1 else None)
    return decoded


def _json_rows(document: Any) -> list | None:
    """The shapes the endpoint accepts: a row, a list of rows, {"instances"|"features": ...}."""
    if isinstance(document, dict):
        document = document.get("instances", document.get("features"))
    if isinstance(document, list) and document and not isinstance(document[0], (list, dict)):
        document = [document]
    if not isinstance(document, list) or not all(isinstance(r, (list, dict)) for r in document):
        return None
    return document


def _sent_ids(rows: Sequence[Any], feature_order: Sequence[str]) -> bool:
    """Whether some row sent ids, so the endpoint answered `ids...,score` lines."""
    id_columns = getattr(feature_order, "id_columns", ())
    return any(any(name in row for name in id_columns) if isinstance(row, dict)
               else len(row) != len(feature_order) for row in rows)


def _scores(content_type: str, text: str, with_ids: bool = False) -> list[float] | None:
    """The answer's scores: JSON predictions (ids beside the score), or CSV of one score per
    value, or, when the rows sent ids, one `ids...,score` line per row."""
    try:
        if content_type == "application/json":
            document = json.loads(text)
            return [float(p["score"]) for p in document["predictions"]]
        if with_ids:
            return [float(line[-1]) for line in csv.reader(io.StringIO(text)) if line]
        return [float(v) for v in text.replace(",", "\n").split()]
    except (ValueError, KeyError, TypeError, IndexError, json.JSONDecodeError):
        return None


def _numeric(values: Sequence[Any]) -> np.ndarray:
    out = np.empty(len(values))
    for i, value in enumerate(values):
        try:
            out[i] = float(value) if value not in ("", None) else math.nan
        except (TypeError, ValueError):
            out[i] = math.nan
    return out


def compute_metrics(baseline: ChampionBaseline, by_variant: Mapping[str, DecodedCapture], *,
                    endpoint_name: str, at: datetime) -> list[MetricDatum]:
    """Per variant: its capture counts and, from MIN_ROWS_FOR_DRIFT rows on, the PSI of each
    feature and of the scores; for the champion also the endpoint-level FeaturePSIMax and
    PredictionPSI the alarms watch."""
    data: list[MetricDatum] = []
    for variant, decoded in by_variant.items():
        dims = {"EndpointName": endpoint_name, "VariantName": variant}
        data.append(CAPTURE_RECORDS.datum(decoded.records, dims, at))
        data.append(CAPTURE_SKIPPED.datum(decoded.skipped, dims, at))
        if len(decoded.scores) < MIN_ROWS_FOR_DRIFT:
            continue
        worst = 0.0
        for name, entry in baseline.features.items():
            value = _feature_psi(entry, decoded.columns.get(name, []))
            worst = max(worst, value)
            data.append(FEATURE_PSI.datum(value, {**dims, "Feature": name}, at))
        prediction_psi = drift.psi_against_baseline(baseline.score_baseline,
                                                    np.asarray(decoded.scores, dtype=np.float64))
        data.append(PREDICTION_PSI.datum(prediction_psi, dims, at))
        if variant == baseline.variant_name:
            endpoint_dims = {"EndpointName": endpoint_name}
            data.append(FEATURE_PSI_MAX.datum(worst, endpoint_dims, at))
            data.append(PREDICTION_PSI.datum(prediction_psi, endpoint_dims, at))
    return data


def _feature_psi(entry: Mapping[str, Any], values: Sequence[Any]) -> float:
    if entry["kind"] == "numeric":
        return drift.psi_against_baseline(entry, _numeric(values))
    # Values are counted by `drift.category_key` (CSV "1" and JSON 1 or 1.0 in one bin); a
    # blank field is missing, as it is when the endpoint scores it.
    return drift.psi_against_baseline(
        entry, [None if isinstance(v, str) and not v.strip() else v for v in values])


def capture_health_metrics(by_variant: Mapping[str, DecodedCapture], invocations: float | None,
                           *, endpoint_name: str, at: datetime) -> list[MetricDatum]:
    """Whether the endpoint's capture keeps up with its traffic, per monitor run:
    CaptureRecords (every variant's records found for the interval) and, when the interval's
    invocations are known (SageMaker's Invocations, every variant), UncapturedInvocations:
    those invocations if the capture held no record at all, else 0. SageMaker's managed
    capture never fails a request, but it stops silently (a bucket policy or KMS key that
    refuses it): that is invocations without capture."""
    dims = {"EndpointName": endpoint_name}
    captured = float(sum(d.records for d in by_variant.values()))
    data = [CAPTURE_RECORDS.datum(captured, dims, at)]
    if invocations is not None:
        data.append(UNCAPTURED_INVOCATIONS.datum(
            float(invocations) if captured == 0 else 0.0, dims, at))
    return data
