"""The rollback and rotation decisions in `mlops_kit.core`, one rule each, over plain records:
blocked and protected versions, the lineups, lineup validation and equality, the manual shift,
an unrecorded change, a decision gone stale and a claim held by another alarm."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest

from mlops_kit.core.guards import VersionFacts
from mlops_kit.core.rollback_policy import (DEFAULT_COOLDOWN, DEFAULT_COOLDOWN_MINUTES,
                                            RollbackFacts, VariantHealth, blocked_versions,
                                            decide_manual_shift)
from mlops_kit.core.rotation import (VariantWeight, promotion_order, protected_versions,
                                     same_serving, same_traffic, serving_lineup, validate_lineup)
from mlops_kit.core.shift_checks import (AS_RECORDED, FOREIGN_CHANGE, UNRECORDED_SHIFT,
                                         claim_held_reason, classify_unrecorded_change,
                                         stale_decision_reason)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def variants(champion, *warm, weights=None):
    """v<champion> at 1, the others at 0 (or the weights given per version)."""
    weights = weights or {}
    return tuple(VariantWeight(f"v{v}", v, weights.get(v, 1.0 if v == champion else 0.0))
                 for v in (champion, *warm))


@dataclass(frozen=True)
class Record:
    kind: str
    version: int
    variants: tuple = ()
    previous_version: int | None = None
    evidence: dict = field(default_factory=dict)
    deployment_id: str = "d-head"


@dataclass(frozen=True)
class Claim:
    claimed_by: str
    from_version: int | None
    to_version: int | None
    claimed_at: str = "2026-12-01T11:59:00+00:00"
    rolled_back_from: str = "d-head"


# -- blocked, protected, lineups ---------------------------------------------------------------

def test_blocked_are_the_rejected_and_the_rolled_back_until_rolled_forward():
    history = [Record("promote", 2), Record("rollback", 1, previous_version=2),
               Record("rollforward", 2), Record("promote", 3),
               Record("rollback", 2, previous_version=3)]
    assert blocked_versions({5}, history) == {5, 3}
    # the order counts: a rollback after the roll-forward blocks the version again
    assert blocked_versions((), history + [Record("rollback", 1, previous_version=2)]) == {2, 3}
    assert blocked_versions((), []) == set()


def test_serving_lineup_is_the_champion_then_unblocked_warm_versions_newest_first():
    assert serving_lineup(variants(3, 1, 2)).versions == (3, 2, 1)
    rolled_back = variants(2, 3, 1)  # v3 rolled back: warm at 0, blocked
    assert serving_lineup(rolled_back, {3}).versions == (2, 1)
    assert serving_lineup(variants(2, 3, 1, weights={2: 0.0}), ()).versions == ()


def test_promotion_order_leads_with_the_deployed_lineup_and_ignores_rollbacks():
    history = [Record("promote", 1), Record("promote", 2), Record("promote", 4),
               Record("promote", 4, evidence={"lineup": [4, 3, 2]}),
               Record("rollback", 3, previous_version=4)]
    assert promotion_order(history) == (4, 3, 2, 1)
    assert promotion_order([Record("rollback", 1, previous_version=2)]) == ()


def test_protected_are_the_first_of_the_promotion_order_and_what_serves():
    history = [Record("promote", v, variants(v)) for v in (1, 2, 3, 4, 5)]
    history.append(Record("rollback", 4, variants(4, 5, 1), previous_version=5))
    assert protected_versions(history) == {5, 4, 3, 1}
    assert protected_versions(history, warm_fallbacks=0) == {5, 4, 1}
    assert protected_versions([]) == set()


# -- lineup validation and equality ------------------------------------------------------------

@pytest.mark.parametrize("lineup, models, message", [
    ((), {1}, "at least one variant"),
    (tuple(VariantWeight(f"v{v}", v, 1.0) for v in range(1, 12)), set(range(1, 12)),
     "at most 10"),
    ((VariantWeight("v1", 1, 1.0), VariantWeight("v1", 1, 0.0)), {1}, "unique"),
    ((VariantWeight("AllTraffic", 1, 1.0),), {1}, "must be named v1"),
    ((VariantWeight("v1", 1, 1.0, 0),), {1}, "at least one instance"),
    ((VariantWeight("v1", 1, 1.0),), {2}, "no model source for version 1"),
    ((VariantWeight("v1", 1, float("nan")),), {1}, "finite"),
    ((VariantWeight("v1", 1, 0.0), VariantWeight("v2", 2, 0.0)), {1, 2}, "total weight of 0"),
])
def test_validate_lineup_names_what_is_wrong(lineup, models, message):
    with pytest.raises(ValueError, match=message):
        validate_lineup(lineup, models)


def test_a_promotions_lineup_is_valid():
    validate_lineup(variants(3, 2, 1), {1, 2, 3})


def test_traffic_equality_ignores_instance_counts_serving_equality_does_not():
    recorded = variants(2, 1)
    scaled = tuple(VariantWeight(v.variant_name, v.version, v.weight, 3) for v in recorded)
    assert same_traffic(recorded, scaled) and not same_serving(recorded, scaled)
    assert not same_traffic(recorded, variants(1, 2))
    assert not same_traffic(recorded, variants(2, 3))


# -- the manual shift --------------------------------------------------------------------------

def facts(lineup, *, status="InService", blocked=(), probes=None, missing=None, last=None):
    probes = probes or {}
    health = {v.variant_name: VariantHealth(v.variant_name, True, 1, probes.get(v.version))
              for v in lineup}
    return RollbackFacts(status, lineup, health, frozenset(blocked), last, NOW,
                         missing_artifacts=missing or {})


def test_manual_shift_defers_unless_in_service():
    assert decide_manual_shift(facts(variants(3, 2), status="Failed"), 2).action == "defer"


def test_manual_rollback_ignores_cooldown_and_missing_probes():
    decision = decide_manual_shift(facts(variants(3, 2, 1), last=NOW), None)
    assert (decision.action, decision.from_version, decision.to_version) == ("rollback", 3, 2)
    assert decision.weights == {"v3": 0.0, "v2": 1.0, "v1": 0.0}


def test_manual_shift_to_a_named_version():
    ok = decide_manual_shift(facts(variants(3, 2, 1)), 1)
    assert (ok.action, ok.to_version, ok.reason) == ("rollback", 1, "v3 → v1 (manual)")
    assert ok.weights == {"v3": 0.0, "v2": 0.0, "v1": 1.0}
    cold = decide_manual_shift(facts(variants(3, 2)), 1)
    assert cold.action == "none" and "not warm" in cold.reason and "v3, v2" in cold.reason
    serving = decide_manual_shift(facts(variants(3, 2)), 3)
    assert serving.action == "none" and "already takes the traffic" in serving.reason


def test_manual_shift_refuses_blocked_failed_missing_and_rejected_targets():
    assert "rolled back before" in decide_manual_shift(facts(variants(3, 2), blocked={2}),
                                                       2).reason
    assert "failed its last probe" in decide_manual_shift(
        facts(variants(3, 2), probes={2: False}), 2).reason
    assert "model artifact missing" in decide_manual_shift(
        facts(variants(3, 2), missing={2: "/gone"}), 2).reason
    rejected = VersionFacts(2, "Rejected", status_reason="leaks the label")
    refused = decide_manual_shift(facts(variants(3, 2)), 2, rejected)
    assert refused.action == "none" and "Rejected" in refused.reason
    assert decide_manual_shift(facts(variants(3, 2)), 2,
                               VersionFacts(2, "Approved")).action == "rollback"


# -- an unrecorded change ----------------------------------------------------------------------

def classify(now, head_variants, claim=None, *, blocked=(), manual=False, me="me"):
    head = Record("promote", 0, head_variants)
    return classify_unrecorded_change("ep", now, head, claim, blocked=frozenset(blocked),
                                      manual=manual, deployment_id=me)


def test_an_endpoint_as_recorded_needs_nothing():
    assert classify(variants(3, 2), variants(3, 2)).kind == AS_RECORDED
    assert classify_unrecorded_change("ep", variants(3, 2), None, None, blocked=frozenset(),
                                      manual=False, deployment_id="me").kind == AS_RECORDED


def test_a_rollback_shaped_change_is_an_unrecorded_shift_from_the_recorded_champion():
    change = classify(variants(2, 3, 1), variants(3, 2, 1))
    assert (change.kind, change.from_version) == (UNRECORDED_SHIFT, 3)


def test_a_claim_naming_what_serves_is_an_unrecorded_shift_even_without_the_shape():
    moved = variants(2, 3, 1, weights={3: 0.5, 2: 1.0})  # v3 not at 0: no rollback's shape
    assert classify(moved, variants(3, 2, 1)).kind == FOREIGN_CHANGE
    change = classify(moved, variants(3, 2, 1), Claim("other", 3, 2))
    assert (change.kind, change.from_version) == (UNRECORDED_SHIFT, 3)


def test_a_new_variant_set_or_a_blocked_champion_is_a_foreign_change():
    promoted = classify(variants(4, 3, 2), variants(3, 2, 1))
    assert promoted.kind == FOREIGN_CHANGE and "serves v4" in promoted.note
    assert classify(variants(2, 3, 1), variants(3, 2, 1), blocked={2}).kind == FOREIGN_CHANGE


def test_a_weight_change_below_the_same_champion_is_as_recorded():
    assert classify(variants(3, 2, weights={2: 0.5}), variants(3, 2)).kind == AS_RECORDED


def test_a_manual_shift_finishes_only_its_own_claimed_shift():
    now, head = variants(2, 3, 1), variants(3, 2, 1)
    assert classify(now, head, manual=True).kind == AS_RECORDED
    assert classify(now, head, Claim("someone-else", 3, 2), manual=True).kind == AS_RECORDED
    own = classify(now, head, Claim("me", 3, 2), manual=True)
    assert (own.kind, own.from_version) == (UNRECORDED_SHIFT, 3)


# -- a decision gone stale; a claim held elsewhere ---------------------------------------------

def test_a_decision_is_stale_when_the_lineup_or_the_traffic_moved():
    decided_on, weights = variants(3, 2), {"v3": 0.0, "v2": 1.0}
    assert stale_decision_reason("ep", decided_on, weights, variants(3, 2), 3) == ""
    assert "lineup of ep changed" in stale_decision_reason("ep", decided_on, weights,
                                                           variants(4, 3, 2), 3)
    assert "now none" in stale_decision_reason("ep", decided_on, weights, None, 3)
    assert "traffic of ep moved" in stale_decision_reason("ep", decided_on, weights,
                                                          variants(2, 3), 3)


def test_a_young_claim_is_quiet_an_old_one_alerts_on_call():
    claim = Claim("rollback:other", 3, 2, claimed_at="2026-12-01T11:59:00+00:00")
    young = claim_held_reason("ep", claim, 3, NOW, alert_after=timedelta(minutes=2),
                              stale_after=timedelta(minutes=5))
    assert not young.alert and "rollback:other already rolls ep back from v3" in young.reason
    assert young.details["claimed_by"] == "rollback:other"
    old = claim_held_reason("ep", claim, 3, NOW + timedelta(minutes=2),
                            alert_after=timedelta(minutes=2), stale_after=timedelta(minutes=5))
    assert old.alert and "180 s old" in old.reason and "2026-12-01T12:04:00+00:00" in old.reason


# -- one cooldown default ----------------------------------------------------------------------

def test_every_home_uses_the_one_cooldown_default():
    from mlops_kit.contract import FUNCTIONS
    from mlops_kit.deploy.rollback import RollbackSettings

    assert DEFAULT_COOLDOWN == timedelta(minutes=DEFAULT_COOLDOWN_MINUTES)
    assert RollbackSettings().cooldown == DEFAULT_COOLDOWN
    env = {e.name: e for e in FUNCTIONS["rollback_controller"].env}
    assert env["ROLLBACK_COOLDOWN_MINUTES"].default == DEFAULT_COOLDOWN_MINUTES
