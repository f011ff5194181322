"""The data contract: which column is the label, which are numeric or categorical features."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class DatasetSchema:
    target: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    id_columns: tuple[str, ...] = field(default=())

    @property
    def features(self) -> tuple[str, ...]:
        """Model input order: numeric first, then categorical. Serving rows use this order."""
        return self.numeric + self.categorical

    @property
    def required_columns(self) -> tuple[str, ...]:
        return self.features + (self.target,)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict) -> "DatasetSchema":
        try:
            schema = cls(target=str(raw["target"]),
                         numeric=tuple(raw.get("numeric", ())),
                         categorical=tuple(raw.get("categorical", ())),
                         id_columns=tuple(raw.get("id_columns", ())))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"schema needs 'target', 'numeric' and 'categorical': {exc}") from None
        if not schema.features:
            raise ValueError("schema lists no feature columns")
        duplicated = {c for c in schema.required_columns if schema.required_columns.count(c) > 1}
        if duplicated:
            raise ValueError(f"schema lists column(s) twice: {', '.join(sorted(duplicated))}")
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
        return DatasetSchema(target, self.numeric, self.categorical, self.id_columns)


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
