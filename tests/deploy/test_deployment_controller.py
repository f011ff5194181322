"""Promotion on approval: champion at weight 1, N-1 and N-2 warm at 0, exactly once."""

from datetime import datetime, timedelta, timezone

import pytest

from mlops_kit.endpoints import EndpointBusyError
from mlops_kit.core.approvals import deploy_decision
from mlops_kit.deploy.events import (InvalidEventError, model_package_event,
                                     parse_model_package_event)
from mlops_kit.endpoint_state import load_state, save_state


def approve(registry, controller, version, when=None):
    registry.approve(version, actor="bob", reason=f"ship v{version}")
    event = model_package_event("fraud-scorer", version, "Approved", reason=f"ship v{version}",
                                changed_at=when)
    return controller.handle_event(event), event


def serving(endpoints):
    view = endpoints.describe("fraud-scorer-prod")
    return sorted(((v.version, v.weight) for v in view.variants), key=lambda p: -p[0])


def test_four_approvals_rotate_champion_and_two_warm_fallbacks(world):
    registry, endpoints, controller, _ = world
    expected = {1: [(1, 1.0)], 2: [(2, 1.0), (1, 0.0)], 3: [(3, 1.0), (2, 0.0), (1, 0.0)],
                4: [(4, 1.0), (3, 0.0), (2, 0.0)]}
    for version in range(1, 5):
        outcome, _ = approve(registry, controller, version)
        assert outcome.action == "deployed"
        assert serving(endpoints) == expected[version]
        assert registry.champion("fraud-scorer-prod").version == version
    assert registry.lineup("fraud-scorer-prod").versions == (4, 3, 2, 1)
    history = registry.deployments("fraud-scorer-prod")
    assert [d.version for d in history] == [1, 2, 3, 4]
    assert [d.previous_version for d in history] == [None, 1, 2, 3]
    assert all(v.instance_count >= 1 for v in history[-1].variants)


def test_duplicate_delivery_deploys_once(world):
    registry, endpoints, controller, _ = world
    outcome, event = approve(registry, controller, 1)
    generation = load_state(registry.home, "fraud-scorer-prod").generation
    redelivered = dict(event, id="another-delivery-id")
    for again in (event, redelivered):
        assert controller.handle_event(again).action == "duplicate"
    assert load_state(registry.home, "fraud-scorer-prod").generation == generation
    assert len(registry.deployments()) == 1


def test_out_of_order_old_approval_does_not_demote(world):
    registry, endpoints, controller, _ = world
    t0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
    _, first = approve(registry, controller, 1, t0)
    approve(registry, controller, 2, t0 + timedelta(minutes=5))
    # The first approval arrives again, late: already handled, so nothing moves.
    assert controller.handle_event(first).action == "duplicate"
    assert serving(endpoints) == [(2, 1.0), (1, 0.0)]


def test_metadata_writeback_event_is_ignored(world, writeback_event):
    registry, endpoints, controller, _ = world
    writeback_event["detail"]["ModelPackageGroupName"] = "fraud-scorer"
    outcome = controller.handle_event(writeback_event)
    assert outcome.action == "ignored" and "CustomerMetadataProperties" in outcome.reason
    assert endpoints.describe("fraud-scorer-prod") is None


def test_rejected_version_never_deploys(world):
    registry, endpoints, controller, _ = world
    registry.reject(2, actor="bob", reason="leaks the label")
    outcome = controller.handle_event(model_package_event("fraud-scorer", 2, "Rejected"))
    assert outcome.action == "ignored"
    # Even a forged Approved event for it does not deploy it: the registry says Rejected.
    forged = controller.handle_event(model_package_event("fraud-scorer", 2, "Approved"))
    assert forged.action == "ignored" and "Rejected" in forged.reason
    assert endpoints.describe("fraud-scorer-prod") is None


def test_rejected_version_leaves_the_warm_lineup(world):
    registry, endpoints, controller, _ = world
    for v in (1, 2):
        approve(registry, controller, v)
    registry.reject(1, actor="bob", reason="found a bug")
    approve(registry, controller, 3)
    assert serving(endpoints) == [(3, 1.0), (2, 0.0)]


def test_reapproving_the_serving_version_is_a_no_op(world):
    registry, endpoints, controller, _ = world
    approve(registry, controller, 1)
    generation = load_state(registry.home, "fraud-scorer-prod").generation
    later = model_package_event("fraud-scorer", 1, "Approved",
                                changed_at=datetime.now(timezone.utc) + timedelta(hours=1))
    assert controller.handle_event(later).action == "unchanged"
    assert load_state(registry.home, "fraud-scorer-prod").generation == generation


