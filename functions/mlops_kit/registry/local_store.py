"""The local registry's SQLite file: opening it (a registry that existed is never mistaken for
an empty one), its identity marker and its backups; its schema is `local_schema`.

`registry.db` carries the kit's application id and schema version (SQLite's
`PRAGMA application_id`/`user_version`) and the home keeps a marker (`registry.id.json`) once a
registry was created there. A missing, empty, truncated or foreign database in a home that had
one is `DamagedStateError` (the CLI's exit 6, with the way back). After every committed change a
copy is taken with SQLite's online backup API into `backups/` (the last `KEEP_BACKUPS`), which
`mlops registry restore` puts back.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import sqlite3
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from mlops_kit.clock import utc_now_iso
from mlops_kit.ports import DamagedStateError, StateWriteError

from .local_schema import APPLICATION_ID, SCHEMA, SCHEMA_VERSION, has_registry_tables

log = logging.getLogger("mlops_kit.registry.local")

MARKER = "registry.id.json"
BACKUP_DIR = "backups"
KEEP_BACKUPS = 3


class RegistryStore:
    """The SQLite file under `home` with its marker and backups; the registry's semantics live
    in `LocalRegistry`, which inherits this."""

    model_group: str

    def __init__(self, home: str | Path):
        self.home = Path(home)
        self.db_path = self.home / "registry.db"
        self.marker_path = self.home / MARKER
        self.backup_dir = self.home / BACKUP_DIR
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
                if application_id != 0 or marker is not None or not has_registry_tables(
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

    def _rows(self, select: str, order: str, **equal: Any) -> list[tuple]:
        """This model group's rows of `select`, narrowed to `column = value` for each filter
        given (None: not narrowed)."""
        query, args = f"{select} WHERE model_group = ?", [self.model_group]
        for column, value in equal.items():
            if value is not None:
                query += f" AND {column} = ?"
                args.append(value)
        with self._connect() as db:
            return db.execute(f"{query} ORDER BY {order}", args).fetchall()



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
