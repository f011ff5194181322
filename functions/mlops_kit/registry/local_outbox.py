"""The local registry's outbox: a status change and the event it implies are one fact.

`LocalRegistry.set_status` writes the event (built by the injected `status_event`) into the
`outbox` table in the status change's own transaction; a publisher
(`mlops_kit.local.control_plane`) delivers pending events and marks them, so a process killed
between the two leaves an event the next command delivers.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping

from mlops_kit.clock import utc_now_iso

from .base import ModelVersion

MAX_DELIVERY_ATTEMPTS = 3
"""As the AWS controllers' async invocations (1 + 2 retries): then the event is dead-lettered
(kept, marked failed, on-call notified) instead of blocking every command."""

StatusEvent = Callable[[ModelVersion, str, datetime], Mapping[str, Any]]
"""(the version after the change, the reason, when) → the event the change implies."""


@dataclass(frozen=True)
class OutboxEvent:
    seq: int
    event_id: str
    detail_type: str
    event: dict[str, Any]
    created_at: str
    attempts: int
    last_error: str
    delivered_at: str | None = None
    outcome: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "event_id": self.event_id, "detail_type": self.detail_type,
                "created_at": self.created_at, "attempts": self.attempts,
                "last_error": self.last_error, "delivered_at": self.delivered_at,
                "outcome": self.outcome}


class Outbox:
    """The outbox operations of `LocalRegistry` (which provides `_connect` and `status_event`)."""

    status_event: StatusEvent | None

    def enqueue(self, event: Mapping[str, Any]) -> OutboxEvent:
        """Keep an event for delivery (idempotent on its id)."""
        with self._connect(write=True) as db:
            return self._enqueue(db, event)

    def enqueue_status_event(self, version: ModelVersion, reason: str,
                             changed_at: datetime) -> OutboxEvent | None:
        """The event of a status change made earlier, again (e.g. an approval whose delivery
        was dead-lettered): same change time, so the controller recognises the same change."""
        if self.status_event is None:
            return None
        return self.enqueue(self.status_event(version, reason, changed_at))

    def _enqueue(self, db: sqlite3.Connection, event: Mapping[str, Any]) -> OutboxEvent:
        event_id = str(event.get("id") or uuid.uuid4())
        db.execute("INSERT OR IGNORE INTO outbox (event_id, detail_type, event, created_at) "
                   "VALUES (?, ?, ?, ?)", (event_id, str(event.get("detail-type", "")),
                                           json.dumps(dict(event), sort_keys=True), utc_now_iso()))
        row = db.execute(f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE event_id = ?",
                         (event_id,)).fetchone()
        return _outbox_event(row)

    def pending_events(self) -> list[OutboxEvent]:
        """Undelivered events, oldest first."""
        with self._connect() as db:
            rows = db.execute(f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE delivered_at IS NULL "
                              f"ORDER BY seq").fetchall()
        return [_outbox_event(row) for row in rows]

    def outbox_event(self, seq: int) -> OutboxEvent | None:
        with self._connect() as db:
            row = db.execute(f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE seq = ?",
                             (seq,)).fetchone()
        return _outbox_event(row) if row else None

    def outbox(self, limit: int = 50) -> list[OutboxEvent]:
        """The latest events, delivered or not, newest last."""
        with self._connect() as db:
            rows = db.execute(f"SELECT {_OUTBOX_COLUMNS} FROM outbox ORDER BY seq DESC LIMIT ?",
                              (limit,)).fetchall()
        return [_outbox_event(row) for row in reversed(rows)]

    def mark_delivered(self, seq: int, outcome: Mapping[str, Any]) -> bool:
        """Mark an event delivered with what its consumer did; False if it already was."""
        with self._connect(write=True) as db:
            cursor = db.execute("UPDATE outbox SET delivered_at = ?, outcome = ?, attempts = "
                                "attempts + 1 WHERE seq = ? AND delivered_at IS NULL",
                                (utc_now_iso(), json.dumps(dict(outcome), sort_keys=True,
                                                       default=str), seq))
            return cursor.rowcount > 0

    def mark_attempt_failed(self, seq: int, error: str) -> OutboxEvent:
        """Count a failed delivery; at MAX_DELIVERY_ATTEMPTS the event is dead-lettered
        (delivered_at set, outcome `failed`) so it no longer blocks anything."""
        with self._connect(write=True) as db:
            db.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE seq = ? "
                       "AND delivered_at IS NULL", (error[:2000], seq))
            db.execute("UPDATE outbox SET delivered_at = ?, outcome = ? WHERE seq = ? AND "
                       "delivered_at IS NULL AND attempts >= ?",
                       (utc_now_iso(), json.dumps({"action": "failed", "reason": error[:2000]}),
                        seq, MAX_DELIVERY_ATTEMPTS))
            row = db.execute(f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE seq = ?",
                             (seq,)).fetchone()
        return _outbox_event(row)


_OUTBOX_COLUMNS = ("seq, event_id, detail_type, event, created_at, attempts, last_error, "
                   "delivered_at, outcome")


def _outbox_event(row: tuple) -> OutboxEvent:
    return OutboxEvent(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5], row[6],
                       row[7], json.loads(row[8]) if row[8] else None)
