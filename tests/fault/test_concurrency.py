"""Concurrency on the local home: events that meet in flight (issue [E]).

The local control plane handles one event at a time under a file lock (the twin of the Lambdas'
reserved concurrency of 1); these tests make two events really overlap, in threads, and check
the end state is one of the two orders, never a mixed lineup. The last test drops the lock to
model the AWS home, where the deployment and rollback Lambdas are separate functions and only
the controllers' own checks stand between them."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest

from mlops_kit.core.rotation import serving_champion
from mlops_kit.deploy.controller import DeploymentController, DeploymentSettings
from mlops_kit.deploy.events import model_package_event
from mlops_kit.deploy.local_endpoint import LocalEndpoints
from mlops_kit.deploy.rollback import RollbackController, RollbackDeferred, RollbackSettings
from mlops_kit.local import control_plane
from mlops_kit.local.control_plane import publish

from ._world import ENDPOINT, GROUP, alarm_event, approve_and_deploy, make_home, weights, \
    write_probes


@pytest.fixture()
def serving_v3(tmp_path):
    """v1, v2, v3 promoted in turn (v3 serves, v2 and v1 warm, all probed healthy); v4
    registered and approved, its approval event not delivered yet."""
    settings, registry = make_home(tmp_path)
    for version in (1, 2, 3):
        approve_and_deploy(settings, registry, version)
    write_probes(settings, {"v1": True, "v2": True, "v3": True, "v4": True})
    registry.approve(4, actor="bob", reason="beats v3")
    return settings, registry


HELD_SECONDS = 0.3
"""How long the first event keeps the lock while the second one is shown to be waiting for it."""


class LockWatch:
    """Marks when one thread reaches the control plane's lock and when it gets it.

    `publish` takes the lock through `control_plane.single_writer`; the watch wraps it, so the
    test can prove blocking rather than slowness: the thread has reached the lock (`reached`),
    yet does not get it (`acquired` stays unset) while the other event holds it."""

    def __init__(self, monkeypatch):
        self.thread: threading.Thread | None = None
        self.reached, self.acquired = threading.Event(), threading.Event()
        original = control_plane.single_writer

        @contextmanager
        def watched(settings, **options):
            mine = threading.current_thread() is self.thread
            if mine:
                self.reached.set()
            with original(settings, **options) as held:
                if mine:
                    self.acquired.set()
                yield held

        monkeypatch.setattr(control_plane, "single_writer", watched)

    def start_and_prove_it_waits(self, thread: threading.Thread, what: str) -> None:
        """Start `thread` (while the caller holds the lock) and show it blocks on the lock."""
        self.thread = thread
        thread.start()
        assert self.reached.wait(timeout=30), f"{what}: never reached the lock"
        assert not self.acquired.wait(timeout=HELD_SECONDS), \
            f"{what}: got the lock while the other event held it"

    def prove_it_proceeds(self, what: str) -> None:
        """After the lock is released, the waiting thread gets it."""
        assert self.acquired.wait(timeout=30), f"{what}: never got the lock once it was free"


def exactly_one_champion(settings) -> int:
    live = [(version, w) for version, w in weights(settings).items() if w > 0]
    assert len(live) == 1, f"mixed lineup: {weights(settings)}"
    return live[0][0]


def test_an_approval_arriving_during_a_rollback_waits_and_then_promotes_over_it(
        serving_v3, monkeypatch):
    settings, registry = serving_v3
    in_shift, results, errors = threading.Event(), {}, []
    original = LocalEndpoints.set_weights
    lock = LockWatch(monkeypatch)

    def slow_shift(self, name, new_weights):
        in_shift.set()
        # The approval event is delivered while the rollback holds the lock: it must wait.
        lock.start_and_prove_it_waits(approval, "the approval")
        return original(self, name, new_weights)

    def deliver(key, event):
        try:
            results[key] = [o.action for o in publish(settings, event)]
        except Exception as exc:  # the test asserts nothing escapes to the caller
            errors.append(exc)

    approval = threading.Thread(target=deliver, args=("approval", model_package_event(
        GROUP, 4, "Approved")))
    monkeypatch.setattr(LocalEndpoints, "set_weights", slow_shift)
    deliver("alarm", alarm_event())
    lock.prove_it_proceeds("the approval")
    approval.join(timeout=30)

    assert errors == [] and in_shift.is_set()
    assert results == {"alarm": ["rolled_back"], "approval": ["deployed"]}
    history = registry.deployments(ENDPOINT)
    assert [(d.kind, d.version) for d in history] == [
        ("promote", 1), ("promote", 2), ("promote", 3), ("rollback", 2), ("promote", 4)]
    # The promotion saw the rollback: v3 (rolled back) left the warm lineup.
    assert weights(settings) == {4: 1.0, 2: 0.0, 1: 0.0}
    assert exactly_one_champion(settings) == 4 == registry.champion(ENDPOINT).version


def test_an_alarm_arriving_during_a_promotion_waits_and_then_decides_on_the_new_lineup(
        serving_v3, monkeypatch):
    settings, registry = serving_v3
    results, errors = {}, []
    original = LocalEndpoints.deploy
    lock = LockWatch(monkeypatch)

    def slow_deploy(self, *args, **kwargs):
        lock.start_and_prove_it_waits(alarm, "the alarm")  # it must wait for the promotion
        return original(self, *args, **kwargs)

    def deliver(key, event):
        try:
            results[key] = [o.action for o in publish(settings, event)]
        except Exception as exc:
            errors.append(exc)

    # The alarm is raised (its state time) when it arrives, during the promotion: one raised
    # before the promotion was about v3 and is not acted on (tests/deploy, superseded alarms).
    alarm = threading.Thread(target=lambda: deliver("alarm", alarm_event()))
    monkeypatch.setattr(LocalEndpoints, "deploy", slow_deploy)
    write_probes(settings, {"v1": True, "v2": True, "v3": True, "v4": True})
    deliver("approval", model_package_event(GROUP, 4, "Approved"))
    lock.prove_it_proceeds("the alarm")
    alarm.join(timeout=30)

    assert errors == []
    assert results["approval"] == ["deployed"]
    # The rollback decided on the lineup the promotion left (v4, v3, v2), not the old one.
    assert results["alarm"] == ["rolled_back"]
    last = registry.deployments(ENDPOINT)[-1]
    assert (last.kind, last.previous_version, last.version) == ("rollback", 4, 3)
    assert {v.version for v in last.variants} == {4, 3, 2}
    assert weights(settings) == {4: 0.0, 3: 1.0, 2: 0.0}
    assert exactly_one_champion(settings) == 3 == registry.champion(ENDPOINT).version


@pytest.mark.parametrize("promoted", [(1, 2, 3), (1, 2)], ids=["lineup-full", "lineup-growing"])
def test_without_the_lock_a_promotion_landing_between_decision_and_shift_is_never_mixed(
        tmp_path, promoted):
    """The AWS home's shape: the rollback Lambda decides on the lineup it described, then a
    deployment Lambda replaces the lineup before the rollback's weight change lands. With a
    growing lineup (v2, v1 → v4, v2, v1) the stale weights {v2: 1, v1: 0} would leave v4 and
    v2 both at weight 1 (a 50/50 mix); with a full one they name a variant that is gone."""
    settings, registry = make_home(tmp_path)
    for version in promoted:
        approve_and_deploy(settings, registry, version)
    write_probes(settings, {f"v{v}": True for v in (1, 2, 3, 4)})
    registry.approve(4, actor="bob", reason="beats the champion")
    endpoints = LocalEndpoints(settings.home)
    deploy = DeploymentController(registry, LocalEndpoints(settings.home),
                                  DeploymentSettings(ENDPOINT, max_attempts=1),
                                  sleep=lambda s: None)
    original_describe, original_set_weights = endpoints.describe, endpoints.set_weights
    describes, raced = [], []

    def promotion_lands():
        if not raced:
            raced.append(deploy.handle_event(model_package_event(GROUP, 4, "Approved")).action)

    # The rollback decides on its first describe; the promotion lands right after, before
    # whatever the rollback asks of the endpoint next (another describe, or the weights).
    def describe(name):
        describes.append(name)
        if len(describes) >= 2:
            promotion_lands()
        return original_describe(name)

    def set_weights(name, new_weights):
        promotion_lands()
        return original_set_weights(name, new_weights)

    endpoints.describe, endpoints.set_weights = describe, set_weights
    from mlops_kit.local.control_plane import LocalProbeResults

    rollback = RollbackController(registry, endpoints, health=LocalProbeResults(settings.home),
                                  settings=RollbackSettings(
                                      retry=DeploymentSettings(ENDPOINT, max_attempts=2)),
                                  sleep=lambda s: None)
    try:
        outcome = rollback.handle_event(alarm_event())
    except Exception as exc:  # surfacing is allowed (the event is redelivered) ...
        outcome = exc
    assert raced == ["deployed"]
    # ... but the endpoint must serve one lineup with one champion, and the history must
    # describe exactly what the endpoint serves.
    champion = exactly_one_champion(settings)
    latest = registry.deployments(ENDPOINT)[-1]
    assert serving_champion(latest.variants).version == champion
    assert {v.version for v in latest.variants} == set(weights(settings))
    # Nothing shifted: the rollback is deferred (raised, so EventBridge delivers it again)
    # and the redelivery decides on the new lineup.
    assert isinstance(outcome, RollbackDeferred) and "lineup" in str(outcome), outcome
    assert champion == 4 and [d.kind for d in registry.deployments(ENDPOINT)][-1] == "promote"
    again = rollback.handle_event(alarm_event())
    assert (again.action, again.from_version) == ("rolled_back", 4)
    exactly_one_champion(settings)
    assert registry.champion(ENDPOINT).version == again.to_version
