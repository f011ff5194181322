"""The champion an alarm was raised against (`champion_at`, `superseded_reason`) and the
missing-artifact unfit reason, as pure decisions over plain records."""

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from mlops_kit.core.rollback_policy import (RollbackFacts, VariantHealth, champion_at,
                                            champion_spells, decide_rollback, record_time,
                                            superseded_reason)
from mlops_kit.core.rotation import VariantWeight

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Record:
    """What the rules read of a DeploymentRecord."""
    deployment_id: str
    kind: str
    at: str
    variants: tuple


def lineup(champion, *warm):
    return tuple(VariantWeight(f"v{v}", v, 1.0 if v == champion else 0.0)
                 for v in (champion, *warm))


def record(kind, minutes, champion, *warm):
    at = (T0 + timedelta(minutes=minutes)).isoformat(timespec="milliseconds")
    return Record(f"{kind}:{minutes}", kind, at.replace("+00:00", "Z"), lineup(champion, *warm))


HISTORY = (record("promote", 0, 1), record("promote", 10, 2, 1), record("promote", 20, 3, 2, 1))


def at(minutes):
    return T0 + timedelta(minutes=minutes)


def test_record_times_parse_with_or_without_a_zone():
    assert record_time("2026-12-01T10:00:00.000Z") == T0
    assert record_time("2026-12-01T10:00:00") == T0


def test_champion_at_is_the_latest_record_at_or_before_the_moment():
    assert champion_at(HISTORY, at(-1)) is None
    assert champion_at(HISTORY, at(0)).version == 1  # a tie goes to the record
    assert champion_at(HISTORY, at(15)).version == 2
    assert champion_at(HISTORY, at(99)).version == 3
    assert champion_at((), at(0)) is None


def test_a_record_that_keeps_the_champion_continues_its_spell():
    history = (*HISTORY, record("promote", 25, 3, 2, 1))  # e.g. a repaired record
    spells = champion_spells(history)
    assert [(s.version, s.since) for s in spells] == [(1, at(0)), (2, at(10)), (3, at(20))]


def test_spells_follow_the_records_times_not_their_order_of_appending():
    shuffled = (HISTORY[0], HISTORY[2], HISTORY[1])
    assert champion_at(shuffled, at(15)).version == 2


def test_an_alarm_raised_before_a_promotion_is_superseded():
    why = superseded_reason(HISTORY, at(18), serving_now=3)
    assert "was about v2" in why and "v3 champion since 2026-12-01T10:20:00+00:00" in why
    assert "promote promote:20" in why and "mlops rollback" in why


def test_an_alarm_raised_after_the_promotion_is_about_the_new_champion():
    assert superseded_reason(HISTORY, at(20), serving_now=3) == ""  # tie: the record counts
    assert superseded_reason(HISTORY, at(21), serving_now=3) == ""


def test_no_history_or_no_alarm_time_is_a_normal_decision():
    assert superseded_reason((), at(0), serving_now=3) == ""
    assert superseded_reason(HISTORY, None, serving_now=3) == ""


def test_an_alarm_older_than_every_record_is_superseded():
    why = superseded_reason(HISTORY, at(-60), serving_now=3)
    assert "predates the first deployment record" in why and "v1 champion since" in why


def test_several_changes_since_the_alarm_name_the_first_and_what_serves_now():
    history = (*HISTORY, record("rollback", 30, 2, 3, 1))
    why = superseded_reason(history, at(15), serving_now=2)
    assert why == ""  # v2 served then and serves now: the same version
    why = superseded_reason(history, at(25), serving_now=2)
    assert "was about v3" in why and "v2 champion since" in why and "rollback rollback:30" in why
    history = (*HISTORY, record("promote", 30, 4, 3, 2), record("rollback", 40, 3, 4, 2))
    why = superseded_reason(history, at(5), serving_now=3)
    assert "was about v1" in why and "v2 champion since" in why and "v3 serves now" in why


def test_changed_and_changed_back_is_about_the_version_that_serves():
    history = (*HISTORY, record("rollback", 30, 2, 3, 1), record("rollforward", 40, 3, 2, 1))
    assert superseded_reason(history, at(25), serving_now=3) == ""


def test_an_unrecorded_change_after_the_alarm_decides_on_the_endpoint_as_it_is():
    # The endpoint serves v4 but no record after the alarm says so: its time is unknown.
    assert superseded_reason(HISTORY, at(25), serving_now=4) == ""


def facts(**overrides):
    variants = lineup(3, 2, 1)
    base = dict(endpoint_status="InService", variants=variants,
                health={v.variant_name: VariantHealth(v.variant_name, True, 1, True)
                        for v in variants},
                blocked_versions=frozenset(), last_rollback_at=None, now=at(30))
    return RollbackFacts(**{**base, **overrides})


def test_decide_rollback_answers_superseded_for_an_alarm_about_an_earlier_champion():
    decision = decide_rollback(facts(history=HISTORY, alarm_raised_at=at(18)))
    assert decision.action == "superseded" and decision.from_version == 3
    assert decide_rollback(facts(history=HISTORY, alarm_raised_at=at(21))).action == "rollback"


def test_the_cooldown_is_reported_before_a_superseded_alarm():
    decision = decide_rollback(facts(history=HISTORY, alarm_raised_at=at(18),
                                     last_rollback_at=at(29)))
    assert decision.action == "none" and decision.reason.startswith("cooldown")


def test_a_fallback_whose_artifact_is_missing_is_skipped():
    decision = decide_rollback(facts(missing_artifacts={2: "/models/v2"}))
    assert (decision.action, decision.to_version) == ("rollback", 1)
    assert decision.skipped == ("v2: model artifact missing (/models/v2)",)
    none_left = decide_rollback(facts(missing_artifacts={2: "/m/2", 1: "/m/1"}))
    assert none_left.action == "no_healthy_fallback" and "model artifact missing" in \
        none_left.reason


def test_a_failed_probe_is_named_before_a_missing_artifact():
    health = dict(facts().health)
    health["v2"] = VariantHealth("v2", True, 1, False)
    decision = decide_rollback(facts(health=health, missing_artifacts={2: "/m/2"}))
    assert decision.skipped == ("v2: failed its last probe",)
