"""Local registry of record: SQLite (transactions, so a version is written whole or not at
all) plus content-addressed model artifacts under $MLOPS_HOME/registry/."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

from .base import (
    ApprovalStatus,
    DeploymentRecord,
    InvalidRegistrationError,
    ModelRegistry,
    ModelVersion,
    RegistrationRequest,
    RollbackClaim,
    Transition,
    UnknownVersionError,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS model_groups (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    use_case TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS model_versions (
    model_group TEXT NOT NULL REFERENCES model_groups(name),
    version INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (model_group, version)
);
CREATE TABLE IF NOT EXISTS deployments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment_id TEXT NOT NULL UNIQUE,
    model_group TEXT NOT NULL,
    endpoint_name TEXT NOT NULL,
    at TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rollback_claims (
    model_group TEXT NOT NULL,
    endpoint_name TEXT NOT NULL,
    rolled_back_from TEXT NOT NULL,
    claimed_by TEXT NOT NULL,
    claimed_at TEXT NOT NULL,
    from_version INTEGER,
    to_version INTEGER,
    PRIMARY KEY (model_group, endpoint_name, rolled_back_from)
);
CREATE TABLE IF NOT EXISTS transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model_group TEXT NOT NULL,
    version INTEGER NOT NULL,
    from_status TEXT NOT NULL,
    to_status TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    at TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}'
);
"""


def utc_now() -> str:
    return iso_ms(datetime.now(timezone.utc))


