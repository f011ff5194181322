"""Retention: which versions to archive so the registry never becomes a junk drawer.

Archived: versions never approved once they are older than `max_age_days`, and versions never
approved beyond the `keep_recent` newest. Never archived: the champion and its warm fallbacks
(N-1, N-2), and any version that was ever approved (it is part of the serving history).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable, Sequence


@dataclass(frozen=True)
class RetentionPolicy:
    max_age_days: float = 30.0
    keep_recent: int = 10

    def __post_init__(self) -> None:
        if self.max_age_days < 0 or self.keep_recent < 0:
            raise ValueError("max_age_days and keep_recent must not be negative")


@dataclass(frozen=True)
class RetentionCandidate:
    version: int
    created_at: datetime
    ever_approved: bool
    archived: bool = False


@dataclass(frozen=True)
class ArchiveDecision:
    version: int
    reason: str


def select_for_archive(candidates: Sequence[RetentionCandidate], protected: Iterable[int],
                       policy: RetentionPolicy, now: datetime) -> list[ArchiveDecision]:
    keep = set(protected)
    live = sorted((c for c in candidates if not c.archived), key=lambda c: -c.version)
    never_approved = [c for c in live if not c.ever_approved]
    recent = {c.version for c in never_approved[:policy.keep_recent]}
    cutoff = now - timedelta(days=policy.max_age_days)
    decisions = []
    for candidate in sorted(live, key=lambda c: c.version):
        if candidate.version in keep or candidate.ever_approved:
            continue
        if candidate.created_at < cutoff:
            decisions.append(ArchiveDecision(
                candidate.version, f"never approved and older than {policy.max_age_days:g} days"))
        elif candidate.version not in recent:
            decisions.append(ArchiveDecision(
                candidate.version, f"never approved and not among the {policy.keep_recent} "
                                   f"most recent versions"))
    return decisions
