"""Promotion of one trained version through the environments (dev → staging → prod), pure.

A version is trained and registered once, in the registry of record; promoting it to an
environment is that environment's approval, recorded with who, when and why, and deployed by the
environment's own controller. The order is the environments' declared order: a version reaches an
environment only after the one before it, unless that environment declares that it may be skipped
and the promotion says so. An environment may also require a soak: the version has served the
previous environment as its champion for some minutes, with none of its rollback alarms firing.

Everything here decides over plain records; the homes gather the facts (the ledger's promotions,
each environment's endpoint and alarms) and apply the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Mapping, Sequence

PROMOTED = "Approved"
"""The `ModelLifeCycle.StageStatus` of a promotion: the version is approved for that stage
(the stage is the environment)."""


@dataclass(frozen=True)
class EnvironmentPolicy:
    """What an environment asks of a version before it may be promoted there."""

    name: str
    soak_minutes: int = 0
    """Minutes the version must have been the previous environment's champion, healthy."""
    skip_allowed: bool = False
    """A promotion may skip the previous environment when it asks to (`--override`)."""


@dataclass(frozen=True)
class Promotion:
    """One promotion of a model's version to an environment, as recorded in the ledger."""

    model: str
    version: int
    environment: str
    actor: str
    reason: str
    at: str
    """ISO-8601 UTC."""


@dataclass(frozen=True)
class EnvironmentFacts:
    """One environment as it is now, for one model."""

    champion: int | None = None
    champion_since: datetime | None = None
    firing_alarms: tuple[str, ...] = ()
    """Rollback alarms of the model's endpoint in ALARM."""
    blocked: frozenset[int] = frozenset()
    """Versions rolled back or rejected in this environment: never promoted again silently."""


@dataclass(frozen=True)
class PromotionDecision:
    allowed: bool
    reason: str
    already: bool = False
    """The version is already promoted there: nothing to do (the request is idempotent)."""
    skipped: str | None = None
    """The environment this promotion skips, by its override."""


def promotion_decision(order: Sequence[EnvironmentPolicy], deploys_to: Sequence[str], *,
                       model: str, version: int, target: str,
                       promotions: Iterable[Promotion],
                       facts: Mapping[str, EnvironmentFacts], now: datetime,
                       override: bool = False) -> PromotionDecision:
    """May `version` of `model` be promoted to `target` now, and if not, why not.

    `order` is every environment in promotion order; `deploys_to` the ones this model declares.
    """
    names = [policy.name for policy in order]
    if target not in names:
        return _refuse(f"unknown environment {target!r} (known: {', '.join(names)})")
    if target not in deploys_to:
        return _refuse(f"{model} does not deploy to {target} (it declares "
                       f"{', '.join(deploys_to) or 'none'})")
    promoted = {p.environment for p in promotions if p.model == model and p.version == version}
    here = facts.get(target, EnvironmentFacts())
    if version in here.blocked:
        return _refuse(f"{model} v{version} was rolled back or rejected in {target}: "
                       f"roll it forward there instead of promoting it again")
    if target in promoted:
        return PromotionDecision(True, f"{model} v{version} is already promoted to {target}",
                                 already=True)
    previous = _previous(order, deploys_to, target)
    if previous is None:
        return PromotionDecision(True, f"{target} is {model}'s first environment")
    policy = order[names.index(target)]
    if previous.name not in promoted:
        if override and policy.skip_allowed:
            return PromotionDecision(True, f"{target} declares that {previous.name} may be "
                                           f"skipped, and the promotion overrides it",
                                     skipped=previous.name)
        why = "" if policy.skip_allowed else f" ({target} declares no override)"
        return _refuse(f"promote {model} v{version} to {previous.name} before {target}{why}")
    return _soaked(policy, previous.name, facts.get(previous.name, EnvironmentFacts()),
                   model, version, now)


def _previous(order: Sequence[EnvironmentPolicy], deploys_to: Sequence[str],
              target: str) -> EnvironmentPolicy | None:
    """The environment before `target` among those the model deploys to."""
    mine = [policy for policy in order if policy.name in deploys_to]
    index = [policy.name for policy in mine].index(target)
    return mine[index - 1] if index else None


def _soaked(policy: EnvironmentPolicy, previous: str, facts: EnvironmentFacts, model: str,
            version: int, now: datetime) -> PromotionDecision:
    if version in facts.blocked:
        return _refuse(f"{model} v{version} was rolled back or rejected in {previous}")
    if not policy.soak_minutes:
        return PromotionDecision(True, f"{model} v{version} is promoted in {previous}")
    if facts.champion != version or facts.champion_since is None:
        return _refuse(f"{policy.name} needs {model} v{version} serving {previous} as champion "
                       f"for {policy.soak_minutes} min (champion there: "
                       f"{'v%d' % facts.champion if facts.champion else 'none'})")
    if facts.firing_alarms:
        return _refuse(f"{previous} has {model}'s alarm(s) firing: "
                       f"{', '.join(facts.firing_alarms)}")
    served = (now - facts.champion_since).total_seconds() / 60
    if served < policy.soak_minutes:
        return _refuse(f"{model} v{version} has served {previous} for {served:.0f} of the "
                       f"{policy.soak_minutes} min {policy.name} requires")
    return PromotionDecision(True, f"{model} v{version} served {previous} for {served:.0f} min "
                                   f"with no alarm firing")


def _refuse(reason: str) -> PromotionDecision:
    return PromotionDecision(False, reason)


def furthest_environment(order: Sequence[str], promoted: Iterable[str]) -> str | None:
    """The last environment in `order` a version is promoted to: the registry's lifecycle stage."""
    reached = set(promoted)
    furthest = [name for name in order if name in reached]
    return furthest[-1] if furthest else None

