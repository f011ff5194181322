"""Approval decisions that are not the deployment itself (pure)."""

from __future__ import annotations

from typing import AbstractSet, Protocol


class _Version(Protocol):
    version: int
    status: str
    archived_at: str


def undeployed_approval(version: _Version, promoted: AbstractSet[int],
                        blocked: AbstractSet[int]) -> bool:
    """An Approved version that never became champion and may still: re-approving it sends its
    approval again. Not one that was promoted (the lineup has moved on since, or it serves),
    rolled back or rejected (blocked), or archived (unarchive it first)."""
    return (str(version.status) == "Approved" and not version.archived_at
            and version.version not in promoted and version.version not in blocked)
