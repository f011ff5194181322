"""Batch scoring and streaming: same router, same scores as the serving handlers."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from mlops_kit.cli.serving import register
from mlops_kit.serving.batch import BatchInputError, score_file
from mlops_kit.serving.router import ScoringRouter
from mlops_kit.endpoint_state import load_state, save_state
from mlops_kit.serving.stream import score_stream
from mlops_pipelines.steps import inference

from .conftest import ENDPOINT


def handler_scores(frame: pd.DataFrame, model_dir) -> np.ndarray:
    model = inference.model_fn(str(model_dir))
    features = list(model.spec.features)
    rows = frame[features].astype(object).where(frame[features].notna(), None).values.tolist()
    return inference.predict_fn(rows, model)


@pytest.mark.parametrize("suffix_in,suffix_out", [(".csv", ".csv"), (".parquet", ".parquet"),
                                                  (".csv", ".parquet")])
def test_batch_scores_equal_the_in_process_handlers(home, sample_rows, model_versions, tmp_path,
                                                    suffix_in, suffix_out):
    _, _, frame = sample_rows
    source = tmp_path / f"in{suffix_in}"
    frame.to_csv(source, index=False) if suffix_in == ".csv" else frame.to_parquet(source)
    target = tmp_path / "out" / f"scored{suffix_out}"
    router = ScoringRouter(home, ENDPOINT)
    summary = score_file(router, source, target, chunk_rows=64)
    assert (summary.rows, summary.chunks, summary.variants) == (len(frame), 4, {"v3": 3})
    scored = pd.read_csv(target) if suffix_out == ".csv" else pd.read_parquet(target)
    assert list(scored.columns) == list(frame.columns) + ["score", "variant", "version"]
    np.testing.assert_allclose(scored["score"].to_numpy(np.float32),
                               handler_scores(frame, model_versions[3]), rtol=1e-6)
    assert set(scored["variant"]) == {"v3"} and set(scored["version"]) == {3}
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temp file left


def test_batch_uses_the_champion_and_follows_a_rollback_between_chunks(home, sample_rows,
                                                                       tmp_path):
    _, _, frame = sample_rows
    source = tmp_path / "in.parquet"
    frame.to_parquet(source)
    router = ScoringRouter(home, ENDPOINT)
    save_state(home, load_state(home, ENDPOINT).with_weights({"v3": 0.0, "v2": 1.0}))
    summary = score_file(router, source, tmp_path / "a.parquet", chunk_rows=100)
    assert summary.variants == {"v2": 2}
    pinned = score_file(router, source, tmp_path / "b.parquet", variant="v1")
    assert pinned.variants == {"v1": 1}


def test_batch_failures_leave_nothing_behind(home, sample_rows, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    _, _, frame = sample_rows
    router = ScoringRouter(home, ENDPOINT)
    bad = work / "bad.csv"
    frame.drop(columns=["amount"]).to_csv(bad, index=False)
    with pytest.raises(BatchInputError, match="amount"):
        score_file(router, bad, work / "out.csv")
    text = frame.astype({"amount": object})
    text.loc[150, "amount"] = "lots"
    text.to_csv(bad, index=False)
    with pytest.raises(BatchInputError, match="lots"):
        score_file(router, bad, work / "out.csv", chunk_rows=50)
    with pytest.raises(BatchInputError, match="not found"):
        score_file(router, work / "missing.csv", work / "out.csv")
    assert sorted(p.name for p in work.iterdir()) == ["bad.csv"]


def test_stream_scores_lines_and_reports_bad_ones_without_stopping(home, sample_rows,
                                                                   model_versions):
    _, objects, frame = sample_rows
    good = [{"inferenceId": f"t{i}", **o} for i, o in enumerate(objects[:3])]
    lines = [json.dumps(good[0]), "{not json", json.dumps({"inferenceId": "t9", "amount": "x"}),
             "", json.dumps([1, 2]), json.dumps(good[1]),
             json.dumps({"inferenceId": "t8", "bogus": 1}), json.dumps(good[2])]
    sink = io.StringIO()
    summary = score_stream(ScoringRouter(home, ENDPOINT),
                           io.BytesIO("\n".join(lines).encode()), sink)
    out = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert (summary.scored, summary.errors) == (3, 4)
    scores = [r for r in out if "score" in r]
    assert [r["inferenceId"] for r in scores] == ["t0", "t1", "t2"]
    assert {(r["variant"], r["version"]) for r in scores} == {("v3", 3)}
    expected = handler_scores(frame.head(3), model_versions[3])
    assert [r["score"] for r in scores] == pytest.approx(expected.tolist(), rel=1e-6)
    errors = [r for r in out if "error" in r]
    assert [r["line"] for r in errors] == [2, 3, 5, 7]
    assert "not valid JSON" in errors[0]["error"]
    assert errors[1] == {"line": 3, "inferenceId": "t9",
                         "error": "feature 'amount' must be numeric, got 'x'"}
    assert "bogus" in errors[3]["error"]


def test_cli_commands_register_and_run(home, sample_rows, tmp_path, monkeypatch):
    _, objects, frame = sample_rows
    app = typer.Typer()
    register(app)
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.setenv("MLOPS_ENDPOINT", ENDPOINT)
    runner = CliRunner()
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)
    result = runner.invoke(app, ["batch-score", "--input", str(source), "--output",
                                 str(tmp_path / "out.csv"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == len(frame)
    result = runner.invoke(app, ["batch-score", "--input", str(source), "--output",
                                 str(tmp_path / "x.csv"), "--endpoint", "nowhere"])
    assert result.exit_code == 2 and "no deployed state" in result.output
    stream_in = tmp_path / "in.jsonl"
    stream_in.write_text(json.dumps(objects[0]) + "\n[]\n")
    result = runner.invoke(app, ["stream", "--input", str(stream_in), "--output",
                                 str(tmp_path / "out.jsonl")])
    # A record that cannot be scored is bad input: exit 2, with the count, the rest scored.
    assert result.exit_code == 2, result.output
    assert "1 scored, 1 error record(s)" in result.output
    records = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert records[0]["variant"] == "v3" and "error" in records[1]
    stream_in.write_text(json.dumps(objects[0]) + "\n")
    clean = runner.invoke(app, ["stream", "--input", str(stream_in), "--output",
                                str(tmp_path / "out.jsonl")])
    assert clean.exit_code == 0, clean.output
    help_text = runner.invoke(app, ["--help"]).output
    assert all(name in help_text for name in ("serve", "batch-score", "stream"))


def test_arrow_encoding_equals_encode_frame(sample_rows, model_versions):
    import pyarrow as pa

    from mlops_kit.serving.batch import encode_table
    from mlops_pipelines.steps.train import encode_frame

    _, _, frame = sample_rows
    frame = frame.copy()
    frame.loc[frame.index[0], "channel"] = "carrier_pigeon"  # unseen category
    frame.loc[frame.index[1], "country"] = None
    frame.loc[frame.index[2], "amount"] = None
    frame["txn_count_1h"] = frame["txn_count_1h"].fillna(0).astype("int64") + 2**25 + 1
    spec = inference.model_fn(str(model_versions[3])).spec
    expected = encode_frame(frame, spec)
    for table in (pa.Table.from_pandas(frame),
                  pa.Table.from_pandas(frame.astype({"channel": "category"}))):
        np.testing.assert_array_equal(encode_table(table, spec), expected)
    # a categorical column stored as numbers goes through encode_frame itself
    numeric_codes = frame.assign(card_type=1.0)
    np.testing.assert_array_equal(encode_table(pa.Table.from_pandas(numeric_codes), spec),
                                  encode_frame(numeric_codes, spec))


def test_stream_can_capture_like_the_endpoint(home, sample_rows, tmp_path):
    from mlops_kit.serving.capture import CaptureWriter, read_capture

    _, objects, _ = sample_rows
    lines = [json.dumps({"inferenceId": "s1", **objects[0]}), "{bad"]
    with CaptureWriter(home, ENDPOINT, writer_id="stream") as capture:
        score_stream(ScoringRouter(home, ENDPOINT), lines, io.StringIO(), capture=capture)
    records, skipped = read_capture(home / "capture")
    assert skipped == 0 and len(records) == 1  # errors are not captured
    (record,) = records
    assert (record.variant, record.inference_id, record.input.encoding) == ("v3", "s1", "JSON")
    assert json.loads(record.output.text())["predictions"][0]["score"] > 0


def test_arrow_encoding_reads_integer_codes_as_the_endpoint_does():
    """A categorical column of integer codes written as text ("1.0" from a float column, "1"
    from an int one) encodes like a request to the endpoint: both name the category "1"."""
    import pyarrow as pa

    from mlops_kit.serving.batch import encode_table

    spec = inference.FeatureSpec(features=("amount", "code"),
                                 categorical={"code": ("1", "2", "3")})
    model = inference.LoadedModel(booster=None, spec=spec)
    texts = ["1", "1.0", "2.", "3.00", "-0.0", "x", "2.5", None]
    table = pa.table({"amount": pa.array([1.5] * len(texts), pa.float64()),
                      "code": pa.array(texts, pa.string())})
    expected = np.array([model.encode_row([1.5, text]) for text in texts], np.float32)
    np.testing.assert_array_equal(encode_table(table, spec), expected)
    assert encode_table(table, spec)[:4, 1].tolist() == [0.0, 0.0, 1.0, 2.0]
