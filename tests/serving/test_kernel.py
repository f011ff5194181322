"""The request-path kernel gives exactly what the serving handlers give, only faster."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops_kit.serving.kernel import DirectPredictor, ModelKernel, csv_rows
from mlops_pipelines.steps import inference
from mlops_pipelines.steps.inference import PayloadError

FIELD = st.text(alphabet=st.sampled_from(list("0123456789.-eE ,\"\r\nabcxyz")), max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(FIELD, max_size=6).map(lambda parts: ",".join(parts)))
def test_csv_tokenizer_matches_csv_reader(text):
    body = text.encode()
    try:
        expected = inference.parse_rows(body, "text/csv")
    except PayloadError as exc:
        with pytest.raises(PayloadError, match=str(exc)):
            csv_rows(body)
        return
    except csv.Error:  # parse_rows lets csv.Error out (a 500); the kernel makes it a 400
        with pytest.raises(PayloadError, match="not valid CSV"):
            csv_rows(body)
        return
    assert csv_rows(body) == expected


@pytest.mark.parametrize("body", [b"1,2\n3,4\n", b"1,2\r\n3,4\r\n", b"\n\n1,2\n\n", b",,\n",
                                  b"a,\"b,c\"\n"])
def test_csv_tokenizer_edge_cases(body):
    assert csv_rows(body) == inference.parse_rows(body, "text/csv")


@pytest.mark.parametrize("body,reason", [(b"", "no rows"), (b"\n\n", "no rows"),
                                         (b"\xff\xfe", "not UTF-8"), (b"x\ry", "not valid CSV")])
def test_csv_tokenizer_errors(body, reason):
    with pytest.raises(PayloadError, match=reason):
        csv_rows(body)


@pytest.fixture(scope="module")
def model(model_versions):
    return inference.model_fn(str(model_versions[3]))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(1, 100), seed=st.integers(0, 2**31 - 1))
def test_direct_predictor_is_bit_identical_to_inplace_predict(model, rows, seed):
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(rows, model.width)).astype(np.float32) * 100
    matrix[rng.random(matrix.shape) < 0.2] = np.nan
    matrix[:, -4:] = rng.integers(-1, 6, size=(rows, 4))  # categorical codes, some unknown
    direct = DirectPredictor(model.booster)
    np.testing.assert_array_equal(direct(matrix),
                                  model.booster.inplace_predict(matrix, validate_features=False))


def test_kernel_scores_payloads_like_the_handlers(model, sample_rows):
    lines, objects, _ = sample_rows
    kernel = ModelKernel(model)
    assert isinstance(kernel.predict, DirectPredictor)
    body = "\n".join(lines).encode()
    expected = inference.predict_fn(inference.input_fn(body, "text/csv"), model)
    np.testing.assert_array_equal(kernel.score_payload(body, "text/csv"), expected)
    np.testing.assert_array_equal(kernel.score_rows(objects), expected)
    assert kernel.score_features(objects[0]) == pytest.approx(float(expected[0]), rel=0)


VALUE = st.one_of(st.sampled_from(["", " ", "1", "-2.5", "1e3", "nan", "inf", "-inf", "abc",
                                   "pos", "online", " pos", "DE", "credit", "1_000", "0x10",
                                   "\u00a0", "3.4e38", "1e39"]),
                  st.floats(allow_nan=True, allow_infinity=True).map(str))


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # 1e39 → inf
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(VALUE, min_size=15, max_size=17), min_size=1, max_size=3))
def test_fast_encoding_equals_inference_encode(model, rows):
    kernel = ModelKernel(model)
    body = "\n".join(",".join(row) for row in rows).encode()
    try:
        expected = inference.encode(inference.input_fn(body, "text/csv"), model)
    except PayloadError as exc:
        with pytest.raises(PayloadError) as caught:
            kernel.encode_payload(body, "text/csv")
        assert str(caught.value) == str(exc)
        return
    got = kernel.encode_payload(body, "text/csv")
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == expected.dtype and got.shape == expected.shape


def test_direct_predictor_takes_any_layout(model):
    matrix = np.arange(3 * model.width * 2, dtype=np.float64).reshape(3, model.width * 2)
    view = matrix[:, ::2]  # float64, not contiguous
    direct = DirectPredictor(model.booster)
    np.testing.assert_array_equal(direct(view), model.booster.inplace_predict(
        np.ascontiguousarray(view, dtype=np.float32), validate_features=False))


# --- integer-coded categorical features (read as float at training) ---------------------------

@pytest.fixture(scope="module")
def coded_model(tmp_path_factory):
    """A model trained on a frame whose categorical column holds integer codes with gaps, read
    from CSV (so float64, 1.0/2.0/3.0/NaN), the code deciding the label; and that frame."""

    from mlops_pipelines.steps import _io, train
    from mlops_pipelines.steps.schema import DatasetSchema

    schema = DatasetSchema(target="y", numeric=("x",), categorical=("code",))
    rng = np.random.default_rng(7)
    codes = rng.integers(1, 4, size=600)
    lines = ["x,code,y"] + [f"{rng.random():.4f},{'' if i % 7 == 0 else c},{int(c == 2)}"
                            for i, c in enumerate(codes)]
    root = tmp_path_factory.mktemp("coded")
    (root / "data.csv").write_text("\n".join(lines) + "\n")
    frame = _io.read_table(root / "data.csv")
    assert frame["code"].dtype == np.float64
    hp = {**train.HYPERPARAMETER_DEFAULTS, "num_round": 20, "early_stopping_rounds": 5}
    booster, spec, _ = train.train_model(frame, frame, schema, hp)
    train.save_model(booster, spec, root / "model")
    return inference.model_fn(str(root / "model")), frame, root


CODE_ONE_PAYLOADS = [
    (b"0.5,1", "text/csv"), (b"0.5,1.0", "text/csv"), (b"0.5,1.", "text/csv"),
    (b"[0.5, 1]", "application/json"), (b"[0.5, 1.0]", "application/json"),
    (b'[0.5, "1"]', "application/json"), (b'[0.5, "1.0"]', "application/json"),
    (b'{"instances": [{"x": 0.5, "code": 1}]}', "application/json"),
]


def test_coded_model_learns_integer_categories(coded_model):
    model, _, _ = coded_model
    assert model.spec.categorical["code"] == ("1", "2", "3")


def test_every_form_of_a_code_scores_like_training_on_kernel_and_handlers(coded_model):
    import pandas as pd

    from mlops_pipelines.steps import train

    model, _, _ = coded_model
    kernel = ModelKernel(model)
    as_trained = train.encode_frame(pd.DataFrame({"x": [0.5], "code": [1.0]}), model.spec)
    assert as_trained.tolist() == [[0.5, 0.0]]
    expected = inference.predict_fn(as_trained, model)
    for body, content_type in CODE_ONE_PAYLOADS:
        handlers = inference.predict_fn(inference.input_fn(body, content_type), model)
        np.testing.assert_array_equal(handlers, expected, err_msg=repr(body))
        np.testing.assert_array_equal(kernel.encode_payload(body, content_type), as_trained,
                                      err_msg=repr(body))
        np.testing.assert_array_equal(kernel.score_payload(body, content_type), expected,
                                      err_msg=repr(body))
    # An unknown code still reads as missing, as it always did, not as some other category.
    missing = train.encode_frame(pd.DataFrame({"x": [0.5], "code": [np.nan]}), model.spec)
    assert np.isnan(kernel.encode_payload(b"0.5,4.0", "text/csv")[0, 1])
    np.testing.assert_array_equal(kernel.score_payload(b"0.5,4", "text/csv"),
                                  inference.predict_fn(missing, model))


def test_kernel_scores_an_old_spec_with_float_categories_like_a_new_one(coded_model, tmp_path):
    """A model registered before the fix stored "1.0", "2.0", "3.0": requests "1" now match."""
    import json
    import shutil

    model, _, root = coded_model
    old_dir = tmp_path / "old"
    shutil.copytree(root / "model", old_dir)
    spec = json.loads((old_dir / inference.SPEC_FILE).read_text())
    spec["categorical"]["code"] = ["1.0", "2.0", "3.0"]
    (old_dir / inference.SPEC_FILE).write_text(json.dumps(spec))
    old = inference.model_fn(str(old_dir))
    old_kernel, new_kernel = ModelKernel(old), ModelKernel(model)
    np.testing.assert_array_equal(old_kernel.encode_payload(b"0.5,1\n0.5,3", "text/csv"),
                                  [[0.5, 0.0], [0.5, 2.0]])
    for body, content_type in CODE_ONE_PAYLOADS + [(b"0.5,2\n0.5,3.0", "text/csv")]:
        np.testing.assert_array_equal(old_kernel.score_payload(body, content_type),
                                      new_kernel.score_payload(body, content_type))
        np.testing.assert_array_equal(
            old_kernel.score_payload(body, content_type),
            inference.predict_fn(inference.input_fn(body, content_type), old))
