"""Captured requests that carry ids are drift-monitored like any other: the drift monitor reads
a captured row by the endpoint's own rule (`inference.RowReader`: a row in the data's column
order has its ids passed through and its label dropped), and an `id,score` answer by its score.
Before, such a request was skipped as "wrong number of values"."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone

import numpy as np

from mlops_pipelines.steps.inference import FeatureSpec, RowReader
from mlops_pipelines.steps.schema import FRAUD_SAMPLE_SCHEMA

from mlops_kit.core import drift
from mlops_kit.monitoring.drift_monitor import (MIN_ROWS_FOR_DRIFT, ChampionBaseline,
                                                compute_metrics, decode_capture)

SCHEMA = FRAUD_SAMPLE_SCHEMA
FEATURES = SCHEMA.features


def baseline_documents() -> tuple[dict, dict]:
    """baseline.json and evaluation.json as the pipeline writes them (the schema section
    names the ids and the label, not the column order)."""
    rng = np.random.default_rng(1)
    features = {name: drift.numeric_baseline(rng.normal(size=500), 10)
                for name in SCHEMA.numeric}
    features.update({name: drift.categorical_baseline(["a", "b", "c"] * 100)
                     for name in SCHEMA.categorical})
    baseline = {"features": features,
                "schema": {"target": SCHEMA.target, "numeric": list(SCHEMA.numeric),
                           "categorical": list(SCHEMA.categorical),
                           "id_columns": list(SCHEMA.id_columns)}}
    evaluation = {"score_baseline": drift.numeric_baseline(rng.beta(1, 20, 500), 10)}
    return baseline, evaluation


def champion() -> ChampionBaseline:
    return ChampionBaseline.from_documents(3, "v3", *baseline_documents())


def sample_row(i: int) -> dict:
    """One row of the sample data: its id, features and label."""
    row = {name: round(0.1 * i + k, 3) for k, name in enumerate(SCHEMA.numeric)}
    row.update({name: "abc"[(i + k) % 3] for k, name in enumerate(SCHEMA.categorical)})
    return {"transaction_id": f"tx-{i:04d}", **row, "is_fraud": i % 2}


def csv_line(values) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(values)
    return out.getvalue()


def capture(input_type: str, body: str, output_type: str, answer: str,
            inference_id: str = "req-1") -> dict:
    return {"captureData": {
        "endpointInput": {"observedContentType": input_type, "mode": "INPUT", "data": body,
                          "encoding": "CSV" if input_type == "text/csv" else "JSON"},
        "endpointOutput": {"observedContentType": output_type, "mode": "OUTPUT",
                           "data": answer, "encoding": "CSV"}},
        "eventMetadata": {"eventId": "e", "inferenceId": inference_id}}


def features_only(rows: list[dict]) -> dict:
    body = "\n".join(csv_line([r[n] for n in FEATURES]) for r in rows)
    return capture("text/csv", body, "text/csv", "\n".join("0.25" for _ in rows))


def test_rows_in_the_data_order_decode_as_the_features_only_rows_do():
    rows = [sample_row(i) for i in range(3)]
    order = SCHEMA.data_columns
    with_label = capture("text/csv", "\n".join(csv_line([r[c] for c in order]) for r in rows),
                         "text/csv", "\n".join(f"{r['transaction_id']},0.25" for r in rows))
    without_label = capture(
        "text/csv", "\n".join(csv_line([r[c] for c in order if c != "is_fraud"]) for r in rows),
        "text/csv", "\n".join(f"{r['transaction_id']},0.25" for r in rows))
    json_records = capture("application/json", json.dumps({"instances": rows}),
                           "application/json", json.dumps({"predictions": [
                               {"transaction_id": r["transaction_id"], "score": 0.25}
                               for r in rows]}))
    json_features_only = capture("application/json", json.dumps(
        {"instances": [{n: r[n] for n in FEATURES} for r in rows]}), "application/json",
        json.dumps({"predictions": [{"score": 0.25} for _ in rows]}))
    order_of = champion().feature_order

    for plain, carrying_ids in ((features_only(rows), with_label),
                                (features_only(rows), without_label),
                                (json_features_only, json_records)):
        expected = decode_capture([plain], order_of)
        assert expected.skipped == 0 and len(expected.scores) == 3
        decoded = decode_capture([carrying_ids], order_of)
        assert decoded.skipped_reasons == {}
        assert decoded.columns == expected.columns
        assert decoded.scores == [0.25, 0.25, 0.25]


def test_the_features_read_are_the_ones_the_endpoint_scores():
    """The drift monitor's reading of a data-order row is RowReader's, value for value."""
    reader = RowReader(FeatureSpec(FEATURES, {}, SCHEMA.target, SCHEMA.id_columns,
                                   SCHEMA.data_columns))
    row = sample_row(7)
    values = [str(row[c]) for c in SCHEMA.data_columns]
    scored, ids = reader.split_values(values)
    decoded = decode_capture([capture("text/csv", csv_line(values), "text/csv",
                                      "tx-0007,0.5")], champion().feature_order)
    assert ids == ("tx-0007",)
    assert [decoded.columns[name][0] for name in FEATURES] == list(scored)
    assert decoded.scores == [0.5] and decoded.inference_ids == ["req-1"]


def test_drift_is_computed_on_requests_that_carry_ids():
    order = SCHEMA.data_columns
    records = [capture("text/csv", csv_line([sample_row(i)[c] for c in order]), "text/csv",
                       f"tx-{i:04d},0.1", inference_id=f"req-{i}")
               for i in range(MIN_ROWS_FOR_DRIFT)]
    baseline = champion()
    decoded = decode_capture(records, baseline.feature_order)
    assert decoded.skipped == 0 and len(decoded.scores) == MIN_ROWS_FOR_DRIFT
    data = compute_metrics(baseline, {"v3": decoded}, endpoint_name="fraud",
                           at=datetime(2026, 12, 1, tzinfo=timezone.utc))
    psi = {d.dimensions.get("Feature") for d in data if d.name == "FeaturePSI"}
    assert psi == set(FEATURES)
    assert any(d.name == "FeaturePSIMax" for d in data)


def test_a_width_neither_layout_has_is_still_skipped():
    row = sample_row(1)
    body = csv_line([row[c] for c in SCHEMA.data_columns] + ["extra"])
    decoded = decode_capture([capture("text/csv", body, "text/csv", "tx-0001,0.1")],
                             champion().feature_order)
    assert decoded.scores == [] and decoded.skipped_reasons == {"wrong number of values": 1}
