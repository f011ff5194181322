"""The checks a traffic shift makes against the endpoint as it is (pure).

The rollback controller decides on the endpoint it described and on the deployment history;
between those and its weight change, three things can be out of step, and each is decided here:
- the endpoint is not what its last record says (`classify_unrecorded_change`): an earlier
  delivery of this kit's shifted and died before recording (finish it), or something else
  changed it (decide on the endpoint as it is, and say so);
- the endpoint moved while deciding (`stale_decision_reason`): decide again;
- another alarm of the incident holds the rollback claim (`claim_held_reason`): do nothing,
  and tell on-call only when the holder looks dead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import AbstractSet, Any, Mapping, Protocol, Sequence

from mlops_kit.core.rotation import VariantWeight, same_traffic, serving_champion, variant_set
from mlops_kit.core.timestamps import parse_iso

AS_RECORDED = "as_recorded"
UNRECORDED_SHIFT = "unrecorded_shift"
FOREIGN_CHANGE = "foreign_change"


class Claim(Protocol):
    """A rollback claim as the registry keeps it (`registry.base.RollbackClaim`)."""
    rolled_back_from: str
    claimed_by: str
    claimed_at: str
    from_version: int | None
    to_version: int | None


class Record(Protocol):
    """A deployment record as the registry keeps it (`registry.base.DeploymentRecord`)."""
    deployment_id: str
    variants: tuple[VariantWeight, ...]


@dataclass(frozen=True)
class EndpointChange:
    """How the endpoint stands against its head record."""
    kind: str
    """as_recorded (it matches, or there is nothing to compare) | unrecorded_shift (a shift of
    this kit's whose record is missing: record it, do not decide again) | foreign_change
    (changed by something else: decide on the endpoint as it is)"""
    from_version: int | None = None
    """For an unrecorded shift: the version it moved the traffic away from."""
    note: str = ""
    """For a foreign change: what the evidence keeps about it."""


def classify_unrecorded_change(endpoint_name: str, variants: Sequence[VariantWeight],
                               head: Record | None, claim: Claim | None, *,
                               blocked: AbstractSet[int], manual: bool,
                               deployment_id: str) -> EndpointChange:
    """Compare what the endpoint serves (`variants`) with its head record.

    `claim` is the live rollback claim on the head (None: none, or not read because the
    endpoint matches). A manual shift finishes only its own unrecorded shift: the claim is
    `deployment_id`'s and names what serves now as its target. An alarm's rollback finishes
    any shift `unrecorded_rollback_from` recognises; any other difference in which the
    champion or the variant set changed is a foreign change (e.g. a promotion applied whose
    record failed): recording it as a rollback would name the new champion the fallback and
    never roll back from it, and waiting for its record could wait for ever, while the alarm is
    about what serves now."""
    champion = serving_champion(variants)
    if champion is None or head is None or same_traffic(variants, head.variants):
        return EndpointChange(AS_RECORDED)
    if manual:
        if (claim is not None and claim.claimed_by == deployment_id
                and claim.to_version == champion.version and claim.from_version is not None):
            return EndpointChange(UNRECORDED_SHIFT, claim.from_version)
        return EndpointChange(AS_RECORDED)
    previous = unrecorded_rollback_from(variants, head, claim, blocked)
    if previous is not None:
        return EndpointChange(UNRECORDED_SHIFT, previous)
    recorded = serving_champion(head.variants)
    if (recorded is not None and recorded.version == champion.version
            and variant_set(variants) == variant_set(head.variants)):
        return EndpointChange(AS_RECORDED)
    return EndpointChange(FOREIGN_CHANGE, note=(
        f"{endpoint_name} serves v{champion.version} in a lineup no record names (last record "
        f"{head.deployment_id}: v{recorded.version if recorded else '?'}); decided on the "
        f"endpoint as it is"))


def unrecorded_rollback_from(variants: Sequence[VariantWeight], head: Record,
                             claim: Claim | None, blocked: AbstractSet[int]) -> int | None:
    """The version rolled back from when the endpoint, unlike its head record, is what an
    alarm's rollback from that head leaves; None for any other change.

    Either the live claim on the head names the serving champion as its holder's target (the
    holder decided that shift and made it), or, for a shift whose claim is gone, the lineup has
    a rollback's shape: the same variants as the head record, the champion one of its warm
    weight-0 fallbacks and not a blocked version (a rollback never picks one), the recorded
    champion now at weight 0. A promotion brings a new variant set; a roll-forward sends the
    traffic to a blocked version: neither passes."""
    champion = serving_champion(variants)
    if champion is None:
        return None
    if (claim is not None and claim.to_version == champion.version
            and claim.from_version is not None and claim.from_version != champion.version):
        return claim.from_version
    recorded = serving_champion(head.variants)
    if recorded is None or recorded.version == champion.version:
        return None
    if variant_set(variants) != variant_set(head.variants):
        return None
    before = {v.variant_name: v for v in head.variants}
    now = {v.variant_name: v for v in variants}
    if before[champion.variant_name].weight != 0 or champion.version in blocked:
        return None
    if now[recorded.variant_name].weight != 0:
        return None
    return recorded.version


def stale_decision_reason(endpoint_name: str, decided_on: Sequence[VariantWeight],
                          weights: Mapping[str, float], now: Sequence[VariantWeight] | None,
                          from_version: int | None) -> str:
    """Why weights decided on the endpoint as it was (`decided_on`) must not be applied to it
    as it is `now` ("" when they may).

    The lineup changed (a promotion replaced it meanwhile; in AWS the deployment Lambda runs
    apart from the rollback's): applying the weights would leave a mixed lineup (the new
    champion and the fallback both at 1) or name a variant that is gone. The traffic moved
    (another alarm's invocation shifted it: reserved concurrency 1 is not a lock, and
    UpdateEndpointWeightsAndCapacities has no compare-and-swap): shifting again would record a
    second rollback for one incident. Either way the caller decides again (and finds the
    new lineup, or that rollback's cooldown). `now` is None when the endpoint is gone."""
    names = sorted(v.variant_name for v in now) if now is not None else []
    if names != sorted(weights):
        return (f"the lineup of {endpoint_name} changed while deciding (decided for "
                f"{', '.join(sorted(weights))}; now {', '.join(names) or 'none'})")
    if {v.variant_name: v.weight for v in now or ()} != {v.variant_name: v.weight
                                                         for v in decided_on}:
        return (f"the traffic of {endpoint_name} moved while deciding (decided from "
                f"v{from_version} serving)")
    return ""


@dataclass(frozen=True)
class ClaimHeld:
    """What an alarm held off by another's rollback claim answers."""
    reason: str
    alert: bool
    """True when on-call must hear of it: the holder looks dead."""
    details: Mapping[str, Any]


def claim_held_reason(endpoint_name: str, claim: Claim, from_version: int | None,
                      now: datetime, *, alert_after: timedelta,
                      stale_after: timedelta) -> ClaimHeld:
    """`none`: another alarm's rollback holds this incident. A claim younger than
    `alert_after` is the normal case of two alarms of one incident seconds apart, and its
    holder notifies its own rollback; one at least that old (its holder's invocation has
    ended without recording: it died, and its redelivery or the take-over after
    `stale_after` is all that is left) alerts on-call, since this alarm's `none` is cached by
    idempotency and will not run again."""
    reason = (f"{claim.claimed_by} already rolls {endpoint_name} back from v{from_version} "
              f"({claim.rolled_back_from}), claimed at {claim.claimed_at}: one rollback per "
              f"incident, nothing shifted")
    details = {"claimed_by": claim.claimed_by, "claimed_at": claim.claimed_at,
               "rolled_back_from": claim.rolled_back_from}
    try:
        claimed_at = parse_iso(claim.claimed_at)
    except ValueError:  # pragma: no cover - both stores write ISO-8601
        return ClaimHeld(reason, False, details)
    age = now - claimed_at
    if age < alert_after:
        return ClaimHeld(reason, False, details)
    free_at = claimed_at + stale_after
    reason += (f"; the claim is {int(age.total_seconds())} s old and its rollback is not "
               f"recorded: its holder may be dead. The next alarm may take it over from "
               f"{free_at.isoformat(timespec='seconds')}; `mlops rollback` works now")
    return ClaimHeld(reason, True, details)
