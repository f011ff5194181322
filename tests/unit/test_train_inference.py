import json

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


@pytest.mark.parametrize("body,content_type,match", [
    (b"1,2,3", "text/csv", "expected 16 values"),
    (b"", "text/csv", "no rows"),
    (b"{not json", "application/json", "not valid JSON"),
    (b'{"instances": [{"bogus": 1}]}', "application/json", "unknown feature"),
    (b"1,2", "application/x-npy", "unsupported content type"),
    (b"\xff\xfe", "text/csv", "not UTF-8"),
])
def test_bad_payloads_get_a_clear_error(trained, body, content_type, match):
    model = inference.model_fn(str(trained[0]))
    with pytest.raises(inference.PayloadError, match=match):
        inference.predict_fn(inference.input_fn(body, content_type), model)


def test_non_numeric_value_is_named(trained):
    model = inference.model_fn(str(trained[0]))
    row = ["abc"] + ["1"] * (len(S.numeric) - 1) + ["grocery", "pos", "US", "debit"]
    with pytest.raises(inference.PayloadError, match="'amount' must be numeric"):
        inference.predict_fn(inference.input_fn(",".join(row), "text/csv"), model)