def test_other_model_group_is_ignored(world, approved_event):
    _, endpoints, controller, _ = world
    approved_event["detail"]["ModelPackageGroupName"] = "someone-elses-models"
    outcome = controller.handle_event(approved_event)
    assert outcome.action == "ignored" and "someone-elses-models" in outcome.reason
    assert endpoints.describe("fraud-scorer-prod") is None


def test_the_real_approval_event_shape_deploys(world, approved_event):
    registry, endpoints, controller, _ = world
    registry.approve(4, actor="bob", reason="ship")
    approved_event["detail"]["ModelPackageVersion"] = 4
    outcome = controller.handle_event(approved_event)
    assert outcome.action == "deployed" and outcome.reason.startswith("AUPR 0.83")
    assert serving(endpoints) == [(4, 1.0)]


def test_busy_endpoint_is_retried_with_backoff(world):
    registry, endpoints, controller, sleeps = world
    approve(registry, controller, 1)
    state = load_state(registry.home, "fraud-scorer-prod")
    save_state(registry.home, state.__class__(**{**state.__dict__, "status": "Updating"}))
    registry.approve(2, actor="bob", reason="next")
    calls = {"n": 0}
    original = endpoints.deploy

    def flaky_deploy(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the update finished meanwhile
            current = load_state(registry.home, "fraud-scorer-prod")
            save_state(registry.home, current.__class__(**{**current.__dict__,
                                                           "status": "InService"}))
        return original(*args, **kwargs)

    endpoints.deploy = flaky_deploy
    outcome = controller.handle_event(model_package_event("fraud-scorer", 2, "Approved"))
    assert outcome.action == "deployed" and outcome.attempts == 3
    assert sleeps == [2.0, 4.0]


def test_busy_endpoint_gives_up_after_max_attempts_and_records_nothing(world):
    registry, endpoints, controller, sleeps = world
    approve(registry, controller, 1)
    state = load_state(registry.home, "fraud-scorer-prod")
    save_state(registry.home, state.__class__(**{**state.__dict__, "status": "Updating"}))
    registry.approve(2, actor="bob", reason="next")
    with pytest.raises(EndpointBusyError):
        controller.handle_event(model_package_event("fraud-scorer", 2, "Approved"))
    assert len(sleeps) == 3
    assert [d.version for d in registry.deployments()] == [1]


def test_crash_between_deploy_and_record_is_repaired_on_redelivery(world):
    registry, endpoints, controller, _ = world
    registry.approve(1, actor="bob", reason="ship")
    event = model_package_event("fraud-scorer", 1, "Approved")
    original = registry.record_deployment
    registry.record_deployment = lambda record: (_ for _ in ()).throw(RuntimeError("crash"))
    with pytest.raises(RuntimeError):
        controller.handle_event(event)
    registry.record_deployment = original
    assert controller.handle_event(event).action == "unchanged"
    assert [d.version for d in registry.deployments()] == [1]


def test_both_creation_time_formats_parse(approved_event, writeback_event):
    a = parse_model_package_event(approved_event)
    b = parse_model_package_event(writeback_event)
    assert a.changed_at == datetime.fromtimestamp(1763564531.001, tz=timezone.utc)
    assert b.changed_at.isoformat().startswith("2026-11-19T14:22:11")
    assert deploy_decision(a) == (True, "approved")
    assert deploy_decision(b)[0] is False


@pytest.mark.parametrize("mutate,match", [
    (lambda e: e.pop("detail"), "no detail"),
    (lambda e: e.update({"detail-type": "Something Else"}), "not a"),
    (lambda e: e["detail"].pop("ModelPackageVersion"), "lacks ModelPackageVersion"),
    (lambda e: e["detail"].update(ModelPackageVersion="seven"), "not a number"),
    (lambda e: e["detail"].update(LastModifiedTime="yesterday"), "not a time"),
    (lambda e: e["detail"].update(UpdatedModelPackageFields="ModelApprovalStatus"), "list"),
])
def test_malformed_events_are_refused_with_the_reason(approved_event, mutate, match):
    mutate(approved_event)
    with pytest.raises(InvalidEventError, match=match):
        parse_model_package_event(approved_event)
