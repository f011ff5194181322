"""Promotion order and per-environment checks (core.promotion): pure, over plain records."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, strategies as st

from mlops_kit.core.promotion import (EnvironmentFacts, EnvironmentPolicy, Promotion,
                                      furthest_environment, promotion_decision)

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)
ORDER = (EnvironmentPolicy("dev"), EnvironmentPolicy("staging"),
         EnvironmentPolicy("prod", soak_minutes=30))
ALL = ("dev", "staging", "prod")


def promoted(*envs: str, version: int = 3, model: str = "fraud") -> list[Promotion]:
    return [Promotion(model, version, env, "alice", "why", "2026-12-04T11:00:00.000Z")
            for env in envs]


def decide(target, promotions=(), facts=None, *, order=ORDER, deploys_to=ALL, version=3,
           override=False):
    return promotion_decision(order, deploys_to, model="fraud", version=version, target=target,
                              promotions=promotions, facts=facts or {}, now=NOW,
                              override=override)


def test_the_first_environment_takes_a_registered_version():
    assert decide("dev").allowed


def test_prod_before_staging_is_refused_and_says_what_to_do():
    decision = decide("prod", promoted("dev"))
    assert not decision.allowed
    assert decision.reason == "promote fraud v3 to staging before prod (prod declares no override)"


def test_staging_follows_dev():
    assert not decide("staging").allowed
    assert decide("staging", promoted("dev")).allowed


def test_an_override_skips_only_where_the_environment_declares_it():
    assert not decide("prod", promoted("dev"), override=True).allowed
    order = (ORDER[0], ORDER[1], EnvironmentPolicy("prod", skip_allowed=True))
    assert not decide("prod", promoted("dev"), order=order).allowed
    assert decide("prod", promoted("dev"), order=order, override=True).allowed


def test_prod_requires_the_version_to_have_soaked_in_staging():
    history = promoted("dev", "staging")
    fresh = {"staging": EnvironmentFacts(champion=3, champion_since=NOW - timedelta(minutes=12))}
    decision = decide("prod", history, fresh)
    assert not decision.allowed and "served staging for 12 of the 30 min" in decision.reason
    soaked = {"staging": EnvironmentFacts(champion=3, champion_since=NOW - timedelta(minutes=31))}
    assert decide("prod", history, soaked).allowed


def test_a_soak_counts_only_while_the_version_serves_and_no_alarm_fires():
    history = promoted("dev", "staging")
    long_ago = NOW - timedelta(hours=5)
    replaced = {"staging": EnvironmentFacts(champion=4, champion_since=long_ago)}
    assert "champion there: v4" in decide("prod", history, replaced).reason
    firing = {"staging": EnvironmentFacts(champion=3, champion_since=long_ago,
                                          firing_alarms=("fraud-staging-aupr",))}
    decision = decide("prod", history, firing)
    assert not decision.allowed and "fraud-staging-aupr" in decision.reason


def test_a_version_rolled_back_in_an_environment_is_not_promoted_there_or_beyond():
    rolled_back = {"staging": EnvironmentFacts(blocked=frozenset({3}))}
    assert "roll it forward" in decide("staging", promoted("dev", "staging"), rolled_back).reason
    assert not decide("prod", promoted("dev", "staging"), rolled_back).allowed


def test_promoting_again_is_a_no_op():
    decision = decide("staging", promoted("dev", "staging"))
    assert decision.allowed and decision.already


def test_promotions_of_other_versions_or_models_do_not_count():
    assert not decide("staging", promoted("dev", version=2)).allowed
    assert not decide("staging", promoted("dev", model="churn")).allowed


def test_a_model_that_skips_an_environment_is_ordered_over_its_own_environments():
    assert decide("prod", promoted("dev"), deploys_to=("dev", "prod"),
                  order=(ORDER[0], ORDER[1], EnvironmentPolicy("prod"))).allowed
    assert "does not deploy to staging" in decide("staging", deploys_to=("dev", "prod")).reason
    assert "unknown environment 'qa'" in decide("qa").reason


def test_the_furthest_environment_is_the_lifecycle_stage():
    assert furthest_environment(ALL, ["staging", "dev"]) == "staging"
    assert furthest_environment(ALL, []) is None


@given(st.lists(st.sampled_from(ALL), max_size=12))
def test_without_overrides_the_promoted_environments_are_always_a_prefix_of_the_order(attempts):
    history: list[Promotion] = []
    for env in attempts:
        if decide(env, history, order=ALL_FREE).allowed:
            history += promoted(env)
    reached = [p.environment for p in history]
    assert set(reached) == set(ALL[:len(set(reached))])


ALL_FREE = tuple(EnvironmentPolicy(name) for name in ALL)
