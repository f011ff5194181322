"""Streaming scoring: JSON lines in, JSON lines out, through the endpoint's router.

Each input line is a JSON object of feature values, optionally with an `inferenceId`, the
model's id columns and its label (`inference.RowReader`, the endpoint's rule: ids passed
through, the label ignored, any other key an error):

    {"inferenceId": "txn-1", "transaction_id": "tx-1", "amount": 35.8, "channel": "pos", ...}

Each output line is either a score, with the ids the line sent:

    {"inferenceId": "txn-1", "transaction_id": "tx-1", "score": 0.00034, "variant": "v3",
     "version": 3}

or an error record naming the problem; the stream goes on:

    {"line": 7, "inferenceId": "txn-7", "error": "feature 'amount' must be numeric, got 'x'"}

The router checks the state file before every line, so a rollback applies mid-stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import IO, Iterable

from mlops_pipelines.steps.inference import PayloadError, output_fn

from mlops_kit.serving.capture import CaptureWriter
from mlops_kit.serving.router import ScoringRouter, ServingError

INFERENCE_ID = "inferenceId"


@dataclass
class StreamSummary:
    lines: int = 0
    scored: int = 0
    errors: int = 0


def score_line(router: ScoringRouter, raw: bytes | str, number: int,
               capture: CaptureWriter | None = None) -> dict:
    """The output record for one input line (a score or an error)."""
    inference_id = None
    try:
        try:
            document = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
            raise PayloadError(f"not valid JSON: {reason}") from None
        if not isinstance(document, dict):
            raise PayloadError("expected a JSON object of feature values")
        inference_id = document.pop(INFERENCE_ID, None)
        if inference_id is not None and not isinstance(inference_id, (str, int)):
            raise PayloadError("inferenceId must be a string")
        variant = router.select()
        try:
            score, ids = variant.kernel.score_record(document)
        except PayloadError as exc:
            message = str(exc)
            raise PayloadError(message[len("row 0: "):] if message.startswith("row 0: ")
                               else message) from None
    except (PayloadError, ServingError) as exc:
        record = {"line": number, "error": str(exc)}
        if inference_id is not None:
            record[INFERENCE_ID] = inference_id
        return record
    record = {**ids, "score": score, "variant": variant.variant_name,
              "version": variant.version}
    if inference_id is not None:
        record = {INFERENCE_ID: inference_id, **record}
    if capture is not None and capture.sampled():
        body, content_type = output_fn([score], "application/json")
        capture.write(variant.variant_name, raw if isinstance(raw, bytes) else raw.encode(),
                      "application/json", body.encode(), content_type,
                      str(inference_id) if inference_id is not None else None)
    return record


def score_stream(router: ScoringRouter, source: Iterable[bytes | str], sink: IO[str], *,
                 capture: CaptureWriter | None = None, flush_each: bool = False
                 ) -> StreamSummary:
    """Score every non-blank line of `source` into `sink`; never stops on a bad line."""
    summary = StreamSummary()
    for number, raw in enumerate(source, start=1):
        if not raw.strip():
            continue
        summary.lines += 1
        record = score_line(router, raw.strip(), number, capture)
        if "error" in record:
            summary.errors += 1
        else:
            summary.scored += 1
        sink.write(json.dumps(record) + "\n")
        if flush_each:
            sink.flush()
        if capture is not None:
            capture.maybe_sync()
    sink.flush()
    return summary
