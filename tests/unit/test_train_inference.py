import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mlops_pipelines.steps import _io, inference, train
from mlops_pipelines.steps.schema import FRAUD_SAMPLE_SCHEMA as S


def test_training_writes_model_spec_and_summary(trained, prepared):
    model_dir, summary = trained
    assert (model_dir / inference.MODEL_FILE).exists()
    spec = json.loads((model_dir / inference.SPEC_FILE).read_text())
    assert spec["features"] == list(S.features)
    assert set(spec["categorical"]) == set(S.categorical)
    assert 1 <= summary["best_round"] <= 60
    assert 0 < summary["validation_aucpr"] <= 1
    assert summary["model_sha256"] == _io.sha256_file(model_dir / inference.MODEL_FILE)
    assert _io.read_json(model_dir / "training.json")["run_id"] == ""  # untracked


def test_training_is_deterministic(prepared, tmp_path, trained):
    hp = dict(train.HYPERPARAMETER_DEFAULTS, num_round=60)
    again = train.run(prepared / "train", prepared / "validation", tmp_path / "m", tmp_path / "o", hp)
    assert again["model_sha256"] == trained[1]["model_sha256"]


def test_progress_callback_reports_each_round(prepared):
    seen = []
    frames = [pd.read_parquet(prepared / s / f"{s}.parquet") for s in ("train", "validation")]
    hp = dict(train.HYPERPARAMETER_DEFAULTS, num_round=5, early_stopping_rounds=5)
    train.train_model(*frames, S, hp, on_round=lambda d, t, a: seen.append((d, t)))
    assert seen == [(i, 5) for i in range(1, 6)]


def test_model_loads_back_in_the_serving_format(trained):
    import xgboost as xgb

    model_dir, _ = trained
    raw = (model_dir / inference.MODEL_FILE).read_bytes()
    assert raw[:1] == b"{"  # UBJSON object marker, readable by the 3.0-5 container
    booster = xgb.Booster()
    booster.load_model(str(model_dir / inference.MODEL_FILE))
    assert booster.feature_types == ["q"] * len(S.numeric) + ["c"] * len(S.categorical)


def test_row_encoding_matches_training_encoding(trained, prepared):
    model = inference.model_fn(str(trained[0]))
    test = pd.read_parquet(prepared / "test" / "test.parquet").head(300)
    test.loc[0, "channel"] = "carrier_pigeon"  # unseen category → missing
    matrix = train.encode_frame(test, model.spec)
    rows = test[list(S.features)].astype(object).where(test[list(S.features)].notna(), None)
    encoded = inference.encode(rows.values.tolist(), model)
    np.testing.assert_array_equal(np.isnan(matrix), np.isnan(encoded))
    np.testing.assert_allclose(np.nan_to_num(matrix, nan=-1), np.nan_to_num(encoded, nan=-1))
    batch = inference.predict_fn(matrix, model)
    assert inference.predict_fn(rows.values.tolist(), model) == pytest.approx(batch, rel=1e-6)


def test_csv_and_json_payloads_score_the_same(trained, prepared):
    model = inference.model_fn(str(trained[0]))
    row = pd.read_parquet(prepared / "test" / "test.parquet").iloc[0]
    values = ["" if pd.isna(row[f]) else row[f] for f in S.features]
    csv_body = ",".join(str(v) for v in values)
    by_csv = inference.predict_fn(inference.input_fn(csv_body.encode(), "text/csv"), model)
    named = {f: (None if v == "" else v) for f, v in zip(S.features, values)}
    by_json = inference.predict_fn(
        inference.input_fn(json.dumps({"instances": [named, named]}), "application/json"), model)
    assert by_json.tolist() == pytest.approx([by_csv[0]] * 2)
    body, content_type = inference.output_fn(by_json, "application/json")
    assert content_type == "application/json" and len(json.loads(body)["predictions"]) == 2
    body, content_type = inference.output_fn(by_csv, "text/csv")
    assert float(body) == pytest.approx(float(by_csv[0]), rel=1e-6)


