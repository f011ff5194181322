"""The ledger's item codec: plain values (str, int, float) to DynamoDB's typed attribute values
and back, numbers read back as the ledger writes them (boto3's own codec gives Decimal)."""

from __future__ import annotations

from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer


class LedgerDeserializer(TypeDeserializer):
    """boto3's decoding of DynamoDB's typed values, with numbers as the ledger writes them:
    int for an integer's digits, float otherwise (boto3 gives Decimal)."""

    def _deserialize_n(self, value: str) -> int | float:
        return int(value) if value.lstrip("-").isdigit() else float(value)


decode = LedgerDeserializer().deserialize
"""One typed attribute value as a plain value."""
encode = TypeSerializer().serialize
"""One plain value as a typed attribute value."""


def typed(**values: Any) -> dict[str, Any]:
    """Plain values (str, int) as DynamoDB attribute values."""
    return {name: encode(value) for name, value in values.items()}


def plain(item: dict[str, Any]) -> dict[str, Any]:
    """An item's typed attribute values as plain values."""
    return {name: decode(value) for name, value in item.items()}
