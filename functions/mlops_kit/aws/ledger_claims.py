"""The ledger's rollback claims: which automatic rollback of an endpoint, away from the
deployment at the head of its history, holds it, so that two alarms of one incident cannot both
roll back. The items are the ledger's `rollback-claim#` kind (see `ledger` for their fields and
the claim's condition)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from botocore.exceptions import ClientError

from mlops_kit import retry
from mlops_kit.core.timestamps import iso_micros

from .ledger_codec import encode, plain, typed
from .ledger_errors import condition_failed

ROLLBACK_CLAIM_PREFIX = "rollback-claim#"

CLAIM_ATTEMPTS = 3
"""Conditional claim writes before giving up when the claim keeps changing under us."""


class _ClaimChanged(Exception):
    """The claim that refused ours was released or went stale before we read it (`held`, or
    None when it is gone): try the claim again."""

    def __init__(self, held: dict[str, Any] | None):
        super().__init__("the rollback claim changed between the write and the read")
        self.held = held


_RECLAIM = retry.Backoff(max_attempts=CLAIM_ATTEMPTS, base_delay=0.0, max_delay=0.0,
                         retry_if=lambda exc: isinstance(exc, _ClaimChanged))
"""The claim changed under us: write again at once (nothing to wait for)."""


class RollbackClaims:
    """The rollback-claim operations of `Ledger` (which provides `table_name`, `_call`, `_key`,
    `get` and `now`)."""

    table_name: str

    def claim_rollback(self, endpoint_name: str, rolled_back_from: str, deployment_id: str, *,
                       from_version: int | None = None, to_version: int | None = None,
                       stale_after: timedelta | None = None) -> dict[str, Any]:
        """Claim the rollback of `endpoint_name` away from `rolled_back_from` for
        `deployment_id` (see `ModelRegistry.claim_rollback`); returns the claim item as it
        stands, whose `claimed_by` is the holder. Endpoint names hold no '#', so the key is
        unambiguous."""
        sk = self._claim_key(endpoint_name, rolled_back_from)
        try:
            return _RECLAIM.call(self._try_claim, sk, deployment_id,
                                 typed(endpoint_name=endpoint_name,
                                        rolled_back_from=rolled_back_from),
                                 from_version=from_version, to_version=to_version,
                                 stale_after=stale_after)
        except _ClaimChanged as changed:
            if changed.held is None:  # pragma: no cover - released and deleted by nobody
                raise RuntimeError(f"the rollback claim {sk} kept changing") from changed
            return changed.held

    def _try_claim(self, sk: str, deployment_id: str, subject: dict[str, Any], *,
                   from_version: int | None, to_version: int | None,
                   stale_after: timedelta | None) -> dict[str, Any]:
        """One conditional claim write: the claim written, or the live claim of another
        holder; `_ClaimChanged` when that claim was released or went stale before we read it."""
        now = self.now()
        claim = {**self._key(sk), **subject,
                 **typed(claimed_by=deployment_id, claimed_at=iso_micros(now))}
        for name, version in (("from_version", from_version), ("to_version", to_version)):
            if version is not None:
                claim[name] = encode(int(version))
        condition = "attribute_not_exists(pk) OR attribute_exists(released_at) OR claimed_by = :me"
        values = typed(**{":me": deployment_id})
        if stale_after is not None:
            # Both sides are iso_micros strings (fixed width, UTC, 'Z'): string order is time
            # order.
            condition += " OR claimed_at < :stale"
            values[":stale"] = encode(iso_micros(now - stale_after))
        try:
            # A one-item transaction, like every ledger write: throttling and conflicts with a
            # concurrent claim are retried by `_call`, and the condition failure is read the
            # same way as the deployment guard's. Put replaces the whole item, so a taken-over
            # or released claim leaves nothing of its own behind.
            self._call("transact_write_items", TransactItems=[
                {"Put": {"TableName": self.table_name, "Item": claim,
                         "ConditionExpression": condition, "ExpressionAttributeValues": values}}])
        except ClientError as exc:
            if not condition_failed(exc):
                raise
        else:
            return plain(claim)
        # Held by another alarm's rollback. Read it; should it have been released or gone
        # stale between the write and the read, the claim is worth another try.
        held = self.get(sk)
        if held is not None and "released_at" not in held and not (
                stale_after is not None
                and held["claimed_at"] < iso_micros(self.now() - stale_after)):
            return held
        raise _ClaimChanged(held)

    def release_rollback(self, endpoint_name: str, rolled_back_from: str,
                         deployment_id: str) -> bool:
        """Mark the claim released, only while `deployment_id` holds it. False otherwise."""
        try:
            self._call("transact_write_items", TransactItems=[{"Update": {
                "TableName": self.table_name,
                "Key": self._key(self._claim_key(endpoint_name, rolled_back_from)),
                "UpdateExpression": "SET released_at = :now",
                "ConditionExpression": "claimed_by = :me AND attribute_not_exists(released_at)",
                "ExpressionAttributeValues": typed(**{":me": deployment_id,
                                                       ":now": iso_micros(self.now())})}}])
        except ClientError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def rollback_claim(self, endpoint_name: str, rolled_back_from: str) -> dict[str, Any] | None:
        """The live claim item (None: never claimed, or released)."""
        item = self.get(self._claim_key(endpoint_name, rolled_back_from))
        return None if item is None or "released_at" in item else item

    @staticmethod
    def _claim_key(endpoint_name: str, rolled_back_from: str) -> str:
        return f"{ROLLBACK_CLAIM_PREFIX}{endpoint_name}#{rolled_back_from}"
