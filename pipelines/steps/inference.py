"""Inference handlers in the SageMaker XGBoost container's script-mode contract.

`model_fn`, `input_fn`, `predict_fn` and `output_fn` are what the SageMaker XGBoost serving
stack calls; the local endpoint, batch scoring and the evaluation step's latency measurement call
the very same functions. Light on purpose (numpy + xgboost, no pandas): it sits on the request
path, and the inference bundle ships it with the one kit module it imports
(`mlops_kit.core.categories`, numpy only) into the serving container.

In the container these handlers run under the `sagemaker-inference` toolkit's `Transformer`,
which answers a `BaseInferenceToolkitError` with that error's status code and message and any
other exception with a 500. A bad payload therefore raises `PayloadError`, a toolkit error with a
4xx status, so the caller gets SageMaker's `ModelError` with `OriginalStatusCode` 400 (406, 415)
and the reason, not an internal error. The toolkit substitutes
`SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT` (the model's environment) for a missing or `*/*` Accept
before `output_fn` runs; `DEFAULT_ACCEPT` is the same default for callers that pass none.
docs/serving.md ("One serving contract") has the whole contract.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Sequence

import numpy as np

# The category naming rule, shared with training and the drift monitors (one definition; the
# inference bundle ships it beside this file). train.py, schema.py and serving import it from here.
from mlops_kit.core.categories import category_key

MODEL_FILE = "xgboost-model"
SPEC_FILE = "feature_spec.json"
CSV_TYPES = ("text/csv", "text/plain")
JSON_TYPES = ("application/json", "application/jsonlines")
DEFAULT_CONTENT_TYPE = "text/csv"
"""How a payload without a Content-Type is read."""
DEFAULT_ACCEPT = "text/csv"
"""The response type when a request names none (or `*/*`). It must equal
SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT in the model's environment (`mlops_kit.aws.models.
SERVING_ENVIRONMENT`): in the container the toolkit, not `output_fn`, fills in a missing Accept,
from that variable, and without it answers application/json."""
FLOAT32_MAX = float(np.finfo(np.float32).max)

try:  # installed in SageMaker's serving containers (and in the kit's dev environment)
    from sagemaker_inference.errors import BaseInferenceToolkitError as _HandlerError
except ImportError:  # batch scoring, the evaluation step, Lambda: the same fields, plain
    class _HandlerError(Exception):  # type: ignore[no-redef]
        """Stands in for sagemaker_inference.errors.BaseInferenceToolkitError."""

        def __init__(self, status_code: int, message: str, phrase: str):
            self.status_code = status_code
            self.message = message
            self.phrase = phrase
            super().__init__(status_code, message, phrase)


class PayloadError(_HandlerError, ValueError):
    """The request cannot be scored; the message says why.

    `status_code` is what the serving container answers (the toolkit reads it): 400 for a payload
    that cannot be read or encoded, 415 for an unsupported content type, 406 for an unsupported
    accept type. SageMaker hands it to the caller as `ModelError` (HTTP 424) with
    `OriginalStatusCode` = `status_code` and the message in `OriginalMessage`.
    """

    def __init__(self, message: str, status_code: int = HTTPStatus.BAD_REQUEST):
        status = HTTPStatus(status_code)
        if not 400 <= status < 500:
            raise ValueError(f"a payload error is a client error (4xx), not {int(status)}")
        super().__init__(int(status), message, status.phrase)

    def __str__(self) -> str:  # the toolkit's base class would print the (status, message,
        return self.message    # phrase) tuple; callers and logs want the reason

    def __reduce__(self):  # pickles with this class's own arguments, not the base class's
        return type(self), (self.message, self.status_code)


@dataclass(frozen=True)
class FeatureSpec:
    features: tuple[str, ...]
    categorical: dict[str, tuple[str, ...]]
    """Vocabulary per categorical feature; a value's code is its index, unknown → missing."""
    target: str = ""
    id_columns: tuple[str, ...] = ()
    """Columns that name a row (the schema's `id_columns`): passed through to the answer, never
    scored."""
    columns: tuple[str, ...] = ()
    """The data's column order (ids, features and the label): the second row layout `RowReader`
    accepts. Empty in specs written before id columns were recorded: features only."""

    @property
    def feature_types(self) -> list[str]:
        return ["c" if name in self.categorical else "q" for name in self.features]

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(self.features), "target": self.target,
                "categorical": {k: list(v) for k, v in self.categorical.items()},
                "id_columns": list(self.id_columns), "columns": list(self.columns)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "FeatureSpec":
        # Models trained before the category rule stored an integer column's codes as "1.0";
        # read under the rule they name "1", what clients send. Positions (the codes the
        # booster learned) are kept.
        return cls(tuple(raw["features"]),
                   {k: tuple(category_key(c) for c in v) for k, v in raw["categorical"].items()},
                   raw.get("target", ""), tuple(raw.get("id_columns", ())),
                   tuple(raw.get("columns", ())))


class RowReader:
    """The one rule for what a row holds, on every scoring path (the endpoint in both homes,
    batch transform, `mlops serve`, `mlops stream`): features are scored, id columns are passed
    through to the answer, the label is ignored.

    * A positional row (a CSV line, a JSON list) of exactly len(features) values is the
      features in model order. A row in the data's column order (`FeatureSpec.columns`: ids,
      features and label, as the training file has them), with or without the label, is read
      by position: its ids are passed through, its label dropped. Any other width is an error.
    * A record (a JSON object, a stream line) holds features by name; id keys are passed
      through, the label key is ignored; any other key is an error (a misspelt feature would
      otherwise be scored as missing).
    """

    def __init__(self, spec: FeatureSpec):
        self.features = spec.features
        self.id_columns = spec.id_columns
        self.columns = spec.columns
        self.width = len(spec.features)
        self._layouts: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        if spec.columns:
            without_label = tuple(c for c in spec.columns if c != spec.target)
            for layout in (spec.columns, without_label):
                if len(layout) != self.width:  # a features-only row wins a tie
                    self._layouts.setdefault(len(layout), (
                        tuple(layout.index(name) for name in spec.features),
                        tuple(layout.index(name) for name in spec.id_columns)))
        self._known = set(spec.features) | set(spec.id_columns) | (
            {spec.target} if spec.target else set())

    def split_values(self, values: Sequence[Any]) -> tuple[Sequence[Any], tuple | None]:
        """(feature values, id values or None) of a positional row. A width the rule does not
        accept comes back unchanged, for `LoadedModel.encode_row` to refuse."""
        layout = self._layouts.get(len(values)) if len(values) != self.width else None
        if layout is None:
            return values, None
        positions, id_positions = layout
        return ([values[p] for p in positions],
                tuple(values[p] for p in id_positions) if id_positions else None)

    def split_record(self, record: dict[str, Any]) -> tuple[list[Any], tuple | None]:
        """(feature values in model order, id values or None) of a record."""
        unknown = record.keys() - self._known
        if unknown:
            raise PayloadError(f"unknown feature(s) {', '.join(sorted(map(str, unknown)))}")
        return [record.get(name) for name in self.features], self.record_ids(record)

    def record_ids(self, record: dict[str, Any]) -> tuple | None:
        """The record's id values (None for an id key it lacks), or None if it has none."""
        if not any(name in record for name in self.id_columns):
            return None
        return tuple(record.get(name) for name in self.id_columns)

    def width_problem(self, got: int) -> str:
        message = f"expected {self.width} values per row ({', '.join(self.features)})"
        if self._layouts:
            message += (f", or the data's {len(self.columns)} columns "
                        f"({', '.join(self.columns)}) with or without the label")
        return f"{message}, got {got}"


class Scores(np.ndarray):
    """Scores that carry the id values of the rows they score, for `output_fn`: `ids[i]` holds
    row i's values of `id_columns` (None when row i sent none). Plain arrays mean no row sent
    ids; `with_ids` makes one."""

    id_columns: tuple[str, ...] = ()
    ids: list | None = None

    def __array_finalize__(self, obj) -> None:
        # A slice or a computed array is no longer aligned with the rows: it forgets the ids.
        self.id_columns, self.ids = (), None


def with_ids(scores: np.ndarray, id_columns: Sequence[str], ids: list | None) -> np.ndarray:
    """`scores` as they are when no row sent ids, else a `Scores` view carrying them."""
    if ids is None:
        return scores
    carried = np.asarray(scores).view(Scores)
    carried.id_columns, carried.ids = tuple(id_columns), ids
    return carried


class LoadedModel:
    """A booster with its feature contract and precomputed lookup tables."""

    def __init__(self, booster, spec: FeatureSpec):
        self.booster = booster
        self.spec = spec
        self.width = len(spec.features)
        self.rows = RowReader(spec)
        self._codes = [_vocabulary_codes(spec.categorical[name])
                       if name in spec.categorical else None
                       for name in spec.features]

    def encode_row(self, values: Sequence[Any]) -> list[float]:
        if len(values) != self.width:
            raise PayloadError(self.rows.width_problem(len(values)))
        row = []
        for position, (value, codes) in enumerate(zip(values, self._codes)):
            if codes is not None:
                row.append(codes.get(category_key(value), math.nan) if _present(value)
                           else math.nan)
            elif not _present(value):
                row.append(math.nan)
            else:
                try:
                    number = float(value)
                except OverflowError:  # a JSON integer beyond float range
                    number = math.inf
                except (TypeError, ValueError):
                    raise PayloadError(f"feature '{self.spec.features[position]}' must be "
                                       f"numeric, got {value!r}") from None
                if math.isinf(number) or abs(number) > FLOAT32_MAX:
                    # The model reads float32: a larger value would silently become infinite.
                    raise PayloadError(f"feature '{self.spec.features[position]}' is out of "
                                       f"range: {value!r}")
                row.append(number)
        return row


def _vocabulary_codes(vocabulary: Sequence[str]) -> dict[str | None, float]:
    """Category → code (its position). Keys follow `category_key`, so a spec built by hand with
    "1.0" still matches "1"; if two entries name the same category the first one keeps it."""
    codes: dict[str | None, float] = {}
    for code, value in enumerate(vocabulary):
        codes.setdefault(category_key(value), float(code))
    codes.pop(None, None)  # a missing value never has a code
    return codes


def _present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return value.strip() != ""
    return not (isinstance(value, float) and math.isnan(value))


def model_fn(model_dir: str) -> LoadedModel:
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(os.path.join(model_dir, MODEL_FILE))
    with open(os.path.join(model_dir, SPEC_FILE)) as handle:
        spec = FeatureSpec.from_dict(json.load(handle))
    # One thread per request: requests are parallel across workers, not within one.
    booster.set_param({"nthread": 1})
    return LoadedModel(booster, spec)


def parse_rows(body: bytes | str, content_type: str) -> list[list[Any]]:
    """Raw rows from a CSV or JSON payload, one list of values per row."""
    if isinstance(body, (bytes, bytearray)):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise PayloadError("payload is not UTF-8 text") from None
    # No Content-Type reads as CSV in both homes: the local endpoint and the container (where the
    # toolkit passes None) call this same function.
    media_type = (content_type or "").split(";")[0].strip().lower() or DEFAULT_CONTENT_TYPE
    if media_type in CSV_TYPES:
        try:
            rows = [row for row in csv.reader(io.StringIO(body)) if row]
        except csv.Error as exc:
            raise PayloadError(f"payload is not valid CSV: {exc}") from None
    elif media_type in JSON_TYPES:
        rows = _json_rows(body)
    else:
        raise PayloadError(f"unsupported content type '{content_type}'; "
                           f"use text/csv or application/json",
                           HTTPStatus.UNSUPPORTED_MEDIA_TYPE)
    if not rows:
        raise PayloadError("payload holds no rows")
    return rows


def _json_rows(body: str) -> list[list[Any]]:
    try:
        document = json.loads(body)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"payload is not valid JSON: {exc.msg} at position {exc.pos}") from None
    except RecursionError:
        raise PayloadError("payload is not valid JSON: nested too deeply") from None
    if isinstance(document, dict):
        document = document.get("instances", document.get("features"))
    if isinstance(document, list) and document and not isinstance(document[0], (list, dict)):
        document = [document]
    if not isinstance(document, list) or not all(isinstance(r, (list, dict)) for r in document):
        raise PayloadError('JSON payload must be a row, a list of rows or {"instances": [...]}')
    return document  # dict rows are mapped by name in input_fn


def input_fn(request_body: bytes | str, request_content_type: str) -> list[list[Any]]:
    """Parse the payload into rows. Encoding needs the model, so it happens in predict_fn."""
    return parse_rows(request_body, request_content_type)


def encode(rows: list, model: LoadedModel) -> np.ndarray:
    """Rows (lists, or dicts by feature name; see `RowReader`) to the model's float32 matrix."""
    return encode_rows(rows, model)[0]


def encode_rows(rows: list, model: LoadedModel) -> tuple[np.ndarray, list | None]:
    """(the model's float32 matrix, each row's id values or None if no row sent ids), by the
    `RowReader` rule."""
    reader = model.rows
    encoded, ids, any_ids = [], [], False
    for index, row in enumerate(rows):
        try:
            if isinstance(row, dict):
                values, row_ids = reader.split_record(row)
            else:
                values, row_ids = reader.split_values(row)
            encoded.append(model.encode_row(values))
        except PayloadError as exc:
            raise PayloadError(f"row {index}: {exc}") from None
        ids.append(row_ids)
        any_ids = any_ids or row_ids is not None
    return np.asarray(encoded, dtype=np.float32), ids if any_ids else None


def predict_fn(input_data: list | np.ndarray, model: LoadedModel) -> np.ndarray:
    """Scores of the rows (a `Scores` carrying their ids when some row sent ids) or of a
    ready float32 matrix."""
    if isinstance(input_data, np.ndarray):
        return model.booster.inplace_predict(input_data, validate_features=False)
    matrix, ids = encode_rows(input_data, model)
    return with_ids(model.booster.inplace_predict(matrix, validate_features=False),
                    model.spec.id_columns, ids)


def response_type(accept: str | None) -> str | None:
    """The media type to answer for an Accept header: the first listed type the handlers produce,
    `text/csv` or `application/json` (`*/*` means DEFAULT_ACCEPT, `text/*` CSV, `application/*`
    JSON; parameters such as `q` or `charset` are ignored). A missing header means
    DEFAULT_ACCEPT; None when the header names nothing the handlers produce."""
    if not accept:
        return DEFAULT_ACCEPT
    for part in accept.split(","):
        candidate = part.split(";", 1)[0].strip().lower()
        if candidate in ("text/csv", "application/json"):
            return candidate
        if candidate == "*/*":
            return DEFAULT_ACCEPT
        if candidate == "text/*":
            return "text/csv"
        if candidate == "application/*":
            return "application/json"
    return None


