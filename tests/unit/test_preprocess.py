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
