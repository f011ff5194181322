"""The request-path kernel: the serving handlers' semantics without their per-call overheads.

`inference.py` defines what a payload means (`input_fn`, `encode`, `predict_fn`, `output_fn`);
this module scores exactly the same way, faster, for the one-row requests an endpoint mostly gets:

* CSV tokenising: a payload without quotes is split on newlines and commas, which yields the
  very rows `csv.reader` yields; anything else (quotes, a lone CR) goes through `input_fn`.
* Encoding CSV rows: `LoadedModel.encode_row`'s rules inlined for text values (blank → NaN,
  `float(value)` for numbers, the vocabulary index of `category_key(value)` for categories, so
  "1.0" finds "1"). At the first row it does not accept outright (another width, such as a row
  with id columns, not a number, infinite) the whole payload goes through
  `inference.encode_rows`, which applies the id-column rule (`RowReader`) or raises the usual
  PayloadError with the usual message. Scores carry the ids rows sent (`inference.Scores`).
* Prediction: `Booster.inplace_predict` spends most of a one-row call outside the trees: Python
  argument handling, and a new proxy DMatrix per call whose context initialisation reads the
  cgroup CPU quota and compiles a regex (XGBoost 3.0.5). `DirectPredictor` makes the same C call
  (`XGBoosterPredictFromDense`, same configuration, hence bit-identical scores) with one proxy
  DMatrix and input buffer reused per thread. Measured on a 102-tree model, one row: ~55-70 µs
  instead of ~320 µs.
  If the XGBoost internals it relies on are missing, it falls back to `inference.predict_fn`.
"""

from __future__ import annotations

import csv
import ctypes
import logging
import math
import threading
from typing import Any, Callable

import numpy as np

from mlops_pipelines.steps import inference
from mlops_pipelines.steps.inference import LoadedModel, PayloadError

log = logging.getLogger(__name__)

CSV_TYPES = frozenset(inference.CSV_TYPES)
JSON_TYPES = frozenset(inference.JSON_TYPES)

# What `Booster.inplace_predict(matrix, validate_features=False)` sends with its defaults.
_PREDICT_CONFIG = (b'{"type": 0, "training": false, "iteration_begin": 0, "iteration_end": 0, '
                   b'"missing": NaN, "strict_shape": false, "cache_id": 0}')
_ARRAY_INTERFACE = b'{"data":[%d,true],"shape":[%d,%d],"strides":null,"typestr":"<f4","version":3}'


def media_type(content_type: str | bytes | None) -> str:
    if isinstance(content_type, (bytes, bytearray)):
        content_type = content_type.decode("latin-1")
    return (content_type or "").split(";", 1)[0].strip().lower()


def csv_rows(body: bytes) -> list[list[str]]:
    """Rows of a CSV payload, as `inference.parse_rows` returns them for text/csv."""
    if b'"' in body or b"\r" in body:
        if b'"' in body or b"\r" in body.replace(b"\r\n", b""):
            try:
                return inference.parse_rows(body, "text/csv")
            except csv.Error as exc:  # e.g. a lone CR: parse_rows lets it escape (a 500)
                raise PayloadError(f"payload is not valid CSV: {exc}") from None
        body = body.replace(b"\r\n", b"\n")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("payload is not UTF-8 text") from None
    if "\n" not in text:
        if not text:
            raise PayloadError("payload holds no rows")
        return [text.split(",")]
    rows = [line.split(",") for line in text.split("\n") if line]
    if not rows:
        raise PayloadError("payload holds no rows")
    return rows


def payload_rows(body: bytes, content_type: str | None) -> list:
    """Rows of a payload: the fast CSV tokeniser, else `inference.input_fn`."""
    if media_type(content_type) in CSV_TYPES:
        return csv_rows(body)
    return inference.input_fn(body, content_type or "")


class _ThreadSlots:
    """Per-thread state of a DirectPredictor: the proxy DMatrix, C out-parameters, and a small
    input buffer whose address and array interfaces are computed once."""

    def __init__(self, proxy_type, c_ulong, width: int):
        self.proxy = proxy_type()
        self.shape = ctypes.POINTER(c_ulong)()
        self.dims = c_ulong()
        self.preds = ctypes.POINTER(ctypes.c_float)()
        self.refs = (ctypes.byref(self.shape), ctypes.byref(self.dims), ctypes.byref(self.preds))
        self.width = width
        self.buffer = np.zeros((BUFFER_ROWS, width), dtype=np.float32)
        address = self.buffer.ctypes.data
        self.interfaces = [_ARRAY_INTERFACE % (address, rows, width)
                           for rows in range(BUFFER_ROWS + 1)]


BUFFER_ROWS = 64
SMALL_OUTPUT = 16