def output_fn(prediction: np.ndarray, accept: str = DEFAULT_ACCEPT) -> tuple[str, str]:
    """The response body and its content type, exactly `text/csv` or `application/json`,
    whatever the Accept spelling: one score per line, or `{"predictions": [{"score": ...}]}`.
    When the rows sent id columns (`Scores`), each line is the ids then the score
    (`tx-1,0.0012`) and each prediction holds the ids before the score
    (`{"transaction_id": "tx-1", "score": 0.0012}`); a row that sent none has empty ids."""
    media_type = response_type(accept)
    ids = getattr(prediction, "ids", None)
    if media_type == "application/json":
        if ids is None:
            return json.dumps({"predictions": [{"score": float(p)} for p in prediction]}), \
                media_type
        names = prediction.id_columns
        return json.dumps({"predictions": [
            {**dict(zip(names, row_ids or (None,) * len(names))), "score": float(p)}
            for p, row_ids in zip(prediction, ids)]}), media_type
    if media_type == "text/csv":
        if ids is None:
            return "\n".join(f"{float(p):.8g}" for p in prediction), media_type
        return _csv_with_ids(prediction, ids, len(prediction.id_columns)), media_type
    raise PayloadError(f"unsupported accept type '{accept}'; use text/csv or application/json",
                       HTTPStatus.NOT_ACCEPTABLE)


def _csv_with_ids(prediction: np.ndarray, ids: list, width: int) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for p, row_ids in zip(prediction, ids):
        writer.writerow([*("" if v is None else v for v in (row_ids or ("",) * width)),
                         f"{float(p):.8g}"])
    return out.getvalue().rstrip("\n")
