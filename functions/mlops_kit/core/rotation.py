"""Variant rotation: which versions an endpoint serves after a promotion.

The endpoint keeps the champion at full weight and the previous champions (N-1, N-2) warm at
weight 0, so going back costs a weight change, not a new fleet. Everything here is derived from
the deployment history; nothing is kept by hand.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Collection, Iterable, Mapping, Sequence

MAX_VARIANTS = 10
"""SageMaker's limit of production variants per endpoint config."""
DEFAULT_WARM_FALLBACKS = 2
BUSY_STATUSES = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack"})
"""SageMaker EndpointStatus values during which the endpoint takes no change: come back later."""
VARIANT_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def variant_name(version: int) -> str:
    return f"v{int(version)}"


def version_of_variant(name: str) -> int:
    if not (name.startswith("v") and name[1:].isdigit()):
        raise ValueError(f"variant '{name}' is not named after a model version (v<N>)")
    return int(name[1:])


@dataclass(frozen=True)
class VariantWeight:
    variant_name: str
    version: int
    weight: float
    instance_count: int = 1

    def to_dict(self) -> dict:
        return {"variant_name": self.variant_name, "version": self.version,
                "weight": self.weight, "instance_count": self.instance_count}

    @classmethod
    def from_dict(cls, raw: dict) -> "VariantWeight":
        return cls(str(raw["variant_name"]), int(raw["version"]), float(raw["weight"]),
                   int(raw.get("instance_count", 1)))


@dataclass(frozen=True)
class Lineup:
    """Champion first, then the warm fallbacks, newest first."""
    versions: tuple[int, ...]

    @property
    def champion(self) -> int | None:
        return self.versions[0] if self.versions else None

    @property
    def fallbacks(self) -> tuple[int, ...]:
        return self.versions[1:]


def promotion_history(promotions: Iterable[int]) -> list[int]:
    """Distinct promoted versions, most recent first (a re-promotion moves a version up)."""
    seen: list[int] = []
    for version in reversed(list(promotions)):
        if version not in seen:
            seen.append(version)
    return seen


def lineup_after_promotion(promotions: Sequence[int], new_version: int, *,
                           excluded: Iterable[int] = (),
                           warm_fallbacks: int = DEFAULT_WARM_FALLBACKS) -> Lineup:
    """The lineup once `new_version` is promoted on top of the earlier promotions.

    `excluded` are versions that must not stay warm (rejected, or rolled back and blocked).
    """
    if not 0 <= warm_fallbacks <= MAX_VARIANTS - 1:
        raise ValueError(f"warm_fallbacks must be between 0 and {MAX_VARIANTS - 1}")
    blocked = set(excluded)
    previous = [v for v in promotion_history(promotions) if v != new_version and v not in blocked]
    return Lineup((new_version, *previous[:warm_fallbacks]))


@dataclass(frozen=True)
class PromotionPlan:
    """What an approval deploys: the lineup, and why the approved version is not its champion
    when it is not ("" when it is)."""
    lineup: Lineup
    held_by: int | None = None
    """The newer version that keeps the traffic (None: the approved version takes it)."""
    reason: str = ""


def plan_promotion(promotions: Sequence[int], new_version: int, *, serving: int | None = None,
                   excluded: Iterable[int] = (),
                   warm_fallbacks: int = DEFAULT_WARM_FALLBACKS) -> PromotionPlan:
    """The lineup an approval of `new_version` deploys, given what the endpoint serves now.

    The champion is the newest approved version: an approval never puts a version above a
    newer one that serves (`serving`, the endpoint's champion now, not blocked). That one keeps
    the traffic and the approved version joins the warm fallbacks in the slot the last
    promotion's N-1 would have had, so two approvals give one lineup whichever lands first:
    v3 then v4 gives (4, 3, 2) from (2, 1), and so does v4 then v3. The controller calls this
    again inside every busy retry with the history and endpoint as they are then, so an
    approval that overlapped another (two Lambda invocations) decides on the other's result.
    Otherwise it is `lineup_after_promotion`. (A rollback picks among the fallbacks by version,
    newest first, whatever their order here.)

    `promotions` are the approved versions of the earlier promotions, oldest first.
    """
    blocked = set(excluded)
    if serving is None or serving <= new_version or serving in blocked:
        return PromotionPlan(lineup_after_promotion(promotions, new_version, excluded=blocked,
                                                    warm_fallbacks=warm_fallbacks))
    if not 0 <= warm_fallbacks <= MAX_VARIANTS - 1:
        raise ValueError(f"warm_fallbacks must be between 0 and {MAX_VARIANTS - 1}")
    previous = [v for v in promotion_history(promotions)
                if v not in (serving, new_version) and v not in blocked]
    fallbacks = ([new_version, *previous][:warm_fallbacks])
    joined = new_version in fallbacks
    reason = (f"v{serving} is newer and keeps the traffic: v{new_version} "
              + ("joins the warm fallbacks (`mlops rollforward --to "
                 f"{new_version} --reason ...` serves it)" if joined
                 else "is not deployed (no warm fallback slots)"))
    return PromotionPlan(Lineup((serving, *sorted(fallbacks, reverse=True))), serving, reason)


