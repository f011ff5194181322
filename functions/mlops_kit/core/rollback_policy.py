"""Rollback policy: on an alarm, which warm fallback takes the traffic, or why none does.

Pure: the controllers gather the facts (endpoint variants, probe results, registry status,
history) and this module decides. The same decision runs in the Lambda and locally.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Mapping, Sequence

from mlops_kit.core.rotation import VariantWeight, serving_champion

DEFAULT_COOLDOWN = timedelta(minutes=15)


@dataclass(frozen=True)
class VariantHealth:
    variant_name: str
    in_service: bool
    instance_count: int
    probe_ok: bool | None
    """Result of the last synthetic probe; None when it was never probed."""


@dataclass(frozen=True)
class RollbackFacts:
    endpoint_status: str
    variants: tuple[VariantWeight, ...]
    health: Mapping[str, VariantHealth]
    blocked_versions: frozenset[int]
    """Rejected, or rolled back earlier: never a target."""
    last_rollback_at: datetime | None
    now: datetime
    guardrail_in_flight: bool = False


@dataclass(frozen=True)
class RollbackDecision:
    action: str
    """rollback | none | defer | no_healthy_fallback"""
    reason: str
    from_version: int | None = None
    to_version: int | None = None
    weights: Mapping[str, float] | None = None
    skipped: tuple[str, ...] = ()
    """Why each newer fallback was passed over."""


def decide_rollback(facts: RollbackFacts, *, cooldown: timedelta = DEFAULT_COOLDOWN,
                    require_probe: bool = True) -> RollbackDecision:
    """Pick the newest healthy warm fallback; never leave total weight 0."""
    if facts.guardrail_in_flight or facts.endpoint_status in ("Updating", "Creating",
                                                              "SystemUpdating", "RollingBack"):
        return RollbackDecision("defer", f"endpoint is {facts.endpoint_status}"
                                         + (" (guardrail deployment in flight)"
                                            if facts.guardrail_in_flight else "")
                                         + ": retry once it is InService")
    if facts.endpoint_status != "InService":
        return RollbackDecision("none", f"endpoint is {facts.endpoint_status}: nothing to shift")
    champion = serving_champion(facts.variants)
    if champion is None:
        return RollbackDecision("none", "no variant takes traffic")
    if facts.last_rollback_at is not None and facts.now - facts.last_rollback_at < cooldown:
        return RollbackDecision("none", f"cooldown: rolled back at {facts.last_rollback_at:%H:%M:%S}"
                                        f", less than {cooldown} ago", champion.version)
    skipped = []
    fallbacks = sorted((v for v in facts.variants if v.variant_name != champion.variant_name),
                       key=lambda v: -v.version)
    for candidate in fallbacks:
        why = unfit_reason(candidate, facts, require_probe)
        if why:
            skipped.append(f"{candidate.variant_name}: {why}")
            continue
        weights = {v.variant_name: (1.0 if v.variant_name == candidate.variant_name else 0.0)
                   for v in facts.variants}
        return RollbackDecision("rollback", f"v{champion.version} → v{candidate.version}",
                                champion.version, candidate.version, weights, tuple(skipped))
    return RollbackDecision("no_healthy_fallback",
                            "no healthy warm fallback: traffic stays on "
                            f"v{champion.version}" + (f" ({'; '.join(skipped)})" if skipped else ""),
                            champion.version, skipped=tuple(skipped))


def unfit_reason(candidate: VariantWeight, facts: RollbackFacts, require_probe: bool) -> str:
    """Why a variant cannot take the traffic ("" when it can)."""
    if candidate.version in facts.blocked_versions:
        return "rejected or rolled back before"
    health = facts.health.get(candidate.variant_name)
    if health is None:
        return "no health information"
    if not health.in_service:
        return "not in service"
    if health.instance_count < 1:
        return "no instances"
    if health.probe_ok is False:
        return "failed its last probe"
    if health.probe_ok is None and require_probe:
        return "never probed"
    return ""


def last_rollback_time(records: Sequence) -> datetime | None:
    """The time of the latest rollback in a deployment history (DeploymentRecord list)."""
    for record in reversed(records):
        if record.kind == "rollback":
            return datetime.fromisoformat(record.at.replace("Z", "+00:00"))
    return None
