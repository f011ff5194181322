"""Approval decisions that are not the deployment itself (pure)."""

from __future__ import annotations

from typing import AbstractSet, Protocol


class _Lifecycle(Protocol):
    stage: str


class _StateChange(Protocol):
    """`deploy.events.ModelPackageStateChange`, as these rules read it."""
    status: str
    updated_fields: tuple[str, ...] | None
    lifecycle: _Lifecycle | None
    promotes: bool


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


def deploy_decision(change: _StateChange,
                    environment: str | None = None) -> tuple[bool, str]:
    """Act only on a change of the approval status to Approved; in an environment of a fleet,
    only on the version's promotion to that environment.

    Our own metadata write-backs (and any other field update) also emit this event, with the
    status still Approved: those must not deploy again.
    """
    if environment is not None:
        return _promotion_decision(change, environment)
    if change.lifecycle is not None and change.promotes:
        return False, (f"a promotion to {change.lifecycle.stage}: that environment's "
                       f"controller deploys it")
    if change.status != "Approved":
        return False, f"status is {change.status}: only Approved versions deploy"
    if change.updated_fields is not None and "ModelApprovalStatus" not in change.updated_fields:
        return False, (f"approval status unchanged (updated: "
                       f"{', '.join(change.updated_fields) or 'nothing'})")
    return True, "approved"


def _promotion_decision(change: _StateChange, environment: str) -> tuple[bool, str]:
    if change.lifecycle is None or not change.promotes:
        return False, f"not a promotion (only promotions to {environment} deploy here)"
    if change.lifecycle.stage != environment:
        return False, f"promoted to {change.lifecycle.stage}, not {environment}"
    if change.status != "Approved":
        return False, f"status is {change.status}: only Approved versions deploy"
    return True, f"promoted to {environment}"
