"""The local registry's deployment ledger: the deployment history of each endpoint and the
rollback claims that let one alarm of an incident, not two, roll it back."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone

from mlops_kit.core.timestamps import iso_millis

from .base import DeploymentRecord, RollbackClaim


class DeploymentLedger:
    """The deployment and rollback-claim operations of `LocalRegistry` (which provides
    `_connect`, `_rows` and `model_group`)."""

    model_group: str

    def record_deployment(self, record: DeploymentRecord) -> tuple[DeploymentRecord, bool]:
        with self._connect(write=True) as db:
            existing = db.execute("SELECT record FROM deployments WHERE deployment_id = ?",
                                  (record.deployment_id,)).fetchone()
            if existing:
                return DeploymentRecord.from_dict(json.loads(existing[0])), False
            db.execute("INSERT INTO deployments (deployment_id, model_group, endpoint_name, at, "
                       "record) VALUES (?, ?, ?, ?, ?)",
                       (record.deployment_id, self.model_group, record.endpoint_name, record.at,
                        json.dumps(record.to_dict(), sort_keys=True)))
        return record, True
    def deployments(self, endpoint_name: str | None = None) -> list[DeploymentRecord]:
        rows = self._rows("SELECT record FROM deployments", "seq", endpoint_name=endpoint_name)
        return [DeploymentRecord.from_dict(json.loads(record)) for (record,) in rows]

    _CLAIM_KEY = "model_group = ? AND endpoint_name = ? AND rolled_back_from = ?"

    def claim_rollback(self, endpoint_name: str, rolled_back_from: str, deployment_id: str, *,
                       from_version: int | None = None, to_version: int | None = None,
                       stale_after: timedelta | None = None) -> RollbackClaim:
        # The control plane's file lock already serialises local events; the claim still
        # lives here so that both homes run one rollback path, and so that any writer that
        # does not take the lock (a script, a second control plane) is held to it too.
        # BEGIN IMMEDIATE makes the upsert and the read one step: of concurrent claimers, the
        # first wins and every later one reads its claim.
        now = datetime.now(timezone.utc)
        # "" sorts before every timestamp: with no staleness bound nothing is ever taken over.
        stale = iso_millis(now - stale_after) if stale_after is not None else ""
        with self._connect(write=True) as db:
            _claims_columns(db)
            db.execute(
                "INSERT INTO rollback_claims (model_group, endpoint_name, rolled_back_from, "
                "claimed_by, claimed_at, from_version, to_version) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (model_group, endpoint_name, rolled_back_from) DO UPDATE SET "
                "claimed_by = excluded.claimed_by, claimed_at = excluded.claimed_at, "
                "from_version = excluded.from_version, to_version = excluded.to_version "
                "WHERE rollback_claims.claimed_by = excluded.claimed_by "
                "OR rollback_claims.claimed_at < ?",
                (self.model_group, endpoint_name, rolled_back_from, deployment_id, iso_millis(now),
                 from_version, to_version, stale))
            return self._claim(db, endpoint_name, rolled_back_from)  # type: ignore[return-value]

    def release_rollback(self, endpoint_name: str, rolled_back_from: str,
                         deployment_id: str) -> bool:
        with self._connect(write=True) as db:
            _claims_columns(db)
            cursor = db.execute(f"DELETE FROM rollback_claims WHERE {self._CLAIM_KEY} AND "
                                f"claimed_by = ?", (self.model_group, endpoint_name,
                                                    rolled_back_from, deployment_id))
            return cursor.rowcount > 0

    def rollback_claim(self, endpoint_name: str, rolled_back_from: str) -> RollbackClaim | None:
        with self._connect(write=True) as db:
            _claims_columns(db)
            return self._claim(db, endpoint_name, rolled_back_from)

    def _claim(self, db: sqlite3.Connection, endpoint_name: str,
               rolled_back_from: str) -> RollbackClaim | None:
        row = db.execute(f"SELECT claimed_by, claimed_at, from_version, to_version FROM "
                         f"rollback_claims WHERE {self._CLAIM_KEY}",
                         (self.model_group, endpoint_name, rolled_back_from)).fetchone()
        if row is None:
            return None
        return RollbackClaim(endpoint_name, rolled_back_from, row[0], row[1], row[2], row[3])


def _claims_columns(db: sqlite3.Connection) -> None:
    """Add the decided versions to a rollback_claims table created before they were kept (in
    the caller's write transaction, so two processes never both add them)."""
    have = {row[1] for row in db.execute("PRAGMA table_info(rollback_claims)")}
    for column in ("from_version", "to_version"):
        if column not in have:
            db.execute(f"ALTER TABLE rollback_claims ADD COLUMN {column} INTEGER")