@pytest.mark.parametrize("body,content_type,match,status", [
    (b"1,2,3", "text/csv", "expected 16 values", 400),
    (b"", "text/csv", "no rows", 400),
    (b"{not json", "application/json", "not valid JSON", 400),
    (b'{"instances": [{"bogus": 1}]}', "application/json", "unknown feature", 400),
    (b"1,2", "application/x-npy", "unsupported content type", 415),
    (b"\xff\xfe", "text/csv", "not UTF-8", 400),
])
def test_bad_payloads_get_a_clear_error(trained, body, content_type, match, status):
    model = inference.model_fn(str(trained[0]))
    with pytest.raises(inference.PayloadError, match=match) as caught:
        inference.predict_fn(inference.input_fn(body, content_type), model)
    # What the serving container answers: the toolkit reads status_code and message.
    assert (caught.value.status_code, caught.value.message) == (status, str(caught.value))


def test_payload_errors_are_the_toolkits_client_errors():
    from sagemaker_inference.errors import BaseInferenceToolkitError

    error = inference.PayloadError("row 0: expected 16 values")
    assert isinstance(error, BaseInferenceToolkitError) and isinstance(error, ValueError)
    assert (error.status_code, error.phrase, str(error)) == (
        400, "Bad Request", "row 0: expected 16 values")
    with pytest.raises(ValueError, match="client error"):
        inference.PayloadError("not a payload problem", 500)


def test_without_the_toolkit_payload_errors_keep_their_fields():
    """Batch scoring, the evaluation step and Lambdas import inference.py without the toolkit:
    PayloadError is then a plain exception with the same status_code, message and phrase."""
    script = (
        "import sys\n"
        "sys.modules['sagemaker_inference'] = None  # as if it were not installed\n"
        "from mlops_pipelines.steps import inference\n"
        "error = inference.PayloadError('bad', 415)\n"
        "assert 'sagemaker_inference' not in type(error).__mro__[1].__module__\n"
        "print(error.status_code, error.phrase, str(error), isinstance(error, ValueError))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "415 Unsupported Media Type bad True"


def test_a_payload_without_content_type_is_read_as_csv(trained, prepared):
    model = inference.model_fn(str(trained[0]))
    row = pd.read_parquet(prepared / "test" / "test.parquet").iloc[0]
    body = ",".join("" if pd.isna(row[f]) else str(row[f]) for f in S.features).encode()
    expected = inference.predict_fn(inference.input_fn(body, "text/csv"), model)
    for missing in (None, ""):
        assert inference.predict_fn(inference.input_fn(body, missing), model) == \
            pytest.approx(expected)


@pytest.mark.parametrize("accept,expected", [
    (None, inference.DEFAULT_ACCEPT), ("", inference.DEFAULT_ACCEPT),
    ("*/*", inference.DEFAULT_ACCEPT), ("text/csv; charset=utf-8", "text/csv"),
    ("TEXT/CSV", "text/csv"), ("text/*", "text/csv"), ("application/*", "application/json"),
    ("text/html, application/json;q=0.9", "application/json"),
    ("application/json, text/csv", "application/json"),
])
def test_output_fn_answers_exactly_csv_or_json_whatever_the_accept_spelling(accept, expected):
    scores = np.array([0.25, 0.5], dtype=np.float32)
    body, content_type = inference.output_fn(scores, accept)
    assert content_type == expected
    if expected == "text/csv":
        assert body == "0.25\n0.5"
    else:
        assert json.loads(body) == {"predictions": [{"score": 0.25}, {"score": 0.5}]}


def test_an_unsupported_accept_is_a_406_naming_it():
    with pytest.raises(inference.PayloadError, match="unsupported accept type 'image/png'") as e:
        inference.output_fn(np.array([0.5], dtype=np.float32), "image/png")
    assert e.value.status_code == 406


def test_non_numeric_value_is_named(trained):
    model = inference.model_fn(str(trained[0]))
    row = ["abc"] + ["1"] * (len(S.numeric) - 1) + ["grocery", "pos", "US", "debit"]
    with pytest.raises(inference.PayloadError, match="'amount' must be numeric"):
        inference.predict_fn(inference.input_fn(",".join(row), "text/csv"), model)
