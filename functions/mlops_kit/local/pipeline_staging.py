"""Staging folders of local pipeline runs: owned by a lock, swept when the owner is gone.

A run builds `runs/.staging-<id>/` while it holds an flock on `runs/.staging-<id>.lock` (taken
before the folder exists, dropped by the kernel however the process ends); each run first sweeps
the staging folders whose lock nobody holds (`pipeline_runner` marks their MLflow runs KILLED).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

STAGING_PREFIX = ".staging-"
LOCK_SUFFIX = ".lock"
CLAIM_PREFIX = ".staging-claim-"
RUN_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")
UNLOCKED_STAGING_MAX_AGE_S = 3600.0
"""A staging folder without a lock file was left by a version of the kit before the lock; one
untouched for this long belongs to no live run and is swept too."""


class StagingClaim:
    """`runs/.staging-<id>/` for as long as this run lives.

    The run holds an exclusive flock on `runs/.staging-<id>.lock`, created and locked before the
    folder exists and removed only after the folder is renamed or removed: a folder whose lock
    file nobody holds has no live owner. The kernel drops the lock when the process ends, however
    it ends, so a SIGKILLed run is recognisable without trusting a pid (pids are reused).
    """

    def __init__(self, runs_dir: Path):
        self.runs_dir = runs_dir
        self.run_id = ""
        self._fd: int | None = None

    @property
    def folder(self) -> Path:
        return self.runs_dir / f"{STAGING_PREFIX}{self.run_id}"

    @property
    def lock_file(self) -> Path:
        return self.runs_dir / f"{STAGING_PREFIX}{self.run_id}{LOCK_SUFFIX}"

    def __enter__(self) -> "StagingClaim":
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        # Locked under a private name first, then linked to the name sweepers look at: no
        # sweeper ever sees the lock file unlocked while its run is alive.
        fd, claim = tempfile.mkstemp(prefix=CLAIM_PREFIX, dir=self.runs_dir)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            while True:
                self.run_id = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
                try:
                    os.link(claim, self.lock_file)
                    break
                except FileExistsError:  # the same second and the same 24 random bits
                    continue
            self.folder.mkdir()
        except BaseException:
            if self.run_id:
                self.lock_file.unlink(missing_ok=True)
            os.close(fd)
            raise
        finally:
            os.unlink(claim)
        self._fd = fd
        return self

    def __exit__(self, *exc_info) -> None:
        # The folder is renamed or removed by now; the lock file goes first, then the lock.
        self.lock_file.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None


def sweep_abandoned_runs(runs_dir: Path, *, now: float | None = None) -> list[str]:
    """Remove the staging folders (and lock files) of runs that are gone; returns their run ids.

    Gone: nobody holds the folder's lock file (its process ended, SIGKILL included), or there
    is no lock file and nothing in the folder changed for UNLOCKED_STAGING_MAX_AGE_S (left by a
    kit version before the lock). A live run's folder is never touched: its lock is held.
    Only names of the runner's own shape are considered.
    """
    if not runs_dir.is_dir():
        return []
    now = time.time() if now is None else now
    swept: list[str] = []
    for entry in sorted(runs_dir.iterdir()):
        name = entry.name
        if name.startswith(CLAIM_PREFIX):  # a run that died within its first milliseconds
            fd = _lock_if_unowned(entry)
            if fd is not None:
                entry.unlink(missing_ok=True)
                os.close(fd)
            continue
        if not name.startswith(STAGING_PREFIX):
            continue
        run_id = name[len(STAGING_PREFIX):].removesuffix(LOCK_SUFFIX)
        if not RUN_ID.fullmatch(run_id):
            continue
        folder = runs_dir / f"{STAGING_PREFIX}{run_id}"
        lock_file = runs_dir / f"{STAGING_PREFIX}{run_id}{LOCK_SUFFIX}"
        if name.endswith(LOCK_SUFFIX) and folder.exists():
            continue  # handled with its folder
        fd = _lock_if_unowned(lock_file)
        if fd is not None:
            try:
                shutil.rmtree(folder, ignore_errors=True)
                lock_file.unlink(missing_ok=True)
            finally:
                os.close(fd)
        elif lock_file.exists() or not _untouched_for(folder, UNLOCKED_STAGING_MAX_AGE_S, now):
            continue  # a live run's (or a recent unlocked folder: maybe an old kit's live run)
        else:
            shutil.rmtree(folder, ignore_errors=True)
        if run_id not in swept:
            swept.append(run_id)
    return swept


def _lock_if_unowned(lock_file: Path) -> int | None:
    """A descriptor holding `lock_file`'s lock when nobody else holds it; None when its owner is
    alive or there is no such file."""
    try:
        fd = os.open(lock_file, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    return fd


def _untouched_for(folder: Path, seconds: float, now: float) -> bool:
    """True when nothing in `folder` (itself included) changed in the last `seconds`."""
    try:
        newest = folder.stat().st_mtime
        for root, dirs, files in os.walk(folder):
            for child in (*dirs, *files):
                newest = max(newest, os.lstat(os.path.join(root, child)).st_mtime)
    except FileNotFoundError:  # renamed or removed while we looked: not ours to sweep
        return False
    return now - newest >= seconds
