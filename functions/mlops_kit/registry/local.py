"""Local registry of record: SQLite (transactions, so a version is written whole or not at
all) plus content-addressed model artifacts under $MLOPS_HOME/registry/.

This module holds the registry's semantics (versions, approvals, archiving, the audit trail);
the file itself (identity, backups) is `local_store`, its schema `local_schema`, the event
outbox `local_outbox`, the promotions to environments `local_promotions` and the deployment
history with its rollback claims `local_deployments`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from mlops_kit.clock import utc_now_iso
from mlops_kit.core.timestamps import iso_millis

from .base import (ApprovalStatus, InvalidRegistrationError, ModelRegistry, ModelVersion,
                   RegistrationRequest, Transition, UnknownVersionError)
from .local_deployments import DeploymentLedger
from .local_outbox import MAX_DELIVERY_ATTEMPTS, Outbox, OutboxEvent, StatusEvent
from .local_promotions import PromotionEvent, PromotionLedger
from .local_schema import APPLICATION_ID, SCHEMA, SCHEMA_VERSION
from .local_store import BACKUP_DIR, KEEP_BACKUPS, MARKER, RegistryStore

__all__ = ["APPLICATION_ID", "BACKUP_DIR", "KEEP_BACKUPS", "MARKER", "MAX_DELIVERY_ATTEMPTS",
           "SCHEMA", "SCHEMA_VERSION", "LocalRegistry", "OutboxEvent", "StatusEvent"]


class LocalRegistry(RegistryStore, Outbox, DeploymentLedger, PromotionLedger, ModelRegistry):
    def __init__(self, home: str | Path, model_group: str, *,
                 status_event: StatusEvent | None = None,
                 promotion_event: PromotionEvent | None = None):
        super().__init__(home)
        self.model_group = model_group
        self.artifacts = self.home / "registry" / "artifacts"
        self.status_event = status_event
        self.promotion_event = promotion_event

    def register(self, request: RegistrationRequest) -> ModelVersion:
        request.validate_for(self.model_group)
        model_uri = self._store_artifact(request.model_artifact)
        now = utc_now_iso()
        with self._connect(write=True) as db:
            db.execute("INSERT OR IGNORE INTO model_groups VALUES (?, ?, ?, ?)",
                       (self.model_group, request.owner, request.use_case, now))
            (latest,) = db.execute("SELECT COALESCE(MAX(version), 0) FROM model_versions "
                                   "WHERE model_group = ?", (self.model_group,)).fetchone()
            version = ModelVersion.registered(request, version=latest + 1, at=now,
                                              model_uri=model_uri, lineage=dict(request.lineage))
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
        rows = self._rows("SELECT record FROM model_versions", "version",
                          status=str(status) if status is not None else None)
        return [_version_from_json(record) for (record,) in rows]

    def transitions(self, version: int | None = None) -> list[Transition]:
        rows = self._rows("SELECT model_group, version, from_status, to_status, actor, reason, "
                          "at, details FROM transitions", "id",
                          version=int(version) if version is not None else None)
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
        with self._connect(write=True) as db:
            current = self._fetch(db, version)
            if current.status == status:
                return current, False
            updated = self._write_status(db, current, status, actor=actor, reason=reason,
                                         now=iso_millis(moment))
            if self.status_event is not None:
                self._enqueue(db, self.status_event(updated, reason, moment))
        return updated, True

    def _write_status(self, db: sqlite3.Connection, current: ModelVersion,
                      status: ApprovalStatus, *, actor: str, reason: str,
                      now: str) -> ModelVersion:
        """The status change and its transition row, inside the caller's transaction."""
        updated = replace(current, status=status, status_changed_at=now,
                          status_changed_by=actor, status_reason=reason)
        db.execute("UPDATE model_versions SET status = ?, record = ? WHERE model_group = ? "
                   "AND version = ?", (str(status), json.dumps(updated.to_dict(), sort_keys=True),
                                       self.model_group, int(current.version)))
        db.execute("INSERT INTO transitions (model_group, version, from_status, to_status, "
                   "actor, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (self.model_group, int(current.version), str(current.status), str(status),
                    actor, reason, now))
        return updated

    def archive(self, version: int, *, actor: str, reason: str) -> tuple[ModelVersion, bool]:
        return self._set_archived(version, True, actor=actor, reason=reason)

    def unarchive(self, version: int, *, actor: str, reason: str) -> tuple[ModelVersion, bool]:
        """Bring an archived version back (recorded as a transition, like the archive)."""
        return self._set_archived(version, False, actor=actor, reason=reason)

    def _set_archived(self, version: int, archived: bool, *, actor: str,
                      reason: str) -> tuple[ModelVersion, bool]:
        """Archive or bring back, with the transition to or from "Archived"."""
        now = utc_now_iso()
        with self._connect(write=True) as db:
            current = self._fetch(db, version)
            if bool(current.archived_at) == archived:
                return current, False
            updated = replace(current, archived_at=now if archived else "")
            db.execute("UPDATE model_versions SET record = ? WHERE model_group = ? AND "
                       "version = ?", (json.dumps(updated.to_dict(), sort_keys=True),
                                       self.model_group, int(version)))
            statuses = ((str(current.status), "Archived") if archived
                        else ("Archived", str(current.status)))
            db.execute("INSERT INTO transitions (model_group, version, from_status, to_status, "
                       "actor, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (self.model_group, int(version), *statuses, actor, reason, now))
        return updated, True


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