def iso_ms(moment: datetime) -> str:
    """The one timestamp format of registry.db (fixed width, UTC, 'Z'): string order is time
    order, which the rollback claim's staleness test relies on."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


class LocalRegistry(ModelRegistry):
    def __init__(self, home: str | Path, model_group: str):
        self.home = Path(home)
        self.model_group = model_group
        self.db_path = self.home / "registry.db"
        self.artifacts = self.home / "registry" / "artifacts"

    @contextmanager
    def _connect(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        self.home.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA foreign_keys=ON")
            connection.executescript(SCHEMA)
            if write:
                # IMMEDIATE takes the write lock up front: two concurrent registrations get
                # versions n and n+1, never the same number.
                connection.execute("BEGIN IMMEDIATE")
                try:
                    yield connection
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
                connection.execute("COMMIT")
            else:
                yield connection
        finally:
            connection.close()

    def register(self, request: RegistrationRequest) -> ModelVersion:
        if request.model_group != self.model_group:
            raise InvalidRegistrationError(
                f"request is for model group '{request.model_group}', registry holds "
                f"'{self.model_group}'")
        request.validate()
        model_uri = self._store_artifact(request.model_artifact)
        now = utc_now()
        with self._connect(write=True) as db:
            db.execute("INSERT OR IGNORE INTO model_groups VALUES (?, ?, ?, ?)",
                       (self.model_group, request.owner, request.use_case, now))
            (latest,) = db.execute("SELECT COALESCE(MAX(version), 0) FROM model_versions "
                                   "WHERE model_group = ?", (self.model_group,)).fetchone()
            version = ModelVersion(
                model_group=self.model_group, version=latest + 1,
                status=ApprovalStatus.PENDING, created_at=now, model_uri=model_uri,
                training_run_id=request.training_run_id, metrics=dict(request.metrics),
                latency=dict(request.latency), gates=list(request.gates),
                lineage=dict(request.lineage), owner=request.owner, use_case=request.use_case,
                description=request.description, status_changed_at=now,
                status_changed_by=request.owner, status_reason="registered: all gates passed")
            db.execute("INSERT INTO model_versions VALUES (?, ?, ?, ?, ?)",
                       (self.model_group, version.version, str(version.status), now,
                        json.dumps(version.to_dict(), sort_keys=True)))
            db.execute("INSERT INTO transitions (model_group, version, from_status, to_status, "
                       "actor, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (self.model_group, version.version, "", str(version.status),
                        request.owner, version.status_reason, now))
        return version

    def _store_artifact(self, artifact: str) -> str:
        """Copy a model directory under its content digest; the same model is stored once."""
        if artifact.startswith("s3://"):
            return artifact
        source = Path(artifact)
        if not source.is_dir():
            raise InvalidRegistrationError(f"model artifact not found: {artifact}")
        digest = _directory_digest(source)
        target = self.artifacts / digest
        if not target.exists():
            self.artifacts.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.artifacts))
            try:
                shutil.copytree(source, staging, dirs_exist_ok=True)
                os.replace(staging, target)
            except OSError:
                shutil.rmtree(staging, ignore_errors=True)
                if not target.exists():
                    raise
        return str(target)

    def get(self, version: int) -> ModelVersion:
        with self._connect() as db:
            return self._fetch(db, version)

    def list_versions(self, status: ApprovalStatus | None = None) -> list[ModelVersion]:
        query = "SELECT record FROM model_versions WHERE model_group = ?"
        args: tuple[Any, ...] = (self.model_group,)
        if status is not None:
            query += " AND status = ?"
            args += (str(status),)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY version", args).fetchall()
        return [_version_from_json(record) for (record,) in rows]

    def transitions(self, version: int | None = None) -> list[Transition]:
        query = ("SELECT model_group, version, from_status, to_status, actor, reason, at, details "
                 "FROM transitions WHERE model_group = ?")
        args: tuple[Any, ...] = (self.model_group,)
        if version is not None:
            query += " AND version = ?"
            args += (int(version),)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY id", args).fetchall()
        return [Transition(*row[:7], details=json.loads(row[7])) for row in rows]


    def _fetch(self, db: sqlite3.Connection, version: int) -> ModelVersion:
        row = db.execute("SELECT record FROM model_versions WHERE model_group = ? AND "
                         "version = ?", (self.model_group, int(version))).fetchone()
        if row is None:
            raise UnknownVersionError(f"model group '{self.model_group}' has no version {version}")
        return _version_from_json(row[0])

    def set_status(self, version: int, status: ApprovalStatus, *, actor: str,
                   reason: str) -> tuple[ModelVersion, bool]:
        status = ApprovalStatus(status)
        if not actor.strip() or not reason.strip():
            raise InvalidRegistrationError("a status change needs who (actor) and why (reason)")
        now = utc_now()
        with self._connect(write=True) as db:
            current = self._fetch(db, version)
            if current.status == status:
                return current, False
            updated = replace(current, status=status, status_changed_at=now,
                              status_changed_by=actor, status_reason=reason)
            db.execute("UPDATE model_versions SET status = ?, record = ? WHERE model_group = ? "
                       "AND version = ?", (str(status), json.dumps(updated.to_dict(),
                                                                   sort_keys=True),
                                           self.model_group, int(version)))
            db.execute("INSERT INTO transitions (model_group, version, from_status, to_status, "
                       "actor, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (self.model_group, int(version), str(current.status), str(status),
                        actor, reason, now))
        return updated, True

    def archive(self, version: int, *, actor: str, reason: str) -> tuple[ModelVersion, bool]:
        now = utc_now()
        with self._connect(write=True) as db:
            current = self._fetch(db, version)
            if current.archived_at:
                return current, False
            updated = replace(current, archived_at=now)
            db.execute("UPDATE model_versions SET record = ? WHERE model_group = ? AND "
                       "version = ?", (json.dumps(updated.to_dict(), sort_keys=True),
                                       self.model_group, int(version)))
            db.execute("INSERT INTO transitions (model_group, version, from_status, to_status, "
                       "actor, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (self.model_group, int(version), str(current.status), "Archived",
                        actor, reason, now))
        return updated, True

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
        query = "SELECT record FROM deployments WHERE model_group = ?"
        args: tuple[Any, ...] = (self.model_group,)
        if endpoint_name is not None:
            query += " AND endpoint_name = ?"
            args += (endpoint_name,)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY seq", args).fetchall()
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
        stale = iso_ms(now - stale_after) if stale_after is not None else ""
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
                (self.model_group, endpoint_name, rolled_back_from, deployment_id, iso_ms(now),
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


def _version_from_json(record: str) -> ModelVersion:
    data = json.loads(record)
    data["status"] = ApprovalStatus(data["status"])
    return ModelVersion(**data)


def _directory_digest(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
