"""Rollback policy: on an alarm, which warm fallback takes the traffic, or why none does.

Pure: the controllers gather the facts (endpoint variants, probe results, registry status,
history) and this module decides. The same decision runs in the Lambda and locally.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, Sequence

from mlops_kit.core.guards import VersionFacts, rollforward_refusal
from mlops_kit.core.rotation import BUSY_STATUSES, VariantWeight, serving_champion
from mlops_kit.core.timestamps import parse_iso

DEFAULT_COOLDOWN_MINUTES = 15
"""How long after a rollback the automatic path does nothing (against flapping): the one
default, for the local home and the Lambda's ROLLBACK_COOLDOWN_MINUTES."""
DEFAULT_COOLDOWN = timedelta(minutes=DEFAULT_COOLDOWN_MINUTES)


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
    missing_artifacts: Mapping[int, str] = field(default_factory=dict)
    """Versions whose model artifact is gone (version → its URI): never a target."""
    alarm_raised_at: datetime | None = None
    """The state time of the alarm transition this decision answers (None: a manual one)."""
    history: Sequence[Any] = ()
    """The endpoint's deployment history (DeploymentRecord-like: at, kind, variants,
    deployment_id), oldest first: what `superseded_reason` reads."""


@dataclass(frozen=True)
class RollbackDecision:
    action: str
    """rollback | none | defer | no_healthy_fallback | superseded (the alarm was raised
    against an earlier champion: nothing shifts, see `superseded_reason`)"""
    reason: str
    from_version: int | None = None
    to_version: int | None = None
    weights: Mapping[str, float] | None = None
    skipped: tuple[str, ...] = ()
    """Why each newer fallback was passed over."""


def decide_rollback(facts: RollbackFacts, *, cooldown: timedelta = DEFAULT_COOLDOWN,
                    require_probe: bool = True) -> RollbackDecision:
    """Pick the newest healthy warm fallback; never leave total weight 0.

    In order: defer while the endpoint is busy; none when it is not InService or nothing
    takes traffic; none within the cooldown of the last rollback; superseded when the alarm
    (`alarm_raised_at`) was raised against an earlier champion than the one serving now
    (`superseded_reason`); then the newest fit fallback (`unfit_reason`: not blocked, model
    artifact present, in service with instances, probed healthy).
    """
    if facts.guardrail_in_flight or facts.endpoint_status in BUSY_STATUSES:
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
    superseded = superseded_reason(facts.history, facts.alarm_raised_at, champion.version)
    if superseded:
        return RollbackDecision("superseded", superseded, champion.version)
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


def decide_manual_shift(facts: RollbackFacts, to_version: int | None,
                        target: VersionFacts | None = None) -> RollbackDecision:
    """On-call's shift (`mlops rollback`, `mlops rollforward --to N`): an explicit action, so
    no cooldown, no probe required and no alarm to be superseded; the guards still hold.

    Defer unless InService. Without `to_version`: the newest fit fallback, as an alarm's
    rollback would pick it. With one: it must be warm on the endpoint and not serving already,
    pass the registry's guard (`target`, for a roll-forward: `rollforward_refusal`), and be fit
    (`unfit_reason`; the caller leaves `blocked_versions` empty for a roll-forward, which is
    what unblocks a version)."""
    if facts.endpoint_status != "InService":
        return RollbackDecision("defer", f"endpoint is {facts.endpoint_status}")
    manual = replace(facts, last_rollback_at=None, alarm_raised_at=None, history=(),
                     guardrail_in_flight=False)
    if to_version is None:
        return decide_rollback(manual, cooldown=timedelta(0), require_probe=False)
    variants = facts.variants
    champion = serving_champion(variants)
    chosen = next((v for v in variants if v.version == to_version), None)
    if chosen is None:
        warm = ", ".join(f"v{v.version}" for v in variants)
        return RollbackDecision("none", f"v{to_version} is not warm on this endpoint "
                                        f"(warm: {warm}); promote it by approval instead")
    if champion is not None and champion.version == to_version:
        return RollbackDecision("none", f"v{to_version} already takes the traffic")
    why = rollforward_refusal(target) if target is not None else ""
    why = why or unfit_reason(chosen, manual, require_probe=False)
    if why:
        return RollbackDecision("none", f"v{to_version} cannot take the traffic: {why}")
    weights = {v.variant_name: 1.0 if v.version == to_version else 0.0 for v in variants}
    return RollbackDecision("rollback", f"v{champion.version if champion else '?'} → "
                                        f"v{to_version} (manual)",
                            champion.version if champion else None, to_version, weights)


def blocked_versions(rejected: Iterable[int], history: Sequence[Any]) -> set[int]:
    """Versions that must not take the traffic again without a person deciding so: the
    rejected ones, and every version rolled back (a rollback record's `previous_version`)
    unless a roll-forward to it came later. `history` is oldest first."""
    blocked = set(rejected)
    for record in history:
        if record.kind == "rollback" and record.previous_version is not None:
            blocked.add(record.previous_version)
        elif record.kind == "rollforward":
            blocked.discard(record.version)
    return blocked


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
    if candidate.version in facts.missing_artifacts:
        # Last: a probe that failed because the model is gone says so first. A manual shift
        # (no probe required) and a fallback probed before its directory went are caught here.
        return f"model artifact missing ({facts.missing_artifacts[candidate.version]})"
    return ""


def last_rollback_time(records: Sequence) -> datetime | None:
    """The time of the latest rollback in a deployment history (DeploymentRecord list)."""
    for record in reversed(records):
        if record.kind == "rollback":
            return record_time(record.at)
    return None


def record_time(at: str) -> datetime:
    """A record's ISO-8601 `at` as an aware datetime (UTC when it names no zone)."""
    return parse_iso(at)


