"""How the ledger reads DynamoDB's errors: a transaction worth sending again (throttled, or
cancelled by a conflict) and a condition that did not hold (the ledger's compare-and-swap)."""

from __future__ import annotations

from botocore.exceptions import ClientError

from .clients import botocore_retried, error_code, unretried_throttling


_TRANSIENT_CANCELLATIONS = frozenset({"ThrottlingError", "ProvisionedThroughputExceeded",
                                      "TransactionConflict", "RequestLimitExceeded", "None"})
"""Cancellation reasons of a TransactWriteItems that wrote nothing and may simply be sent again
("None" marks the items that were not at fault)."""


def transient(exc: BaseException) -> bool:
    """Throttling botocore has not retried already, and a transaction cancelled only for
    throttling or a conflict with another transaction in flight: DynamoDB reports both as
    TransactionCanceledException, which botocore does not retry, so without this a throttled
    transaction would fail the whole call."""
    if unretried_throttling(exc) or (error_code(exc) == "TransactionInProgressException"
                                     and not botocore_retried(exc)):
        return True
    if error_code(exc) != "TransactionCanceledException":
        return False
    reasons = {str(r.get("Code") or "None")
               for r in (exc.response.get("CancellationReasons") or [])}  # type: ignore[attr-defined]
    return bool(reasons - {"None"}) and reasons <= _TRANSIENT_CANCELLATIONS


def condition_failed(exc: ClientError) -> bool:
    """The write's condition (or one of its transaction's) did not hold: nothing written."""
    code = error_code(exc)
    if code == "ConditionalCheckFailedException":
        return True
    if code == "TransactionCanceledException":
        reasons = exc.response.get("CancellationReasons") or []
        return any(r.get("Code") == "ConditionalCheckFailed" for r in reasons)
    return False
