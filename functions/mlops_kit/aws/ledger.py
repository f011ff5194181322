"""The ledger: a DynamoDB table keeping what SageMaker does not, per model group.

SageMaker's Model Registry holds a version's approval status but neither the trail of who
changed it when and why, nor which versions an endpoint served over time, nor a lineage record
larger than CustomerMetadataProperties allows (50 entries, 256-character values, a narrow
character set). The ledger keeps those, next to the registry, with the same semantics as the
local SQLite adapter.

Table (the CDK stack creates it from `LEDGER_TABLE`):
    partition key  pk (S)  the model package group name
    sort key       sk (S)  one of the item kinds below
    billing        PAY_PER_REQUEST; point-in-time recovery on; retain on stack deletion;
                   no TTL (it is an audit trail); no secondary index (every read is a Query on
                   one pk with a sort-key prefix)

Item kinds (sk):
    version#<version, 10 digits>
        the registration record as JSON (`record`), `model_package_arn`, the current
        `status`, `status_changed_at`, `status_changed_by`, `status_reason`, and once archived
        by the retention policy `archived_at`, `archived_by`, `archived_reason`
    transition#<written-at, ISO-8601 µs UTC>#<version, 10 digits>#<nonce>
        one status change: version, from_status, to_status, actor, reason, at, details (JSON)
    deployment#<written-at, ISO-8601 µs UTC>#<deployment_id>
        one deployment record as JSON (`record`) and `endpoint_name`; oldest first by sk
    deployment-id#<deployment_id>
        the idempotency guard: written in the same transaction as the history item with
        `attribute_not_exists(pk)`, so a deployment id is recorded once however often it is
        retried; holds the record too, so a retry returns the first one
    rollback-claim#<endpoint name>#<deployment id rolled back from>
        who holds the automatic rollback of that endpoint away from that deployment (the head
        of its history): `claimed_by` (the rollback's deployment id), `claimed_at` (ISO-8601
        µs UTC, the same fixed-width format as the bound it is compared with), `endpoint_name`,
        `rolled_back_from`, and what the holder decided, `from_version` / `to_version` (N).
        Written with the condition `attribute_not_exists(pk) OR attribute_exists(released_at)
        OR claimed_by = :me OR claimed_at < :stale`: free, released, renewed by its holder, or
        taken over once older than the caller's staleness bound; so two alarms of one incident
        cannot both roll back. A holder whose shift did not happen sets `released_at` (an
        Update conditional on `claimed_by = :me`); the item stays as the audit of the attempt
        until the next claim replaces it.

IAM for a function using the ledger: dynamodb:GetItem, dynamodb:PutItem, dynamodb:UpdateItem,
dynamodb:Query on the table (TransactWriteItems is authorised through PutItem/UpdateItem: the
ledger never deletes, a released claim is an Update).
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

from botocore.exceptions import ClientError

from mlops_kit.core.timestamps import iso_micros, iso_millis

from .clients import Backoff, LazyClient
from .ledger_claims import RollbackClaims
from .ledger_codec import encode, plain, typed
from .ledger_errors import condition_failed, transient

iso_micro = iso_micros
"""The ledger's sort-key and claim time (`2026-12-03T17:09:35.123456Z`); under the name its importers use."""
iso_milli = iso_millis
"""The ledger's record time (`2026-12-03T17:09:35.123Z`); under the name its importers use."""


LEDGER_TABLE: dict[str, Any] = {
    "partition_key": {"name": "pk", "type": "S"},
    "sort_key": {"name": "sk", "type": "S"},
    "billing_mode": "PAY_PER_REQUEST",
    "point_in_time_recovery": True,
    "removal_policy": "RETAIN",
    "env_var": "LEDGER_TABLE_NAME",
}
"""The key schema the CDK stack gives the ledger table (and the env var carrying its name)."""


def create_table_request(table_name: str) -> dict[str, Any]:
    """CreateTable arguments for a ledger table with the stack's key schema (for a table made
    outside the CDK app: tests, benchmarks, a sandbox account)."""
    pk, sk = LEDGER_TABLE["partition_key"], LEDGER_TABLE["sort_key"]
    return {"TableName": table_name, "BillingMode": LEDGER_TABLE["billing_mode"],
            "KeySchema": [{"AttributeName": pk["name"], "KeyType": "HASH"},
                          {"AttributeName": sk["name"], "KeyType": "RANGE"}],
            "AttributeDefinitions": [{"AttributeName": pk["name"], "AttributeType": pk["type"]},
                                     {"AttributeName": sk["name"], "AttributeType": sk["type"]}]}

