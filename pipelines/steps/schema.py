"""The data contract: which column is the label, which are numeric or categorical features,
which name a row (id columns), and the order the data holds them in."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .inference import category_key

SCORING_OUTPUT_COLUMNS = ("score", "variant", "version")
"""What batch and stream scoring add to a row: no id column may take these names."""


@dataclass(frozen=True)
class DatasetSchema:
    target: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    id_columns: tuple[str, ...] = field(default=())
    """Columns that name a row: kept out of training and drift, passed through by scoring."""
    columns: tuple[str, ...] = field(default=())
    """The data's column order, when it is not ids, features (model order), label."""

    @property
    def features(self) -> tuple[str, ...]:
        """Model input order: numeric first, then categorical. Serving rows use this order."""
        return self.numeric + self.categorical

    @property
    def required_columns(self) -> tuple[str, ...]:
        return self.features + (self.target,)

    @property
    def data_columns(self) -> tuple[str, ...]:
        """Every declared column in the data's order: a headerless scoring row in this order
        (with or without the label) has its ids passed through (inference.RowReader)."""
        return self.columns or self.id_columns + self.required_columns

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict) -> "DatasetSchema":
        try:
            schema = cls(target=str(raw["target"]),
                         numeric=tuple(raw.get("numeric", ())),
                         categorical=tuple(raw.get("categorical", ())),
                         id_columns=tuple(raw.get("id_columns", ())),
                         columns=tuple(raw.get("columns", ())))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"schema needs 'target', 'numeric' and 'categorical': {exc}") from None
        if not schema.features:
            raise ValueError("schema lists no feature columns")
        declared = schema.id_columns + schema.required_columns
        duplicated = {c for c in declared if declared.count(c) > 1}
        if duplicated:
            raise ValueError(f"schema lists column(s) twice: {', '.join(sorted(duplicated))}")
        reserved = set(schema.id_columns) & set(SCORING_OUTPUT_COLUMNS)
        if reserved:
            raise ValueError(f"id column(s) {', '.join(sorted(reserved))} would clash with "
                             f"the scoring output ({', '.join(SCORING_OUTPUT_COLUMNS)})")
        if schema.columns and sorted(schema.columns) != sorted(declared):
            raise ValueError("schema 'columns' must list each id, feature and label column "
                             f"once; it lists {', '.join(schema.columns)}")
        return schema

    @classmethod
    def load(cls, path: str | Path) -> "DatasetSchema":
        try:
            raw = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ValueError(f"schema file not found: {path}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"schema file {path} is not valid JSON: {exc}") from None
        return cls.from_dict(raw)

    def with_target(self, target: str) -> "DatasetSchema":
        if target == self.target:
            return self
        columns = tuple(target if c == self.target else c for c in self.columns)
        return DatasetSchema(target, self.numeric, self.categorical, self.id_columns, columns)


# Object columns pandas infers as one of these hold no bool beside a number, so hashing their
# values is safe: pandas hashes True, 1 and 1.0 alike, but only True names the category "True".
_HASHABLE_OBJECT_KINDS = frozenset(("string", "boolean", "integer", "floating",
                                    "mixed-integer-float", "decimal", "empty"))


def factorize_categories(values) -> tuple[np.ndarray, list[str]]:
    """The categories of a column under `category_key`, vectorised: (codes, names) where
    `names[codes[i]]` is row i's category and code -1 means missing; names are unique.

    `category_key` runs once per distinct value, not per row: pandas hashes the column first.
    """
    import pandas as pd

    series = values if isinstance(values, pd.Series) else pd.Series(values)
    if (series.dtype == object and pd.api.types.infer_dtype(series, skipna=True)
            not in _HASHABLE_OBJECT_KINDS):
        series = series.map(category_key)  # e.g. True beside 1: one Python call per row
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    names: dict[str, int] = {}
    remap = np.empty(len(uniques) + 1, dtype=np.int64)
    remap[-1] = -1  # code -1 (missing) stays -1
    for i, value in enumerate(uniques):
        key = category_key(value)
        remap[i] = -1 if key is None else names.setdefault(key, len(names))
    return remap[codes], list(names)


def category_names(values):
    """`category_key` of every value of a column (object Series, None where missing), with
    the column's index."""
    import pandas as pd

    series = values if isinstance(values, pd.Series) else pd.Series(values)
    codes, names = factorize_categories(series)
    table = np.array(names + [None], dtype=object)
    return pd.Series(table[codes], index=series.index, name=series.name, dtype=object)


# The contract of the bundled sample data (`mlops data generate`).
FRAUD_SAMPLE_SCHEMA = DatasetSchema(
    target="is_fraud",
    numeric=(
        "amount", "account_age_days", "txn_count_1h", "txn_count_24h", "avg_amount_30d",
        "amount_to_avg_ratio", "distance_from_home_km", "hour_of_day", "device_trust_score",
        "ip_risk_score", "failed_logins_24h", "merchant_fraud_rate",
    ),
    categorical=("merchant_category", "channel", "country", "card_type"),
    id_columns=("transaction_id",),
)
