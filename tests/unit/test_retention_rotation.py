from datetime import datetime, timedelta, timezone

import pytest

from mlops_kit.core.retention import RetentionCandidate, RetentionPolicy, select_for_archive
from mlops_kit.core.rotation import (Lineup, VariantWeight, lineup_after_promotion,
                                     promotion_history, promotion_weights, same_serving,
                                     serving_champion, version_of_variant)

NOW = datetime(2026, 11, 27, tzinfo=timezone.utc)


def candidate(version, days_old, approved=False):
    return RetentionCandidate(version, NOW - timedelta(days=days_old), approved)


def test_old_never_approved_versions_are_archived_but_never_the_lineup_or_approved():
    candidates = [candidate(1, 90, approved=True), candidate(2, 60), candidate(3, 45),
                  candidate(4, 1), candidate(5, 0)]
    decisions = select_for_archive(candidates, protected={3}, policy=RetentionPolicy(30, 10),
                                   now=NOW)
    assert [d.version for d in decisions] == [2]
    assert "older than 30 days" in decisions[0].reason


def test_beyond_the_k_most_recent():
    candidates = [candidate(v, 1) for v in range(1, 7)]
    decisions = select_for_archive(candidates, protected={1}, policy=RetentionPolicy(30, 3),
                                   now=NOW)
    assert [d.version for d in decisions] == [2, 3]


def test_keep_counts_only_never_approved_versions():
    candidates = [candidate(1, 1), candidate(2, 1), candidate(3, 1),
                  candidate(4, 1, approved=True), candidate(5, 1, approved=True)]
    decisions = select_for_archive(candidates, (), RetentionPolicy(30, 2), NOW)
    assert [d.version for d in decisions] == [1]


def test_archived_versions_are_not_selected_again():
    candidates = [RetentionCandidate(1, NOW - timedelta(days=99), False, archived=True)]
    assert select_for_archive(candidates, (), RetentionPolicy(), NOW) == []


def test_negative_policy_is_refused():
    with pytest.raises(ValueError):
        RetentionPolicy(-1, 1)


def test_promotion_history_and_lineup():
    assert promotion_history([1, 2, 3, 2]) == [2, 3, 1]
    assert lineup_after_promotion([1, 2, 3], 4).versions == (4, 3, 2)
    assert lineup_after_promotion([1, 2, 3], 4, excluded={3}).versions == (4, 2, 1)
    assert lineup_after_promotion([1, 2, 3], 2).versions == (2, 3, 1)
    assert lineup_after_promotion([], 1).versions == (1,)
    assert lineup_after_promotion([1, 2, 3, 4, 5], 6, warm_fallbacks=4).versions == (6, 5, 4, 3, 2)
    with pytest.raises(ValueError):
        lineup_after_promotion([1], 2, warm_fallbacks=10)


def test_weights_keep_fallbacks_warm():
    variants = promotion_weights(Lineup((4, 3, 2)), instance_count=2, fallback_instance_count=1)
    assert [(v.variant_name, v.weight, v.instance_count) for v in variants] == \
        [("v4", 1.0, 2), ("v3", 0.0, 1), ("v2", 0.0, 1)]
    with pytest.raises(ValueError, match="at least one instance"):
        promotion_weights(Lineup((1,)), instance_count=0)


def test_same_serving_ignores_order_and_champion_is_highest_weight():
    a = (VariantWeight("v1", 1, 1.0), VariantWeight("v2", 2, 0.0))
    assert same_serving(a, tuple(reversed(a)))
    assert not same_serving(a, (VariantWeight("v1", 1, 0.5), VariantWeight("v2", 2, 0.5)))
    assert serving_champion(a).version == 1
    assert serving_champion((VariantWeight("v1", 1, 0.0),)) is None
    assert version_of_variant("v12") == 12
    with pytest.raises(ValueError):
        version_of_variant("blue")
