"""`plan_promotion`: the newest approved version is the champion whichever approval lands
first, and the lineup is the same either way."""

import pytest

from mlops_kit.core.rotation import lineup_after_promotion, plan_promotion


def test_without_a_newer_champion_it_is_the_usual_rotation():
    for promotions, new, serving in (([1, 2, 3], 4, 3), ([], 1, None), ([1, 2, 3], 2, 1)):
        plan = plan_promotion(promotions, new, serving=serving)
        assert plan.lineup == lineup_after_promotion(promotions, new)
        assert plan.held_by is None and plan.reason == ""


def test_two_overlapping_approvals_give_one_lineup_whichever_lands_first():
    # v3 lands first: (3, 2, 1); then v4 on top.
    v3 = plan_promotion([1, 2], 3, serving=2).lineup
    assert v3.versions == (3, 2, 1)
    v4_after = plan_promotion([1, 2, 3], 4, serving=3).lineup
    # v4 lands first: (4, 2, 1); then v3, which finds the newer v4 serving.
    v4 = plan_promotion([1, 2], 4, serving=2).lineup
    assert v4.versions == (4, 2, 1)
    v3_after = plan_promotion([1, 2, 4], 3, serving=4)
    assert v3_after.lineup == v4_after and v4_after.versions == (4, 3, 2)
    assert v3_after.held_by == 4 and "v4 is newer and keeps the traffic" in v3_after.reason


def test_a_blocked_newer_champion_does_not_hold_the_traffic():
    plan = plan_promotion([1, 2, 4], 3, serving=4, excluded={4})
    assert plan.lineup.versions == (3, 2, 1) and plan.held_by is None


def test_no_warm_slots_leaves_the_older_approval_out():
    plan = plan_promotion([1, 2, 4], 3, serving=4, warm_fallbacks=0)
    assert plan.lineup.versions == (4,) and "not deployed" in plan.reason


def test_warm_fallbacks_are_bounded():
    with pytest.raises(ValueError):
        plan_promotion([1, 4], 3, serving=4, warm_fallbacks=10)
