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
