"""The local registry's SQLite schema and the stamps that make a registry.db this kit's.

`registry.db` carries the kit's application id and schema version (SQLite's
`PRAGMA application_id`/`user_version`); a file without them that holds the registry's tables
is a registry from before the kit stamped its files.
"""

from __future__ import annotations

import sqlite3

from .local_promotions import PROMOTIONS_SCHEMA

APPLICATION_ID = 0x4D4C4F50
"""'MLOP': SQLite's application id of a registry.db written by this kit."""
SCHEMA_VERSION = 3
"""`PRAGMA user_version`: 1 had no outbox, 2 adds it, 3 the promotions (added on open)."""

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
""" + PROMOTIONS_SCHEMA


def has_registry_tables(connection: sqlite3.Connection) -> bool:
    names = {row[0] for row in connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    return {"model_versions", "deployments", "transitions"} <= names
