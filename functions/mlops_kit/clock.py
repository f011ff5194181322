"""The one clock of the kit's code: now, in UTC. Modules take a `clock` argument defaulting to
this where tests need to move time; formats live in `core/timestamps.py`."""

from __future__ import annotations

from datetime import datetime, timezone

from mlops_kit.core.timestamps import iso_millis


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def utc_now_iso() -> str:
    """Now as the registry and the ledger write a record time."""
    return iso_millis(utc_now())
