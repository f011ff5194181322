"""One rule for id and label columns on every scoring path (inference.RowReader).

One sample file, as `mlops data generate` writes it (the `transaction_id` id column first, the
`is_fraud` label last), goes through the local endpoint over HTTP, `mlops batch-score`,
`mlops stream` and the container's handlers (input_fn → predict_fn → output_fn): every path
passes the id through, ignores the label, and gives each row the score its features alone get.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mlops_kit.cli.app import app
from mlops_pipelines.steps import inference
from mlops_pipelines.steps.schema import FRAUD_SAMPLE_SCHEMA as S

from .conftest import ENDPOINT

ID, LABEL = "transaction_id", "is_fraud"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The sample file (header, ids, features, label) and its rows as the file holds them."""
    path = tmp_path_factory.mktemp("sample") / "transactions.csv"
    made = CliRunner().invoke(app, ["data", "generate", "--out", str(path), "--rows", "60",
                                    "--seed", "5"])
    assert made.exit_code == 0, made.output
    text = path.read_text()
    header, *lines = text.splitlines()
    assert header.split(",") == [ID, *S.features, LABEL]  # the layout the rule is about
    return path, lines, pd.read_csv(path, dtype={ID: str})


@pytest.fixture(scope="module")
def expected(sample, model_versions):
    """{id: score} from the features alone, in model order (the plain contract)."""
    _, _, frame = sample
    model = inference.model_fn(str(model_versions[3]))
    rows = frame[list(S.features)].astype(object).where(frame[list(S.features)].notna(), None)
    scores = inference.predict_fn(rows.values.tolist(), model)
    assert getattr(scores, "ids", None) is None  # features only: nothing to pass through
    return dict(zip(frame[ID], scores.astype(float)))


def csv_answer(text: str) -> dict[str, float]:
    """`id,score` lines → {id: score}; fails on a line that is not exactly that."""
    answer = {}
    for line in text.splitlines():
        record_id, score = line.split(",")
        answer[record_id] = float(score)
    return answer


def json_answer(text: str) -> dict[str, float]:
    predictions = json.loads(text)["predictions"]
    assert all(set(p) == {ID, "score"} for p in predictions)  # the label is not echoed
    return {p[ID]: p["score"] for p in predictions}


def records(frame: pd.DataFrame) -> list[dict]:
    """The file's rows as JSON records: id, features and label by name, missing as null."""
    return [{k: (None if pd.isna(v) else v) for k, v in row.items()}
            for row in json.loads(frame.to_json(orient="records"))]


def assert_same_scores(got: dict[str, float], expected: dict[str, float]) -> None:
    assert list(got) == list(expected)  # every id, in the file's order
    np.testing.assert_allclose(list(got.values()), list(expected.values()), rtol=1e-6)


def without_label(line: str) -> str:
    return line.rsplit(",", 1)[0]


def test_the_endpoint_over_http(server, sample, expected):
    _, lines, frame = sample
    for body in ("\n".join(lines), "\n".join(map(without_label, lines))):
        status, headers, answer = server.invoke(body)
        assert status == 200, answer
        assert headers["Content-Type"] == "text/csv"
        assert_same_scores(csv_answer(answer.decode()), expected)
    status, _, answer = server.invoke(json.dumps({"instances": records(frame)}),
                                      "application/json", Accept="application/json")
    assert status == 200, answer
    assert_same_scores(json_answer(answer.decode()), expected)
    # A row of the features alone keeps the plain answer: one score per line, no id.
    features_only = ",".join(without_label(lines[0]).split(",")[1:])
    status, _, answer = server.invoke(features_only)
    assert status == 200 and float(answer) == pytest.approx(expected[frame[ID][0]], rel=1e-6)


def test_the_endpoint_refuses_other_widths_and_unknown_keys(server, sample):
    _, lines, frame = sample
    status, _, answer = server.invoke(",".join(lines[0].split(",")[3:]))  # 15 of 18 values
    assert status == 424
    message = json.loads(answer)["OriginalMessage"]
    assert "expected 16 values per row" in message and f"({ID}, " in message
    record = {**records(frame)[0], "merchant": "typo"}
    status, _, answer = server.invoke(json.dumps([record]), "application/json")
    assert status == 424 and "unknown feature(s) merchant" in json.loads(answer)["Message"]


