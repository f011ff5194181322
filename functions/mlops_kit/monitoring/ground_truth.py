"""Ground truth (labels) for the performance alarm, and its join to the champion's scores.

Both homes read the same JSON Lines, one label per line, in either of two forms:

  SageMaker Model Monitor's ground-truth record (what its model-quality jobs read too):
    {"groundTruthData": {"data": "1", "encoding": "CSV"},
     "eventMetadata": {"eventId": "<the request's InferenceId>"}, "eventVersion": "0"}
  the kit's short form:
    {"inferenceId": "<the request's InferenceId>", "label": 0}

A label is 0 or 1 (a JSON number, or text such as "1" or "1.0"); `encoding` is CSV (the one
Model Monitor documents, assumed when absent) or JSON (`data` a JSON number). The join key is the
InferenceId the caller gave InvokeEndpoint, which data capture records as
`eventMetadata.inferenceId`; in the SageMaker form it goes in `eventMetadata.eventId`.

Anything else on a line (torn, not JSON, another shape, a label other than 0/1, no id) is
counted by reason and skipped, never fatal: one bad line must not cost the alarm its datapoint.
When an id is labelled more than once, the last label read wins, so a correction (a chargeback
reversed) appended or landed later replaces the first verdict.

No AWS here: `mlops_kit.aws.ground_truth` reads S3, `mlops_kit.local.monitor` the local home.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from mlops_kit.core.drift import average_precision

MIN_LABELLED_ROWS = 50
"""Fewer joined labels publish no AUPR datapoint: on a handful of rows (a few positives) AUPR
swings by tenths with one label, and the alarm would fire on noise."""

UNKNOWN_SHAPE = "neither a groundTruthData record nor {inferenceId, label}"
NO_ID = "no id (eventMetadata.eventId or inferenceId missing, empty or not text)"
BAD_LABEL = "label is not 0 or 1"
BAD_ENCODING = "groundTruthData encoding is neither CSV nor JSON"

SUPPORTED_ENCODINGS = ("CSV", "JSON")


class InvalidGroundTruth(ValueError):
    """One record that is not a usable label; the message is the reason it is counted under."""


def label_of(record: Mapping[str, Any]) -> tuple[str, int]:
    """(id, label) of one parsed ground-truth record, in either form; InvalidGroundTruth
    naming the problem otherwise."""
    if "groundTruthData" in record:
        truth = record["groundTruthData"]
        metadata = record.get("eventMetadata")
        if not isinstance(truth, Mapping):
            raise InvalidGroundTruth(UNKNOWN_SHAPE)
        encoding = str(truth.get("encoding", "CSV")).upper()
        if encoding not in SUPPORTED_ENCODINGS:
            raise InvalidGroundTruth(BAD_ENCODING)
        record_id = metadata.get("eventId") if isinstance(metadata, Mapping) else None
        value = truth.get("data")
    elif "inferenceId" in record or "label" in record:
        record_id, value = record.get("inferenceId"), record.get("label")
    else:
        raise InvalidGroundTruth(UNKNOWN_SHAPE)
    if not isinstance(record_id, str) or not record_id.strip():
        raise InvalidGroundTruth(NO_ID)
    return record_id, _binary_label(value)


def _binary_label(value: Any) -> int:
    # bool is an int in Python: JSON true/false is not the documented 0/1, so it is refused
    # rather than silently read as a label.
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise InvalidGroundTruth(BAD_LABEL) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidGroundTruth(BAD_LABEL)
    if math.isnan(value) or value not in (0, 1):
        raise InvalidGroundTruth(BAD_LABEL)
    return int(value)


@dataclass
class GroundTruth:
    """Labels by id, from any number of texts read in order (the last label of an id wins),
    and what was skipped, by reason."""
    labels: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    skipped_reasons: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, count: int = 1) -> None:
        if count:
            self.skipped += count
            self.skipped_reasons[reason] = self.skipped_reasons.get(reason, 0) + count

    def add_lines(self, text: str) -> None:
        # The capture reader's JSON Lines handling (blank lines ignored; torn, non-JSON and
        # non-object lines counted) is the same for labels. Imported on use: drift_monitor
        # imports this module (MIN_LABELLED_ROWS, the join), so a top-level import would be
        # a cycle.
        from mlops_kit.monitoring.drift_monitor import UNREADABLE_LINE, parse_capture_lines

        records, unreadable = parse_capture_lines(text)
        self.skip(UNREADABLE_LINE, unreadable)
        for record in records:
            try:
                record_id, label = label_of(record)
            except InvalidGroundTruth as exc:
                self.skip(str(exc))
                continue
            # pop first so a relabelled id moves to the end: insertion order is read order.
            self.labels.pop(record_id, None)
            self.labels[record_id] = label


def parse_labels(text: str) -> tuple[dict[str, int], int]:
    """{id: label} of one JSON Lines text, and how many lines were skipped."""
    truth = GroundTruth()
    truth.add_lines(text)
    return truth.labels, truth.skipped


def labelled_pairs(labels: Mapping[str, int], scores_by_id: Mapping[str, float]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(y, scores) for every labelled id the champion scored, in label order. Labels of ids
    it never scored (another variant's traffic, older than the lookback, a mistyped id) are
    left out: len(labels) - len(y) of them."""
    joined = [(label, scores_by_id[i]) for i, label in labels.items() if i in scores_by_id]
    y = np.fromiter((p[0] for p in joined), dtype=np.float64, count=len(joined))
    scores = np.fromiter((p[1] for p in joined), dtype=np.float64, count=len(joined))
    return y, scores


def labelled_aupr(labels: Mapping[str, int], scores_by_id: Mapping[str, float]
                  ) -> float | None:
    """The champion's AUPR on the joined labels, or None (no datapoint, which the alarm treats
    as not breaching) below MIN_LABELLED_ROWS joined rows or with one class only, where AUPR
    is undefined or noise."""
    y, scores = labelled_pairs(labels, scores_by_id)
    if y.size < MIN_LABELLED_ROWS or y.min() == y.max():
        return None
    return average_precision(y, scores)