@dataclass(frozen=True)
class ChampionSpell:
    """An unbroken stretch of the history during which one version was the champion."""
    version: int | None
    since: datetime
    """The `at` of the record that made it the champion."""
    deployment_id: str
    kind: str


def champion_spells(history: Sequence[Any]) -> list[ChampionSpell]:
    """The history as champion spells, in time order: a record starts a spell when the
    champion it leaves (its variants' serving champion) is not the one before it. A record
    that keeps the champion (a repaired record, a lineup change below it) continues its spell.
    Ordered by `at` (stable), as two controllers may append out of order."""
    spells: list[ChampionSpell] = []
    for record in sorted(history, key=lambda r: record_time(r.at)):
        live = serving_champion(record.variants)
        version = live.version if live else None
        if not spells or spells[-1].version != version:
            spells.append(ChampionSpell(version, record_time(record.at), record.deployment_id,
                                        record.kind))
    return spells


def champion_at(history: Sequence[Any], moment: datetime) -> ChampionSpell | None:
    """The champion serving at `moment` by the records: the spell of the latest record stamped
    at or before it. None when no record is that old (the kit knows of no champion then)."""
    current = None
    for spell in champion_spells(history):
        if spell.since > moment:
            break
        current = spell
    return current


def superseded_reason(history: Sequence[Any], alarm_raised_at: datetime | None,
                      serving_now: int) -> str:
    """Why an alarm must not roll back the champion serving now ("" when it may).

    An alarm is raised against the champion that served at its state time (the alarm event's
    `state.timestamp`, `AlarmTransition.state_time`): `champion_at(history, alarm_raised_at)`.
    It rolls back only that version. When the endpoint's champion now is another version and a
    record stamped after the alarm changed the champion (a promotion, a rollback, a
    roll-forward), the alarm is about a champion that has been replaced since, and acting on it
    would roll back the new one: superseded ("none" for the caller), naming both.

    Cases:
    - the alarm fired before a promotion that has since completed (alarm at 10:00 about v2, v3
      promoted at 10:02, the rollback decided at 10:03, e.g. released from a busy retry or a
      redelivery): none, "the alarm ... was about v2; v3 champion since 10:02 ...";
    - the alarm fired after the promotion: the spell at its time is the current one, normal
      decision (the new champion is rolled back: it is what the alarm saw);
    - no history, or no alarm time (a manual rollback): normal decision;
    - the alarm predates every record: the kit deployed everything it serves after the alarm,
      so it was not raised against the champion now: none (a test that builds an alarm with a
      fixed old timestamp against a fresh history builds an alarm no endpoint can send);
    - the champion changed and changed back after the alarm (rolled back, then rolled forward
      by hand): the version the alarm was about serves again, so normal decision (the
      comparison is of versions; the rollback in between usually holds it by its cooldown);
    - the endpoint serves another champion than the last record, with no record after the
      alarm (an unrecorded change, e.g. a promotion whose record failed): its time is
      unknown, so nothing shows it came after the alarm: normal decision on the endpoint as it
      is (the controller's unrecorded-change handling);
    - several records after the alarm: the first change after it is named, and what serves now.

    Times, skew and the length of an update: the rule compares the alarm's state time
    (CloudWatch's clock) with each record's `at` (the controller's clock when it issued the
    change: a promotion is stamped just before its deploy call, a rollback just after its
    weight change). A record stamped at or before the alarm's time counts as serving then;
    ties go to the record. In AWS both clocks are NTP-disciplined (well under a second apart),
    locally they are one clock, so skew only matters for an alarm within about a second of a
    record: it is decided by the two stamps as they are, on whichever side they put it, and no
    margin is added. The larger gap is the update itself: in AWS a promotion's new lineup takes
    the traffic only when UpdateEndpoint finishes, minutes after its record. An alarm stamped
    in that window counts as raised against the new champion, though its datapoints may still
    be the old champion's (the records cannot tell), so it rolls the new champion back to the
    newest healthy fallback once the endpoint is InService again (decided while Updating, it
    defers). The rule chooses that side on purpose: an alarm that is dropped sends no second
    transition while it stays in ALARM, so dropping alarms for minutes after each promotion
    would leave a new champion that fails at once without a rollback, and the fallback it rolls
    back to must still pass its probe. The one case it drops, an alarm stamped before the
    change was issued, cannot be about the new champion. A dropped alarm that stays in ALARM
    means the new champion fails too: the controller notifies on-call (`mlops rollback`).
    """
    if alarm_raised_at is None or not history:
        return ""
    spells = champion_spells(history)
    about = champion_at(history, alarm_raised_at)
    if about is not None and about.version == serving_now:
        return ""
    later = [s for s in spells if s.since > alarm_raised_at]
    if not later:
        return ""
    return _superseded_message(alarm_raised_at, about, later[0], serving_now)


def _superseded_message(alarm_raised_at: datetime, about: ChampionSpell | None,
                        first: ChampionSpell, serving_now: int) -> str:
    """`superseded_reason`'s text: what the alarm was about, the first change after it, and
    what serves now."""
    raised = alarm_raised_at.isoformat(timespec="seconds")
    was = (f"v{about.version}" if about is not None and about.version is not None
           else "no champion the kit recorded (it predates the first deployment record)")
    now_too = "" if first.version == serving_now else f"; v{serving_now} serves now"
    return (f"the alarm (raised at {raised}) was about {was}; v{first.version} champion "
            f"since {first.since.isoformat(timespec='seconds')} ({first.kind} "
            f"{first.deployment_id}){now_too}: not rolled back, the alarm was not raised "
            f"against v{serving_now}. If the alarm stays in ALARM, v{serving_now} fails too: "
            f"`mlops rollback --reason ...`")