def promotion_weights(lineup: Lineup, instance_count: int = 1,
                      fallback_instance_count: int | None = None) -> tuple[VariantWeight, ...]:
    """Champion at weight 1, fallbacks at weight 0 but with instances: warm, not cold."""
    if instance_count < 1 or (fallback_instance_count is not None and fallback_instance_count < 1):
        raise ValueError("every variant needs at least one instance, even at weight 0")
    warm = fallback_instance_count or instance_count
    return tuple(
        VariantWeight(variant_name(version), version, 1.0 if i == 0 else 0.0,
                      instance_count if i == 0 else warm)
        for i, version in enumerate(lineup.versions))


def variant_set(variants: Sequence[VariantWeight]) -> frozenset[tuple[str, int]]:
    """Which versions the endpoint serves under which variant names: what a deploy changes and
    a weight change never does."""
    return frozenset((v.variant_name, v.version) for v in variants)


def same_traffic(current: Sequence[VariantWeight], other: Sequence[VariantWeight]) -> bool:
    """The same variants at the same weights, instance counts aside: what the rollback
    controller compares with the history (a weight change is what it makes; instance counts
    move on their own, e.g. autoscaling, and a record keeps the ones it asked for)."""
    def key(variants):
        return {(v.variant_name, v.version, float(v.weight)) for v in variants}
    return key(current) == key(other)


def same_serving(current: Sequence[VariantWeight], target: Sequence[VariantWeight]) -> bool:
    """True when the endpoint already serves exactly the target, instance counts included
    (what a deploy sets: a re-approval that changes nothing is a no-op)."""
    def key(variants):
        return sorted((v.variant_name, v.version, round(v.weight, 6), v.instance_count)
                      for v in variants)
    return key(current) == key(target)


def check_weights(weights: Mapping[str, float]) -> None:
    """Weights an endpoint may take: finite, not negative, and not all 0 (it would serve
    nothing). ValueError naming the variant otherwise."""
    if not weights:
        raise ValueError("no weights given")
    for name, weight in weights.items():
        if not math.isfinite(float(weight)) or float(weight) < 0:
            raise ValueError(f"variant {name}: weight must be a finite number >= 0")
    if sum(float(w) for w in weights.values()) <= 0:
        raise ValueError("refusing a total weight of 0: the endpoint would serve nothing")


def validate_lineup(variants: Sequence[VariantWeight], model_versions: Collection[int]) -> None:
    """What every endpoint adapter deploys, in either home: 1 to MAX_VARIANTS variants with
    unique names, each named after its version (v<N>: how the controllers read an endpoint
    back), each with an instance (warm, even at weight 0) and a model source among
    `model_versions`, and weights `check_weights` accepts. ValueError saying what is wrong."""
    if not variants:
        raise ValueError("an endpoint config needs at least one variant")
    if len(variants) > MAX_VARIANTS:
        raise ValueError(f"{len(variants)} variants: an endpoint config holds at most "
                         f"{MAX_VARIANTS}")
    names = [v.variant_name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"variant names must be unique: {names}")
    for v in variants:
        if v.variant_name != variant_name(v.version):
            raise ValueError(f"variant '{v.variant_name}' must be named {variant_name(v.version)}")
        if v.instance_count < 1:
            raise ValueError(f"variant {v.variant_name}: at least one instance, even at weight 0")
        if v.version not in model_versions:
            raise ValueError(f"no model source for version {v.version}")
    check_weights({v.variant_name: v.weight for v in variants})


def serving_champion(variants: Sequence[VariantWeight]) -> VariantWeight | None:
    """The variant taking the traffic: the highest weight, newest version on ties."""
    live = [v for v in variants if v.weight > 0]
    if not live:
        return None
    return max(live, key=lambda v: (v.weight, v.version))


def serving_lineup(variants: Sequence[VariantWeight], blocked: Iterable[int] = ()) -> Lineup:
    """The lineup an endpoint serves now: its champion, then the warm variants a rollback
    could pick (not blocked: rolled back or rejected), newest first. A version rolled back is
    still warm at weight 0 until the next promotion replaces it, but it is no fallback, so it
    is not in the lineup. Empty when nothing takes traffic."""
    champion = serving_champion(variants)
    if champion is None:
        return Lineup(())
    excluded = set(blocked)
    fallbacks = sorted({v.version for v in variants
                        if v.version != champion.version and v.version not in excluded},
                       reverse=True)
    return Lineup((champion.version, *fallbacks))


def promotion_order(history: Sequence[Any]) -> tuple[int, ...]:
    """Every version that served as a promotion's champion, newest first, with the lineup the
    latest promotion deployed (its evidence's `lineup`) leading: an older approval joins the
    fallbacks without taking the traffic (its record names the champion it kept), so the
    deployed lineup, not the order of the records, says who is N-1. Rollbacks do not reorder
    it: it is the order of promotions, not what serves (`serving_lineup`).

    `history` is an endpoint's deployment records (kind, version, evidence), oldest first."""
    promotions = [d for d in history if d.kind == "promote"]
    if not promotions:
        return ()
    deployed = [int(v) for v in promotions[-1].evidence.get("lineup", [])]
    older = promotion_history([d.version for d in promotions])
    return tuple(deployed + [v for v in older if v not in deployed])


def protected_versions(history: Sequence[Any], *,
                       warm_fallbacks: int = DEFAULT_WARM_FALLBACKS) -> set[int]:
    """Versions retention must never archive: the champion and its warm fallbacks by the
    promotions (the first 1 + `warm_fallbacks` of `promotion_order`), and every version the
    endpoint's latest record serves (a rolled-back version stays warm until it is replaced)."""
    protected = set(promotion_order(history)[:1 + warm_fallbacks])
    if history:
        protected |= {v.version for v in history[-1].variants}
    return protected