class DirectPredictor:
    """`inplace_predict` for float32 matrices through the C API with a reused proxy DMatrix."""

    def __init__(self, booster):
        from xgboost import core  # private API: checked here, at load, not per request

        self._booster = booster
        self._lib = core._LIB
        self._predict = core._LIB.XGBoosterPredictFromDense
        self._error = core.XGBoostError
        self._proxy_type = core._ProxyDMatrix
        self._c_ulong = core.c_bst_ulong
        self._local = threading.local()

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        if matrix.dtype != np.float32 or matrix.ndim != 2 or not matrix.flags.c_contiguous:
            matrix = np.ascontiguousarray(matrix, dtype=np.float32).reshape(len(matrix), -1)
        rows, width = matrix.shape
        slots = getattr(self._local, "slots", None)
        if slots is None or slots.width != width:
            slots = self._local.slots = _ThreadSlots(self._proxy_type, self._c_ulong, width)
        if rows <= BUFFER_ROWS:
            slots.buffer[:rows] = matrix
            interface = slots.interfaces[rows]
        else:
            interface = _ARRAY_INTERFACE % (matrix.ctypes.data, rows, width)
        shape_ref, dims_ref, preds_ref = slots.refs
        if self._predict(self._booster.handle, interface, _PREDICT_CONFIG, slots.proxy.handle,
                         shape_ref, dims_ref, preds_ref) != 0:
            raise self._error(self._lib.XGBGetLastError().decode())
        preds, shape = slots.preds, slots.shape
        if slots.dims.value == 1:
            size = shape[0]
            if size <= SMALL_OUTPUT:
                return np.array([preds[i] for i in range(size)], dtype=np.float32)
            out_shape: tuple[int, ...] = (size,)
        else:
            out_shape = tuple(int(shape[i]) for i in range(slots.dims.value))
            size = 1
            for extent in out_shape:
                size *= extent
        out = np.empty(size, dtype=np.float32)
        if size:
            ctypes.memmove(out.ctypes.data, preds, size * 4)
        return out.reshape(out_shape)


def _row_encoder(model: LoadedModel) -> Callable[[list[str]], list[float] | None]:
    """`model.encode_row` for rows of text values; None when the canonical path must decide."""
    plan = tuple(getattr(model, "_codes", ()))  # the vocabulary lookups encode_row uses
    width = model.width
    if len(plan) != width:  # LoadedModel changed shape: always take the canonical path
        return lambda values: None
    nan = math.nan
    from mlops_pipelines.steps.inference import FLOAT32_MAX, category_key

    def encode_text_row(values: list[str]) -> list[float] | None:
        if len(values) != width:
            return None
        row = []
        append = row.append
        for value, codes in zip(values, plan):
            if not value or value.isspace():  # inference._present: blank → missing
                append(nan)
            elif codes is None:
                try:
                    number = float(value)
                except ValueError:
                    return None
                if number != number or -FLOAT32_MAX <= number <= FLOAT32_MAX:
                    append(number)  # "nan" text reads as missing, as in encode_row
                else:
                    return None  # infinite or beyond float32: encode_row refuses it
            else:
                # Vocabulary keys follow `category_key`, which leaves a category's own text
                # unchanged: a hit is final; a miss ("1.0" for "1", or unknown) pays the rule.
                code = codes.get(value)
                append(code if code is not None else codes.get(category_key(value), nan))
        return row

    return encode_text_row


class ModelKernel:
    """One loaded model and the fastest equivalent of its handlers."""

    def __init__(self, model: LoadedModel):
        self.model = model
        self.width = model.width
        self._encode_text_row = _row_encoder(model)
        self.predict: Callable[[np.ndarray], np.ndarray]
        try:
            direct = DirectPredictor(model.booster)
            probe = np.zeros((2, model.width), dtype=np.float32)
            expected = inference.predict_fn(probe, model)
            if np.array_equal(direct(probe), expected):
                self.predict = direct
            else:  # pragma: no cover - a different XGBoost build
                raise RuntimeError("direct prediction differs from inplace_predict")
        except Exception as exc:  # pragma: no cover - depends on XGBoost internals
            log.warning("direct prediction unavailable (%s); using inference.predict_fn", exc)
            self.predict = lambda matrix: inference.predict_fn(matrix, model)

    def encode(self, rows: list) -> np.ndarray:
        return inference.encode(rows, self.model)

    def score_rows(self, rows: list) -> np.ndarray:
        """Scores of rows (`inference.RowReader`'s rule), carrying the ids rows sent."""
        matrix, ids = inference.encode_rows(rows, self.model)
        return inference.with_ids(self.predict(matrix), self.model.spec.id_columns, ids)

    def encode_payload(self, body: bytes, content_type: str | None) -> np.ndarray:
        """The model matrix for a payload, exactly as `inference.encode(input_fn(...))`."""
        return self._payload_matrix(body, content_type)[0]

    def _payload_matrix(self, body: bytes, content_type: str | None
                        ) -> tuple[np.ndarray, list | None]:
        if media_type(content_type) not in CSV_TYPES:
            return inference.encode_rows(inference.input_fn(body, content_type or ""),
                                         self.model)
        rows = csv_rows(body)
        encode_text_row = self._encode_text_row
        encoded = []
        for row in rows:
            values = encode_text_row(row)
            if values is None:
                # Another width (a row with ids) or a value to refuse: the canonical rule
                # decides, and raises the canonical PayloadError.
                return inference.encode_rows(rows, self.model)
            encoded.append(values)
        return np.asarray(encoded, dtype=np.float32), None

    def score_payload(self, body: bytes, content_type: str | None) -> np.ndarray:
        """The scores `predict_fn(input_fn(body))` gives, ids included, for `output_fn`."""
        matrix, ids = self._payload_matrix(body, content_type)
        return inference.with_ids(self.predict(matrix), self.model.spec.id_columns, ids)

    def score_features(self, document: dict[str, Any]) -> float:
        """One row given as {feature: value} (streaming)."""
        return self.score_record(document)[0]

    def score_record(self, document: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        """One record's score and the id fields to pass through ({} when it sent none)."""
        matrix, ids = inference.encode_rows([document], self.model)
        names = self.model.spec.id_columns
        return float(self.predict(matrix)[0]), dict(zip(names, ids[0])) if ids else {}
