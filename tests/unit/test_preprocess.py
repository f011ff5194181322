import numpy as np
import pandas as pd
import pytest

from mlops_pipelines.steps import _io, preprocess
from mlops_pipelines.steps.schema import FRAUD_SAMPLE_SCHEMA, DatasetSchema

S = FRAUD_SAMPLE_SCHEMA


def validate(frame, **kw):
    return preprocess.validate(frame, S, min_rows=kw.get("min_rows", 1000),
                               min_class_rows=kw.get("min_class_rows", 30))


def test_valid_frame_passes_with_contract_dtypes(frame):
    out = validate(frame)
    assert len(out) == len(frame)
    assert all(out[c].dtype == np.float64 for c in S.numeric)
    assert set(out[S.target].unique()) == {0, 1}


def test_missing_columns_are_all_named(frame):
    with pytest.raises(_io.BadInputError, match="missing column.*amount.*channel"):
        validate(frame.drop(columns=["amount", "channel"]))


def test_wrong_type_names_column_and_value(frame):
    frame["amount"] = frame["amount"].astype(object)
    frame.loc[3, "amount"] = "twelve"
    with pytest.raises(_io.BadInputError) as error:
        validate(frame)
    assert "amount" in "\n".join(error.value.details)
    assert "twelve" in "\n".join(error.value.details)


def test_non_binary_label(frame):
    frame.loc[0, "is_fraud"] = 2
    with pytest.raises(_io.BadInputError) as error:
        validate(frame)
    assert "0 or 1" in str(error.value)


def test_missing_label(frame):
    frame["is_fraud"] = frame["is_fraud"].astype(float)
    frame.loc[0, "is_fraud"] = np.nan
    with pytest.raises(_io.BadInputError, match="missing labels: 1 row"):
        validate(frame)


def test_single_class(frame):
    frame["is_fraud"] = 0
    with pytest.raises(_io.BadInputError, match="single class"):
        validate(frame)


def test_too_few_rows_and_too_few_positives(frame):
    with pytest.raises(_io.BadInputError, match="too few rows: 10"):
        validate(frame.head(10))
    few = frame[frame["is_fraud"] == 0].head(1500)
    few = pd.concat([few, frame[frame["is_fraud"] == 1].head(5)])
    with pytest.raises(_io.BadInputError, match="too few rows of class 1"):
        validate(few)


def test_infinite_values(frame):
    frame.loc[1, "amount"] = np.inf
    with pytest.raises(_io.BadInputError, match="infinite"):
        validate(frame)


def test_split_is_stratified_deterministic_and_disjoint(frame):
    a = preprocess.split(frame, "is_fraud", validation_fraction=0.15, test_fraction=0.15, seed=1)
    b = preprocess.split(frame, "is_fraud", validation_fraction=0.15, test_fraction=0.15, seed=1)
    c = preprocess.split(frame, "is_fraud", validation_fraction=0.15, test_fraction=0.15, seed=2)
    for x, y in zip(a, b):
        assert x.equals(y)
    assert not a[2].equals(c[2])
    ids = [set(part["transaction_id"]) for part in a]
    assert sum(map(len, ids)) == len(frame) and not (ids[0] & ids[1] or ids[1] & ids[2])
    rate = frame["is_fraud"].mean()
    for part in a:
        assert part["is_fraud"].mean() == pytest.approx(rate, abs=0.01)
    assert len(a[2]) == pytest.approx(0.15 * len(frame), abs=2)


def test_split_fraction_bounds(frame):
    with pytest.raises(_io.BadInputError, match="fraction"):
        preprocess.split(frame, "is_fraud", validation_fraction=0.5, test_fraction=0.45, seed=1)


def test_run_writes_splits_schema_and_baseline(prepared, small_frame):
    baseline = _io.read_json(prepared / "baseline" / "baseline.json")
    assert set(baseline["features"]) == set(S.features)
    amount = baseline["features"]["amount"]
    assert amount["kind"] == "numeric" and len(amount["edges"]) == 9
    assert sum(amount["proportions"]) == pytest.approx(1)
    assert baseline["features"]["channel"]["kind"] == "categorical"
    assert len(baseline["data"]["sha256"]) == 64
    assert DatasetSchema.load(prepared / "train" / "schema.json") == S
    rows = sum(len(pd.read_parquet(prepared / s / f"{s}.parquet")) for s in preprocess.SPLITS)
    assert rows == len(small_frame)


