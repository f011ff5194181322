"""The local registry's promotions: which version of a model is promoted to which environment,
by whom, when and why — one row per (model, version, environment), written with the event it
implies in one transaction (the twin of SageMaker's `ModelLifeCycle` update and the event
SageMaker emits with it).

Promoting to a model's first environment approves the version if it is not approved yet, in the
same transaction: one registry of record, trained once, approved once, promoted per environment.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from mlops_kit.core.promotion import Promotion
from mlops_kit.core.timestamps import iso_millis

from .base import ApprovalStatus, InvalidRegistrationError, ModelVersion

PROMOTIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS promotions (
    model_group TEXT NOT NULL,
    version INTEGER NOT NULL,
    environment TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (model_group, version, environment)
);
"""

PromotionEvent = Callable[[ModelVersion, Promotion, bool, datetime], Mapping[str, Any]]
"""(the version, its promotion, whether the promotion approved it, when) → the event."""


class PromotionLedger:
    """Mixed into `LocalRegistry` (which provides `_connect`, `_fetch`, `_write_status`,
    `_enqueue` and `model_group`)."""

    model_group: str
    promotion_event: PromotionEvent | None

    def promotions(self, version: int | None = None) -> list[Promotion]:
        """This model's promotions, oldest first."""
        query = ("SELECT model_group, version, environment, actor, reason, at FROM promotions "
                 "WHERE model_group = ?")
        args: list[Any] = [self.model_group]
        if version is not None:
            query += " AND version = ?"
            args.append(int(version))
        with self._connect() as db:  # type: ignore[attr-defined]
            rows = db.execute(query + " ORDER BY at, environment", args).fetchall()
        return [Promotion(*row) for row in rows]

    def record_promotion(self, version: int, environment: str, *, actor: str, reason: str,
                         approve: bool = False) -> tuple[Promotion, bool]:
        """Promote `version` to `environment` (idempotent: the existing promotion and False
        when it was promoted there before). `approve`: approve it first if it is not yet (its
        first environment); otherwise a version that is not approved is refused."""
        if not actor.strip() or not reason.strip():
            raise InvalidRegistrationError("a promotion needs who (actor) and why (reason)")
        moment = datetime.now(timezone.utc)
        now = iso_millis(moment)
        with self._connect(write=True) as db:  # type: ignore[attr-defined]
            existing = _promotion(db, self.model_group, version, environment)
            if existing is not None:
                return existing, False
            current: ModelVersion = self._fetch(db, version)  # type: ignore[attr-defined]
            approved_now = False
            if current.status != ApprovalStatus.APPROVED:
                if not approve:
                    raise InvalidRegistrationError(
                        f"{self.model_group} v{version} is {current.status}: approve it (or "
                        f"promote it to its first environment) before {environment}")
                current = self._write_status(  # type: ignore[attr-defined]
                    db, current, ApprovalStatus.APPROVED, actor=actor,
                    reason=f"promoted to {environment}: {reason}", now=now)
                approved_now = True
            promotion = Promotion(self.model_group, int(version), environment, actor, reason, now)
            db.execute("INSERT INTO promotions VALUES (?, ?, ?, ?, ?, ?)",
                       (promotion.model, promotion.version, promotion.environment,
                        promotion.actor, promotion.reason, promotion.at))
            if self.promotion_event is not None:
                self._enqueue(db, self.promotion_event(  # type: ignore[attr-defined]
                    current, promotion, approved_now, moment))
        return promotion, True


def _promotion(db: sqlite3.Connection, group: str, version: int,
               environment: str) -> Promotion | None:
    row = db.execute("SELECT model_group, version, environment, actor, reason, at FROM "
                     "promotions WHERE model_group = ? AND version = ? AND environment = ?",
                     (group, int(version), environment)).fetchone()
    return Promotion(*row) if row else None