def test_batch_score(server_home, sample, expected, tmp_path):
    path, _, frame = sample
    target = tmp_path / "scored.csv"
    result = CliRunner().invoke(app, ["batch-score", "--input", str(path), "--output",
                                      str(target), "--endpoint", ENDPOINT],
                                env={"MLOPS_HOME": str(server_home)})
    assert result.exit_code == 0, result.output
    scored = pd.read_csv(target, dtype={ID: str})
    assert list(scored.columns) == list(frame.columns) + ["score", "variant", "version"]
    assert_same_scores(dict(zip(scored[ID], scored["score"])), expected)


def test_stream(server_home, sample, expected, tmp_path):
    _, _, frame = sample
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records(frame)))
    result = CliRunner().invoke(app, ["stream", "--input", str(source), "--output", str(target),
                                      "--endpoint", ENDPOINT, "--capture-percent", "0"],
                                env={"MLOPS_HOME": str(server_home)})
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in target.read_text().splitlines()]
    assert all(set(r) == {ID, "score", "variant", "version"} for r in out)
    assert_same_scores({r[ID]: r["score"] for r in out}, expected)


def test_the_container_handlers(model_versions, sample, expected, server):
    """SageMaker's path (endpoint and batch transform): the same bytes the local endpoint
    answers, because both end in output_fn."""
    _, lines, frame = sample
    model = inference.model_fn(str(model_versions[3]))
    body = "\n".join(lines).encode()
    text, media_type = inference.output_fn(
        inference.predict_fn(inference.input_fn(body, "text/csv"), model), "text/csv")
    assert media_type == "text/csv"
    assert_same_scores(csv_answer(text), expected)
    assert text.encode() == server.invoke(body)[2]
    payload = json.dumps(records(frame))
    text, media_type = inference.output_fn(
        inference.predict_fn(inference.input_fn(payload, "application/json"), model),
        "application/json")
    assert_same_scores(json_answer(text), expected)


def test_old_specs_without_id_columns_keep_the_features_only_rule(model_versions, sample,
                                                                  tmp_path):
    """A model trained before the spec recorded ids reads only feature rows: a row with the id
    is refused, not misread."""
    import shutil

    _, lines, _ = sample
    old_dir = tmp_path / "old"
    shutil.copytree(model_versions[3], old_dir)
    spec = json.loads((old_dir / inference.SPEC_FILE).read_text())
    assert spec["id_columns"] == [ID] and spec["columns"] == [ID, *S.features, LABEL]
    del spec["id_columns"], spec["columns"]
    (old_dir / inference.SPEC_FILE).write_text(json.dumps(spec))
    old = inference.model_fn(str(old_dir))
    with pytest.raises(inference.PayloadError, match="expected 16 values per row .* got 18"):
        inference.predict_fn(inference.input_fn(lines[0], "text/csv"), old)


def test_the_schema_declares_ids_and_the_data_order_once():
    from mlops_pipelines.steps.schema import DatasetSchema

    base = {"target": "y", "numeric": ["x"], "categorical": ["c"], "id_columns": ["key"]}
    assert DatasetSchema.from_dict(base).data_columns == ("key", "x", "c", "y")
    declared = DatasetSchema.from_dict({**base, "columns": ["x", "key", "y", "c"]})
    assert declared.data_columns == ("x", "key", "y", "c")
    assert declared.with_target("z").data_columns == ("x", "key", "z", "c")
    for bad, reason in (({"columns": ["x", "key", "y"]}, "must list each id"),
                        ({"id_columns": ["x"]}, "twice: x"),
                        ({"id_columns": ["score"]}, "clash with the scoring output")):
        with pytest.raises(ValueError, match=reason):
            DatasetSchema.from_dict({**base, **bad})