def test_main_as_a_plain_process_with_remapped_paths(tmp_path, small_frame):
    import subprocess
    import sys

    _io.write_table(small_frame, tmp_path / "in" / "data.csv")
    done = subprocess.run([sys.executable, "-m", "mlops_pipelines.steps.preprocess",
                           "--input", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "test" / "test.parquet").exists()
    bad = subprocess.run([sys.executable, "-m", "mlops_pipelines.steps.preprocess",
                          "--input", str(tmp_path / "nowhere"), "--output-dir",
                          str(tmp_path / "out2")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "input not found" in bad.stderr
    assert not (tmp_path / "out2").exists()


def test_schema_file_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        DatasetSchema.load(tmp_path / "none.json")
    (tmp_path / "s.json").write_text('{"target": "y", "numeric": ["a", "a"], "categorical": []}')
    with pytest.raises(ValueError, match="twice"):
        DatasetSchema.load(tmp_path / "s.json")


# --- integer-coded categorical columns read as float ------------------------------------------

CODED = DatasetSchema(target="y", numeric=("x",), categorical=("code",))


def coded_frame_from_csv(tmp_path, rows: int = 60):
    """A CSV whose categorical column holds integer codes with gaps: pandas reads it as float64,
    the way real exports of such a column arrive."""
    lines = ["x,code,y"]
    for i in range(rows):
        code = "" if i % 5 == 4 else str(1 + i % 2)
        lines.append(f"{i / rows:.3f},{code},{i % 2}")
    (tmp_path / "coded.csv").write_text("\n".join(lines) + "\n")
    read = _io.read_table(tmp_path / "coded.csv")
    assert read["code"].dtype == np.float64 and read["code"].isna().any()
    return read


def validate_coded(frame):
    return preprocess.validate(frame, CODED, min_rows=10, min_class_rows=2)


def test_float_read_integer_codes_learn_integer_categories(tmp_path):
    from mlops_pipelines.steps import train

    validated = validate_coded(coded_frame_from_csv(tmp_path))
    assert set(validated["code"].dropna()) == {"1", "2"}
    assert validated["code"].isna().sum() == 12  # the gaps stay missing, not "nan"
    baseline = preprocess.build_baseline(validated, CODED, bins=4)
    assert baseline["features"]["code"]["categories"] == ["1", "2"]
    assert baseline["features"]["code"]["proportions"][-1] == pytest.approx(12 / 60)
    spec = train.build_feature_spec(validated, CODED)
    assert spec.categorical["code"] == ("1", "2")
    # Training straight from the float frame (no preprocess) learns the same vocabulary.
    assert train.build_feature_spec(coded_frame_from_csv(tmp_path), CODED).categorical == {
        "code": ("1", "2")}


def test_every_form_of_a_code_encodes_like_the_training_data(tmp_path):
    from mlops_pipelines.steps import inference, train

    raw = coded_frame_from_csv(tmp_path)
    spec = train.build_feature_spec(validate_coded(raw), CODED)
    model = inference.LoadedModel(booster=None, spec=spec)  # encoding needs no booster
    trained_rows = train.encode_frame(raw, spec)  # the float frame: code 1.0
    assert raw["code"][0] == 1.0 and trained_rows[0, 1] == 0.0
    for request_value in ("1", 1, 1.0, "1.0", np.int64(1), np.float32(1.0)):
        assert model.encode_row([0.0, request_value]) == [0.0, 0.0], repr(request_value)
        # The pandas twin agrees value for value, whatever the column's type.
        for column in (pd.Series([request_value], dtype=object), pd.Series([request_value])):
            frame = pd.DataFrame({"x": [0.0], "code": column})
            assert train.encode_frame(frame, spec)[0, 1] == 0.0, repr(request_value)
    assert model.encode_row([0.0, "2.0"])[1] == model.encode_row([0.0, 2])[1] == 1.0


def test_category_rule_keeps_real_strings_fractions_bools_and_missing():
    from mlops_pipelines.steps.inference import category_key

    assert {category_key(v) for v in ("1", 1, 1.0, "1.0", "1.", "1.00", np.int64(1),
                                      np.float32(1.0))} == {"1"}
    assert category_key(-0.0) == category_key("-0.0") == category_key(0) == "0"
    assert category_key(12345678.0) == category_key(np.float32(12345678.0)) == "12345678"
    for unchanged in ("01", "DE", " 1", "1e3", "2.5", "", "nan"):
        assert category_key(unchanged) == unchanged
    assert category_key(2.5) == "2.5"
    assert category_key(True) == "True" and category_key(np.False_) == "False"  # not "1"/"0"
    for missing in (None, float("nan"), np.float32("nan"), pd.NA, pd.NaT):
        assert category_key(missing) is None


def test_vectorised_categories_equal_the_per_value_rule():
    from mlops_pipelines.steps.inference import category_key
    from mlops_pipelines.steps.schema import category_names

    columns = [
        pd.Series([1.0, np.nan, 2.0, 1.0]),
        pd.Series([1, 2, 1]),
        pd.Series([1, None], dtype="Int64"),
        pd.Series([True, False, True]),
        pd.Series(["1", "1.0", None, "DE"]),
        pd.Series([True, 1, 1.0, "1", None, "x"], dtype=object),  # True must not merge with 1
        pd.Series([np.float32(1e8), np.float32(0.5)], dtype=np.float32),
    ]
    for column in columns:
        assert category_names(column).tolist() == [category_key(v) for v in column]


def test_serving_training_and_drift_share_one_category_rule():
    """One definition: a rule that differed would make the monitor count what serving does
    not score. Both code bundles ship it."""
    from mlops_kit.core import categories, drift
    from mlops_pipelines import bundle
    from mlops_pipelines.steps import inference, train

    assert drift.category_key is inference.category_key is train.category_key \
        is categories.category_key
    assert "mlops_kit/core/categories.py" in bundle.inference_bundle().members
    assert "mlops_kit/core/categories.py" in bundle.steps_bundle().members


def test_drift_monitor_counts_csv_and_json_codes_in_one_bucket(tmp_path):
    import json
    from datetime import datetime, timezone

    from mlops_kit.core import drift
    from mlops_kit.monitoring import drift_monitor

    validated = validate_coded(coded_frame_from_csv(tmp_path))
    baseline = preprocess.build_baseline(validated, CODED, bins=4)
    categories = baseline["features"]["code"]["categories"]

    def record(content_type: str, body: str) -> dict:
        return {"captureData": {
            "endpointInput": {"observedContentType": content_type, "data": body},
            "endpointOutput": {"observedContentType": "text/csv", "data": "0.5"}}}

    ones = [record("text/csv", "0.1,1"), record("text/csv", "0.1,1.0"),
            record("application/json", json.dumps([0.1, 1])),
            record("application/json", json.dumps([0.1, 1.0])),
            record("application/json", json.dumps({"instances": [{"x": 0.1, "code": "1.0"}]}))]
    decoded = drift_monitor.decode_capture(ones, ("x", "code"))
    assert decoded.skipped == 0 and decoded.columns["code"] == ["1", "1.0", 1, 1.0, "1.0"]
    assert drift.categorical_counts(decoded.columns["code"], categories).tolist() == [5, 0, 0, 0]

    # Live traffic with the training mix (2:2:1 of 1, 2, missing), sent as CSV text and as JSON
    # numbers: the monitor sees no drift. Before the rule every code was "unseen".
    traffic = [record("text/csv", "0.1,1"), record("application/json", "[0.1, 2.0]"),
               record("application/json", "[0.1, 1]"), record("text/csv", "0.1,2.0"),
               record("text/csv", "0.1,")] * 60
    score_baseline = drift.numeric_baseline(np.linspace(0, 1, 100), 4)
    champion = drift_monitor.ChampionBaseline(1, "v1", baseline["features"], ("x", "code"),
                                              score_baseline)
    decoded = drift_monitor.decode_capture(traffic, champion.feature_order)
    metrics = drift_monitor.compute_metrics(champion, {"v1": decoded}, endpoint_name="e",
                                            at=datetime(2025, 1, 1, tzinfo=timezone.utc))
    code_psi = [m.value for m in metrics
                if m.name == "FeaturePSI" and m.dimensions.get("Feature") == "code"]
    assert code_psi == [pytest.approx(0.0, abs=1e-6)]


def test_old_spec_and_baseline_with_float_categories_still_match(tmp_path):
    import json

    from mlops_kit.core import drift
    from mlops_pipelines.steps import inference, train

    old = {"features": ["x", "code"], "target": "y", "categorical": {"code": ["1.0", "2.0"]}}
    (tmp_path / inference.SPEC_FILE).write_text(json.dumps(old))
    spec = inference.FeatureSpec.from_dict(json.loads((tmp_path / inference.SPEC_FILE).read_text()))
    assert spec.categorical["code"] == ("1", "2")
    model = inference.LoadedModel(booster=None, spec=spec)
    for value in ("1", 1, "1.0", 1.0):
        assert model.encode_row([0.0, value]) == [0.0, 0.0]
    # A spec object built by hand with the old names (not through from_dict) matches as well.
    by_hand = inference.FeatureSpec(("x", "code"), {"code": ("1.0", "2.0")}, "y")
    assert inference.LoadedModel(None, by_hand).encode_row([0.0, "2"]) == [0.0, 1.0]
    assert train.encode_frame(pd.DataFrame({"x": [0.0, 0.0], "code": ["2", None]}),
                              by_hand)[:, 1].tolist()[0] == 1.0
    # A baseline written before the fix counts live "1" in its "1.0" bin, not as unseen.
    assert drift.categorical_counts(["1", 1, "2"], ["1.0", "2.0"]).tolist() == [2, 1, 0, 0]


def test_adhoc_drift_compares_float_written_codes_with_text_codes():
    from mlops_kit.monitoring.adhoc import compare_frames

    reference = pd.DataFrame({"code": pd.Series(["1", "2"] * 50, dtype=object)})
    current = pd.DataFrame({"code": pd.Series(["1.0", "2.0"] * 50, dtype=object)})
    report = compare_frames(reference, current, workers=1)
    assert report["features"]["code"]["kind"] == "categorical"
    assert report["features"]["code"]["psi"] == pytest.approx(0.0, abs=1e-9)


def test_mlops_drift_on_the_sample_data_leaves_out_its_label_and_id(tmp_path):
    """The label is never a drifting feature, nor the id column: the schema says which they
    are (the sample data's by default, `--schema` otherwise)."""
    import json

    from typer.testing import CliRunner

    from mlops_kit.cli.app import app
    from mlops_kit.data.synthetic import DriftSpec, generate

    generate(3000, seed=1).to_csv(tmp_path / "ref.csv", index=False)
    generate(3000, seed=2, drift=DriftSpec("covariate", 1.0)).to_csv(tmp_path / "cur.csv",
                                                                    index=False)
    result = CliRunner().invoke(app, ["drift", "--reference", str(tmp_path / "ref.csv"),
                                      "--current", str(tmp_path / "cur.csv"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert "is_fraud" not in report["features"] and "transaction_id" not in report["features"]
    assert report["skipped_label"] == ["is_fraud"] and report["skipped_ids"] == ["transaction_id"]
    assert "amount" in report["features"]
    (tmp_path / "schema.json").write_text(json.dumps(
        {"target": "amount", "numeric": ["account_age_days"], "categorical": []}))
    custom = CliRunner().invoke(app, ["drift", "--reference", str(tmp_path / "ref.csv"),
                                      "--current", str(tmp_path / "cur.csv"), "--json",
                                      "--schema", str(tmp_path / "schema.json")])
    assert json.loads(custom.stdout)["skipped_label"] == ["amount"]
    assert "is_fraud" in json.loads(custom.stdout)["features"]
