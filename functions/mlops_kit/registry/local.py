"""Local registry of record: SQLite (transactions, so a version is written whole or not at
all) plus content-addressed model artifacts under $MLOPS_HOME/registry/.

The registry knows it exists: `registry.db` carries the kit's application id and schema version
(SQLite's `PRAGMA application_id`/`user_version`) and the home keeps a marker
(`registry.id.json`) once a registry was created there. A missing, empty, truncated or foreign
database in a home that had one is `DamagedStateError` (the CLI's exit 6, with the way back),
never a fresh, empty registry. After every committed change a copy is taken with SQLite's online
backup API into `backups/` (the last `KEEP_BACKUPS`), which `mlops registry restore` puts back.

Events: a status change and the event it implies are one fact. `set_status` writes the event
(built by the injected `status_event`) into the `outbox` table in the status change's own
transaction; a publisher (`mlops_kit.local.control_plane`) delivers pending events and marks
them, so a process killed between the two leaves an event the next command delivers.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from mlops_kit.clock import utc_now_iso
from mlops_kit.core.timestamps import iso_millis
from mlops_kit.ports import DamagedStateError, StateWriteError

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

log = logging.getLogger(__name__)

APPLICATION_ID = 0x4D4C4F50
"""'MLOP': SQLite's application id of a registry.db written by this kit."""
SCHEMA_VERSION = 2
"""`PRAGMA user_version`: 1 had no outbox; 2 adds it (created on open, in place)."""
MARKER = "registry.id.json"
BACKUP_DIR = "backups"
KEEP_BACKUPS = 3
MAX_DELIVERY_ATTEMPTS = 3
"""As the AWS controllers' async invocations (1 + 2 retries): then the event is dead-lettered
(kept, marked failed, on-call notified) instead of blocking every command."""

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
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    detail_type TEXT NOT NULL,
    event TEXT NOT NULL,
    created_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    delivered_at TEXT,
    outcome TEXT
);
"""

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




class LocalRegistry(ModelRegistry):
    def __init__(self, home: str | Path, model_group: str, *,
                 status_event: StatusEvent | None = None):
        self.home = Path(home)
        self.model_group = model_group
        self.db_path = self.home / "registry.db"
        self.marker_path = self.home / MARKER
        self.backup_dir = self.home / BACKUP_DIR
        self.artifacts = self.home / "registry" / "artifacts"
        self.status_event = status_event
        self._verified = False

    # -- opening: a registry that existed is never mistaken for an empty one ----------------

    @contextmanager
    def _connect(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        connection = self._open(write)
        committed = False
        try:
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
                committed = True
            else:
                yield connection
        except sqlite3.DatabaseError as exc:
            raise self._database_error(exc) from exc
        finally:
            connection.close()
        if committed:
            self._backup()

    def _open(self, write: bool) -> sqlite3.Connection:
        marker = self.marker()
        if not self.db_path.exists():
            if marker is not None:
                raise self._damaged("the file is missing")
            if not write:
                # A home without a registry reads as empty and is left as it is.
                empty = sqlite3.connect(":memory:", isolation_level=None)
                empty.executescript(SCHEMA)
                return empty
            self._create()
        elif self.db_path.stat().st_size == 0:
            raise self._damaged("the file is empty (0 bytes)")
        connection = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        try:
            (application_id,) = connection.execute("PRAGMA application_id").fetchone()
            if application_id != APPLICATION_ID:
                if application_id != 0 or marker is not None or not _has_registry_tables(
                        connection):
                    raise self._damaged(f"it is not a registry of this kit "
                                        f"(application id {application_id:#x})")
                # A registry made before the kit stamped its files: adopt it.
                connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            if not self._verified:
                problems = [row[0] for row in connection.execute("PRAGMA quick_check")]
                if problems != ["ok"]:
                    raise self._damaged(f"it fails SQLite's check ({problems[0]})")
                self._verified = True
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA foreign_keys=ON")
            (schema,) = connection.execute("PRAGMA user_version").fetchone()
            if schema < SCHEMA_VERSION:
                connection.executescript(SCHEMA)
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            connection.close()
            raise self._database_error(exc) from exc
        except BaseException:
            connection.close()
            raise
        if marker is None:
            self._write_marker()
        return connection

    def _create(self) -> None:
        """The first registry of this home: built aside, stamped, then moved into place, under a
        lock (parallel first runs create it once)."""
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / ".registry.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.db_path.exists():
                return
            staging = self.home / f".registry.db.creating-{os.getpid()}"
            try:
                connection = sqlite3.connect(staging, isolation_level=None)
                try:
                    connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    connection.execute("PRAGMA journal_mode=WAL")
                    connection.executescript(SCHEMA)
                finally:
                    connection.close()
                _fsync(staging)
                os.replace(staging, self.db_path)
            except sqlite3.DatabaseError as exc:
                raise self._database_error(exc) from exc
            except OSError as exc:
                raise StateWriteError(self.db_path, exc) from exc
            finally:
                staging.unlink(missing_ok=True)
            self._write_marker()

    def marker(self) -> dict[str, Any] | None:
        """The home's record that it holds a registry (None: it never did)."""
        try:
            text = self.marker_path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DamagedStateError(f"cannot read {self.marker_path}: {exc.strerror}") from exc
        try:
            marker = json.loads(text)
            if not isinstance(marker, dict):
                raise ValueError("not an object")
        except ValueError:
            # The marker only says "a registry was here": a torn one still says that.
            return {"created_at": "unknown", "damaged_marker": True}
        return marker

    def _write_marker(self) -> None:
        document = {"application_id": APPLICATION_ID, "database": self.db_path.name,
                    "schema_version": SCHEMA_VERSION, "registry_id": str(uuid.uuid4()),
                    "created_at": utc_now_iso()}
        try:
            _atomic_write(self.marker_path, json.dumps(document, indent=2) + "\n")
        except OSError as exc:  # the registry works without it; the next open writes it
            log.warning("could not write %s: %s", self.marker_path, exc)

    def _damaged(self, finding: str) -> DamagedStateError:
        marker = self.marker() or {}
        created = marker.get("created_at")
        message = (f"the registry {self.db_path} is damaged: {finding}" + (
            f" (this home has held a registry since {created})" if created else "")
            + "; nothing was changed")
        backups = self.backups()
        if backups:
            recovery = (f"restore the last backup ({backups[-1].name}) with `mlops registry "
                        f"restore`, or see what is wrong with `mlops registry check`")
        else:
            recovery = (f"no backup in {self.backup_dir}: restore {self.db_path.name} from your "
                        f"own copy; `mlops registry check` shows what is wrong")
        return DamagedStateError(message, recovery=recovery)

    def _database_error(self, exc: sqlite3.DatabaseError) -> Exception:
        text = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and any(
                phrase in text for phrase in ("disk is full", "readonly", "read-only",
                                              "disk I/O error", "unable to open")):
            return StateWriteError(self.db_path, text)
        if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
            return exc
        return self._damaged(f"it cannot be read ({text})")

    def check(self) -> dict[str, Any]:
        """What `mlops registry check` reports: the database, its identity, its backups."""
        report: dict[str, Any] = {"database": str(self.db_path), "marker": self.marker(),
                                  "backups": [str(p) for p in self.backups()]}
        try:
            self._verified = False
            with self._connect() as db:
                report["versions"] = db.execute("SELECT COUNT(*) FROM model_versions").fetchone()[0]
                report["pending_events"] = db.execute(
                    "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[0]
            report["ok"], report["problem"] = True, ""
            report["exists"] = self.db_path.exists()
        except DamagedStateError as exc:
            report["ok"], report["problem"] = False, str(exc)
            report["exists"] = self.db_path.exists()
        return report

    # -- backups ---------------------------------------------------------------------------

    def backups(self) -> list[Path]:
        """Backups, oldest first (names sort by time)."""
        try:
            return sorted(self.backup_dir.glob("registry-*.db"))
        except OSError:
            return []

    def _backup(self) -> None:
        """A consistent copy after a committed change (SQLite's online backup: it never sees a
        half-written transaction). Best effort: the change is committed whatever happens here."""
        try:
            self.backup_dir.mkdir(parents=True, exist_ok=True)
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            target = self.backup_dir / f"registry-{stamp}-{os.getpid()}.db"
            staging = self.backup_dir / f".{target.name}.partial"
            source = sqlite3.connect(self.db_path, timeout=30)
            try:
                copy = sqlite3.connect(staging)
                try:
                    source.backup(copy)
                finally:
                    copy.close()
            finally:
                source.close()
            _fsync(staging)
            os.replace(staging, target)
            for old in self.backups()[:-KEEP_BACKUPS]:
                old.unlink(missing_ok=True)
        except (OSError, sqlite3.Error) as exc:
            log.warning("registry backup skipped: %s", exc)
            try:
                staging.unlink(missing_ok=True)  # type: ignore[possibly-undefined]
            except (OSError, NameError):
                pass

    def restore(self, source: Path | None = None) -> dict[str, Any]:
        """Put a backup (default: the newest that passes SQLite's check) in place of
        registry.db; the database it replaces is kept beside it as registry.db.damaged-<time>."""
        candidates = [source] if source is not None else list(reversed(self.backups()))
        if not candidates:
            raise DamagedStateError(f"no backup in {self.backup_dir}",
                                    recovery="restore registry.db from your own copy")
        problems = []
        for candidate in candidates:
            problem = _backup_problem(candidate)
            if problem:
                problems.append(f"{candidate.name}: {problem}")
                continue
            moved_aside = ""
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            for suffix in ("", "-wal", "-shm"):
                current = self.db_path.with_name(self.db_path.name + suffix)
                if current.exists():
                    aside = current.with_name(f"{self.db_path.name}.damaged-{stamp}{suffix}")
                    os.replace(current, aside)
                    moved_aside = moved_aside or str(aside)
            staging = self.home / f".registry.db.restoring-{os.getpid()}"
            shutil.copyfile(candidate, staging)
            _fsync(staging)
            os.replace(staging, self.db_path)
            self._verified = False
            if self.marker() is None:
                self._write_marker()
            return {"restored_from": str(candidate), "moved_aside": moved_aside,
                    "skipped": problems}
        raise DamagedStateError("no usable backup (" + "; ".join(problems) + ")",
                                recovery="restore registry.db from your own copy")

    def register(self, request: RegistrationRequest) -> ModelVersion:
        if request.model_group != self.model_group:
            raise InvalidRegistrationError(
                f"request is for model group '{request.model_group}', registry holds "
                f"'{self.model_group}'")
        request.validate()
        model_uri = self._store_artifact(request.model_artifact)
        now = utc_now_iso()
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
            _sweep_dead_staging(self.artifacts)
            staging = Path(tempfile.mkdtemp(prefix=f".staging-{os.getpid()}-",
                                            dir=self.artifacts))
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
        moment = datetime.now(timezone.utc)
        now = iso_millis(moment)
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
            if self.status_event is not None:
                self._enqueue(db, self.status_event(updated, reason, moment))
        return updated, True

    # -- the outbox ------------------------------------------------------------------------

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

    def archive(self, version: int, *, actor: str, reason: str) -> tuple[ModelVersion, bool]:
        now = utc_now_iso()
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

    def unarchive(self, version: int, *, actor: str, reason: str) -> tuple[ModelVersion, bool]:
        """Bring an archived version back (recorded as a transition, like the archive)."""
        now = utc_now_iso()
        with self._connect(write=True) as db:
            current = self._fetch(db, version)
            if not current.archived_at:
                return current, False
            updated = replace(current, archived_at="")
            db.execute("UPDATE model_versions SET record = ? WHERE model_group = ? AND "
                       "version = ?", (json.dumps(updated.to_dict(), sort_keys=True),
                                       self.model_group, int(version)))
            db.execute("INSERT INTO transitions (model_group, version, from_status, to_status, "
                       "actor, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (self.model_group, int(version), "Archived", str(current.status),
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


_OUTBOX_COLUMNS = ("seq, event_id, detail_type, event, created_at, attempts, last_error, "
                   "delivered_at, outcome")


def _outbox_event(row: tuple) -> OutboxEvent:
    return OutboxEvent(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5], row[6],
                       row[7], json.loads(row[8]) if row[8] else None)


def _has_registry_tables(connection: sqlite3.Connection) -> bool:
    names = {row[0] for row in connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    return {"model_versions", "deployments", "transitions"} <= names


def _backup_problem(path: Path) -> str:
    """Why a backup cannot be restored ("" when it can)."""
    try:
        if path.stat().st_size == 0:
            return "empty"
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            (application_id,) = connection.execute("PRAGMA application_id").fetchone()
            if application_id != APPLICATION_ID:
                return f"not a registry of this kit (application id {application_id:#x})"
            problems = [row[0] for row in connection.execute("PRAGMA quick_check")]
            return "" if problems == ["ok"] else f"fails SQLite's check ({problems[0]})"
        finally:
            connection.close()
    except (OSError, sqlite3.Error) as exc:
        return str(exc)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        staging.write_text(text)
        _fsync(staging)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


def _sweep_dead_staging(folder: Path) -> None:
    """Remove `.staging-<pid>-*` folders whose process is gone (a copy killed midway); a live
    process's folder is left alone."""
    for staging in folder.glob(".staging-*"):
        pid_text = staging.name.split("-")[1] if staging.name.count("-") >= 2 else ""
        if pid_text.isdigit() and _alive(int(pid_text)):
            continue
        if not pid_text.isdigit():
            try:  # written before staging folders carried the pid: sweep once stale
                if datetime.now().timestamp() - staging.stat().st_mtime < 3600:
                    continue
            except OSError:
                continue
        shutil.rmtree(staging, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