IAM_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query")
"""On the ledger table. TransactWriteItems is authorised as PutItem/UpdateItem per item."""

VERSION_PREFIX = "version#"
TRANSITION_PREFIX = "transition#"
DEPLOYMENT_PREFIX = "deployment#"
DEPLOYMENT_ID_PREFIX = "deployment-id#"
PROMOTION_PREFIX = "promotion#"
# rollback-claim#: `ledger_claims.ROLLBACK_CLAIM_PREFIX`, next to the claims.


def version_key(version: int) -> str:
    return f"{VERSION_PREFIX}{int(version):010d}"


class _Clock:
    """Strictly increasing UTC timestamps (µs) within a process, so sort keys written in one
    process keep their order even when the wall clock repeats or steps back."""

    def __init__(self) -> None:
        self._last = datetime.min.replace(tzinfo=timezone.utc)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            now = datetime.now(timezone.utc)
            if now <= self._last:
                now = self._last + timedelta(microseconds=1)
            self._last = now
            return now


_CLOCK = _Clock()


class Ledger(RollbackClaims):
    """Low-level access to the ledger table for one model group (its rollback claims:
    `RollbackClaims`)."""

    def __init__(self, table_name: str, model_group: str, client: Any = None, *,
                 backoff: Backoff | None = None):
        if not table_name:
            raise ValueError("the ledger needs a DynamoDB table name (LEDGER_TABLE_NAME)")
        self.table_name = table_name
        self.model_group = model_group
        self._client = LazyClient("dynamodb", client)
        self._backoff = backoff or Backoff()

    @property
    def client(self) -> Any:
        return self._client()

    def _call(self, operation: str, **kwargs: Any) -> Any:
        return self._backoff.call(getattr(self.client, operation), retry_if=transient,
                                  **kwargs)

    def _key(self, sk: str) -> dict[str, Any]:
        return typed(pk=self.model_group, sk=sk)

    def now(self) -> datetime:
        return _CLOCK.now()

    # -- reads ---------------------------------------------------------------------------

    def get(self, sk: str) -> dict[str, Any] | None:
        response = self._call("get_item", TableName=self.table_name, Key=self._key(sk),
                              ConsistentRead=True)
        item = response.get("Item")
        return plain(item) if item else None

    def query_prefix(self, prefix: str) -> Iterator[dict[str, Any]]:
        """Items whose sort key starts with `prefix`, in sort-key order, across pages."""
        kwargs: dict[str, Any] = dict(
            TableName=self.table_name, ConsistentRead=True,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=typed(**{":pk": self.model_group, ":prefix": prefix}))
        # botocore's paginator follows LastEvaluatedKey; each page is one Query that botocore
        # retries for throttling like any call.
        pages = self.client.get_paginator(operation_name="query").paginate(**kwargs)
        for page in pages:
            for item in page.get("Items", []):
                yield plain(item)

    # -- versions ------------------------------------------------------------------------

    def put_version(self, version: int, record: dict[str, Any], model_package_arn: str,
                    transition: dict[str, Any]) -> None:
        """The registration record and its first transition, written together."""
        item = {**self._key(version_key(version)), **typed(
            record=json.dumps(record, sort_keys=True), model_package_arn=model_package_arn,
            status=record["status"], status_changed_at=record["status_changed_at"],
            status_changed_by=record["status_changed_by"],
            status_reason=record["status_reason"])}
        self._call("transact_write_items", TransactItems=[
            {"Put": {"TableName": self.table_name, "Item": item}},
            {"Put": self._transition_put(version, transition)},
        ])

    def change_status(self, version: int, expected: str | None, transition: dict[str, Any],
                      model_package_arn: str = "") -> bool:
        """Record a status change once, as a compare-and-swap on the ledger's status: the
        version item must still hold `expected` (what the caller read; None: no status yet, a
        package registered outside the kit), then it takes the new status and the transition
        is appended, in one transaction. False when another writer got there first."""
        names = {"#status": "status"}
        values = typed(**{":to": transition["to_status"], ":at": transition["at"],
                           ":by": transition["actor"], ":why": transition["reason"]})
        update = ("SET #status = :to, status_changed_at = :at, status_changed_by = :by, "
                  "status_reason = :why")
        if model_package_arn:
            update += ", model_package_arn = if_not_exists(model_package_arn, :arn)"
            values[":arn"] = encode(model_package_arn)
        if expected is None:
            condition = "attribute_not_exists(#status)"
        else:
            condition = "#status = :expected"
            values[":expected"] = encode(expected)
        return self._update_with_transition(version, transition, update=update,
                                            condition=condition, values=values, names=names)

    def archive(self, version: int, transition: dict[str, Any],
                model_package_arn: str = "") -> bool:
        """Mark the version archived once (`archived_at` absent before) and append the
        transition, in one transaction. False when it was archived already."""
        values = typed(**{":at": transition["at"], ":by": transition["actor"],
                           ":why": transition["reason"]})
        update = "SET archived_at = :at, archived_by = :by, archived_reason = :why"
        if model_package_arn:
            update += ", model_package_arn = if_not_exists(model_package_arn, :arn)"
            values[":arn"] = encode(model_package_arn)
        return self._update_with_transition(version, transition, update=update,
                                            condition="attribute_not_exists(archived_at)",
                                            values=values)

    def unarchive(self, version: int, transition: dict[str, Any]) -> bool:
        """Bring an archived version back and append the transition, in one transaction.
        False when it was not archived."""
        return self._update_with_transition(
            version, transition, update="REMOVE archived_at, archived_by, archived_reason",
            condition="attribute_exists(archived_at)", values={})

    def _update_with_transition(self, version: int, transition: dict[str, Any], *, update: str,
                                condition: str, values: dict[str, Any],
                                names: dict[str, str] | None = None) -> bool:
        """The version's conditional update and its audit transition, in one transaction;
        False when the condition does not hold (nothing written)."""
        change: dict[str, Any] = {"TableName": self.table_name,
                                  "Key": self._key(version_key(version)),
                                  "UpdateExpression": update, "ConditionExpression": condition}
        if values:  # DynamoDB refuses an empty map
            change["ExpressionAttributeValues"] = values
        if names:
            change["ExpressionAttributeNames"] = names
        try:
            self._call("transact_write_items", TransactItems=[
                {"Update": change}, {"Put": self._transition_put(version, transition)}])
        except ClientError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def _transition_put(self, version: int, transition: dict[str, Any]) -> dict[str, Any]:
        sk = (f"{TRANSITION_PREFIX}{iso_micros(self.now())}#{int(version):010d}#"
              f"{uuid.uuid4().hex[:8]}")
        item = {**self._key(sk), **typed(
            version=int(version), from_status=transition["from_status"],
            to_status=transition["to_status"], actor=transition["actor"],
            reason=transition["reason"], at=transition["at"],
            details=json.dumps(transition.get("details") or {}, sort_keys=True))}
        return {"TableName": self.table_name, "Item": item,
                "ConditionExpression": "attribute_not_exists(pk)"}

    # -- deployments ---------------------------------------------------------------------

    def put_once(self, sk: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        """Write an item that is never rewritten: None when written, else the stored one."""
        try:
            self._call("put_item", TableName=self.table_name,
                       Item={**self._key(sk), **typed(**fields)},
                       ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if not condition_failed(exc):
                raise
            return self.get(sk)
        return None

    def put_deployment(self, deployment_id: str, endpoint_name: str,
                       record: dict[str, Any]) -> dict[str, Any] | None:
        """Append a deployment once per id. Returns None when written, else the record already
        stored under that id."""
        body = json.dumps(record, sort_keys=True)
        history_sk = f"{DEPLOYMENT_PREFIX}{iso_micros(self.now())}#{deployment_id}"
        guard = {**self._key(DEPLOYMENT_ID_PREFIX + deployment_id),
                 **typed(record=body, history_sk=history_sk, endpoint_name=endpoint_name)}
        history = {**self._key(history_sk), **typed(record=body, endpoint_name=endpoint_name,
                                                     deployment_id=deployment_id)}
        condition = "attribute_not_exists(pk)"
        try:
            self._call("transact_write_items", TransactItems=[
                {"Put": {"TableName": self.table_name, "Item": guard,
                         "ConditionExpression": condition}},
                {"Put": {"TableName": self.table_name, "Item": history,
                         "ConditionExpression": condition}},
            ])
        except ClientError as exc:
            if not condition_failed(exc):
                raise
            existing = self.get(DEPLOYMENT_ID_PREFIX + deployment_id)
            if existing is None:  # pragma: no cover - the guard cannot vanish
                raise
            return json.loads(existing["record"])
        return None
