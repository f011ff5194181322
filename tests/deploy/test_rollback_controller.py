"""Alarm-driven rollback to the newest healthy warm fallback, exactly once, with evidence."""

import copy
import json
import threading
from datetime import datetime, timedelta, timezone

import pytest

from mlops_kit.endpoints import EndpointBusyError
from mlops_kit.deploy.events import model_package_event
from mlops_kit.deploy.rollback import RollbackController, RollbackDeferred, RollbackSettings
from mlops_kit.deploy.controller import DeploymentSettings
from mlops_kit.endpoint_state import load_state, save_state

from builders import deliver_together

from .conftest import Sleeps, load_event

ENDPOINT = "fraud-scorer-prod"


class Probes:
    def __init__(self, results=None):
        self.results = dict(results or {})

    def probe_results(self, endpoint_name):
        return self.results


class Outbox(list):
    def notify(self, subject, message):
        self.append((subject, message))


@pytest.fixture()
def promoted(world):
    """v1, v2, v3 promoted in turn: v3 serves, v2 and v1 warm, all probed healthy."""
    registry, endpoints, controller, _ = world
    for version in (1, 2, 3):
        registry.approve(version, actor="bob", reason="ship")
        controller.handle_event(model_package_event("fraud-scorer", version, "Approved"))
    probes = Probes({"v1": True, "v2": True, "v3": True})
    outbox = Outbox()
    sleeps = Sleeps()
    rollback = RollbackController(
        registry, endpoints, health=probes, notifier=outbox,
        settings=RollbackSettings(retry=DeploymentSettings(ENDPOINT, max_attempts=4)),
        sleep=sleeps)
    return registry, endpoints, rollback, probes, outbox, sleeps


def alarm_stamp(at):
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}+0000"


def alarm_event(name="eventbridge", at=None):
    """The real event shape, raised now (or `at`): an alarm is raised against what serves when
    it fires, so its state time must come after the promotions the test made (the fixture's
    own 2026-11-20 timestamp predates every record of a fresh history, and the rollback
    controller rightly refuses an alarm older than the champion: `superseded_reason`)."""
    event = copy.deepcopy(load_event({"eventbridge": "cloudwatch-alarm-state-change.eventbridge.json",
                                      "lambda": "cloudwatch-alarm.lambda-action.json"}[name]))
    at = at or datetime.now(timezone.utc)
    data = event["detail"] if "detail" in event else event["alarmData"]
    data["state"]["timestamp"] = alarm_stamp(at)
    if "time" in event:
        event["time"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return event


def weights(endpoints):
    return {v.version: v.weight for v in endpoints.describe(ENDPOINT).variants}


@pytest.mark.parametrize("shape", ["eventbridge", "lambda"])
def test_both_shapes_roll_back_to_the_newest_warm_fallback(promoted, shape):
    registry, endpoints, rollback, _, outbox, _ = promoted
    outcome = rollback.handle_event(alarm_event(shape))
    assert outcome.action == "rolled_back"
    assert (outcome.from_version, outcome.to_version) == (3, 2)
    assert weights(endpoints) == {3: 0.0, 2: 1.0, 1: 0.0}  # same fleet, weights only
    record = registry.deployments(ENDPOINT)[-1]
    assert record.kind == "rollback" and record.previous_version == 3 and record.version == 2
    assert record.evidence["alarm"].startswith("fraud-scorer-prod-")
    assert record.evidence["recent_datapoints"]
    assert registry.champion(ENDPOINT).version == 2
    assert outbox and "v3 → v2" in outbox[0][0]


def test_replayed_event_rolls_back_once(promoted):
    registry, endpoints, rollback, _, _, _ = promoted
    event = alarm_event()
    assert rollback.handle_event(event).action == "rolled_back"
    for _ in range(3):
        assert rollback.handle_event(copy.deepcopy(event)).action == "duplicate"
    assert weights(endpoints)[2] == 1.0
    assert sum(d.kind == "rollback" for d in registry.deployments()) == 1


def test_two_alarms_at_once_through_the_local_event_bus_roll_back_once(promoted):
    """Both shapes delivered at the same moment from two threads through the local control
    plane (its file lock is the local twin of the Lambda's reserved concurrency of 1)."""
    from mlops_kit.config import LocalSettings
    from mlops_kit.local.control_plane import publish

    registry, endpoints, _, _, _, _ = promoted
    settings = LocalSettings(home=registry.home, model_group="fraud-scorer", use_case="fraud",
                             owner="test", endpoint_name=ENDPOINT)
    probes = registry.home / "probes" / f"{ENDPOINT}.json"
    probes.parent.mkdir(parents=True, exist_ok=True)
    probes.write_text(json.dumps({"at": datetime.now(timezone.utc).isoformat(), "variants": {
        v: {"ok": True} for v in ("v1", "v2", "v3")}}))
    results = []
    barrier = threading.Barrier(2)

    def deliver(event):
        barrier.wait()
        results.extend(o.action for o in publish(settings, event))

    threads = [threading.Thread(target=deliver, args=(alarm_event(shape),))
               for shape in ("eventbridge", "lambda")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # The thread that takes the lock may deliver both events (the local outbox); the other
    # reads its own event's outcome back from the outbox: one rollback, one outcome each.
    assert len(results) == 2 and results.count("rolled_back") == 1
    assert set(results) <= {"none", "rolled_back", "duplicate"}
    assert weights(endpoints) == {3: 0.0, 2: 1.0, 1: 0.0}
    assert sum(d.kind == "rollback" for d in registry.deployments()) == 1


def test_stale_local_probes_do_not_vouch_for_a_fallback(tmp_path):
    from mlops_kit.local.control_plane import LocalProbeResults

    path = tmp_path / "probes" / "e.json"
    path.parent.mkdir(parents=True)
    old = datetime.now(timezone.utc) - timedelta(hours=1)
    path.write_text(json.dumps({"at": old.isoformat(), "variants": {"v1": {"ok": True}}}))
    assert LocalProbeResults(tmp_path).probe_results("e") == {}
    path.write_text(json.dumps({"at": datetime.now(timezone.utc).isoformat(),
                                "variants": {"v1": {"ok": True}}}))
    assert LocalProbeResults(tmp_path).probe_results("e") == {"v1": True}


def test_someone_elses_alarm_changes_nothing(promoted):
    _, endpoints, rollback, _, _, _ = promoted
    event = alarm_event()
    event["detail"]["alarmName"] = "billing-spike"
    event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"] = {
        "namespace": "AWS/Billing", "name": "EstimatedCharges", "dimensions": {"Currency": "USD"}}
    outcome = rollback.handle_event(event)
    assert outcome.action == "ignored" and "EndpointName" in outcome.reason
    event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"] = {
        "EndpointName": ENDPOINT}
    assert rollback.handle_event(event).action == "ignored"
    assert weights(endpoints)[3] == 1.0


@pytest.mark.parametrize("previous,state", [("ALARM", "ALARM"), ("ALARM", "OK"),
                                            ("OK", "INSUFFICIENT_DATA")])
def test_only_transitions_into_alarm_act(promoted, previous, state):
    _, endpoints, rollback, _, _, _ = promoted
    event = alarm_event()
    event["detail"]["state"]["value"] = state
    event["detail"]["previousState"]["value"] = previous
    assert rollback.handle_event(event).action == "ignored"
    assert weights(endpoints)[3] == 1.0


def test_unhealthy_fallback_is_skipped(promoted):
    registry, endpoints, rollback, probes, _, _ = promoted
    probes.results["v2"] = False
    outcome = rollback.handle_event(alarm_event())
    assert (outcome.action, outcome.to_version) == ("rolled_back", 1)
    assert "v2: failed its last probe" in registry.deployments()[-1].evidence["skipped"]


def test_no_healthy_fallback_changes_nothing_and_alerts(promoted):
    registry, endpoints, rollback, probes, outbox, _ = promoted
    probes.results.update(v2=False, v1=None)
    before = load_state(registry.home, ENDPOINT).generation
    outcome = rollback.handle_event(alarm_event())
    assert outcome.action == "no_healthy_fallback"
    assert load_state(registry.home, ENDPOINT).generation == before
    assert "ALERT" in outbox[-1][0]
    assert all(d.kind == "promote" for d in registry.deployments())


def test_rejected_fallback_is_never_a_target(promoted):
    registry, endpoints, rollback, _, _, _ = promoted
    registry.reject(2, actor="bob", reason="bug found")
    assert rollback.handle_event(alarm_event()).to_version == 1


def test_updating_endpoint_is_retried_then_shifted(promoted):
    registry, endpoints, rollback, _, _, sleeps = promoted
    calls = {"n": 0}
    original = endpoints.set_weights

    def busy_twice(name, w):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise EndpointBusyError("Cannot update in-progress endpoint")
        return original(name, w)

    endpoints.set_weights = busy_twice
    outcome = rollback.handle_event(alarm_event())
    assert outcome.action == "rolled_back" and outcome.details["attempts"] == 3
    assert sleeps == [2.0, 4.0]


def test_guardrail_deployment_in_flight_defers(promoted):
    registry, endpoints, rollback, _, _, _ = promoted
    state = load_state(registry.home, ENDPOINT)
    save_state(registry.home, state.__class__(**{**state.__dict__, "status": "Updating"}))
    with pytest.raises(RollbackDeferred):
        rollback.handle_event(alarm_event())
    assert all(d.kind == "promote" for d in registry.deployments())


def test_cooldown_prevents_flapping_and_rolled_back_version_is_not_repromoted(world, promoted):
    registry, endpoints, rollback, _, _, _ = promoted
    deploy = world[2]
    rollback.handle_event(alarm_event())
    second = alarm_event("lambda")
    assert rollback.handle_event(second).action == "none"  # within the cooldown
    # v3 was rolled back: a new approval event for it does not promote it again.
    again = deploy.handle_event(model_package_event("fraud-scorer", 3, "Approved",
                                                    changed_at=datetime.now(timezone.utc)))
    assert again.action == "ignored" and "rolled back" in again.reason
    assert 3 in registry.blocked_versions(ENDPOINT)


def test_manual_rollback_to_a_version_and_roll_forward(promoted):
    registry, endpoints, rollback, _, _, _ = promoted
    outcome = rollback.rollback(ENDPOINT, actor="oncall", reason="bad scores", to_version=1)
    assert (outcome.action, outcome.to_version) == ("rolled_back", 1)
    assert rollback.rollback(ENDPOINT, actor="oncall", reason="x", to_version=9).action == "none"
    forward = rollback.rollforward(ENDPOINT, 3, actor="oncall", reason="fixed upstream data")
    assert (forward.action, forward.to_version) == ("rolled_forward", 3)
    assert weights(endpoints) == {3: 1.0, 2: 0.0, 1: 0.0}
    assert 3 not in registry.blocked_versions(ENDPOINT)


def test_unknown_endpoint_is_a_no_op(promoted):
    _, _, rollback, _, _, _ = promoted
    event = alarm_event()
    for metric in event["detail"]["configuration"]["metrics"]:
        metric["metricStat"]["metric"]["dimensions"]["EndpointName"] = "ghost"
    event["detail"]["alarmName"] = "ghost-feature-drift"
    assert rollback.handle_event(event).action == "none"


def test_redelivery_after_a_failed_history_write_completes_the_same_rollback(promoted):
    registry, endpoints, rollback, _, _, _ = promoted
    original = registry.record_deployment
    event = alarm_event()
    registry.record_deployment = lambda record: (_ for _ in ()).throw(OSError("ledger down"))
    with pytest.raises(OSError):
        rollback.handle_event(event)
    registry.record_deployment = original
    assert weights(endpoints) == {3: 0.0, 2: 1.0, 1: 0.0}
    outcome = rollback.handle_event(copy.deepcopy(event))  # EventBridge delivers it again
    assert (outcome.action, outcome.from_version, outcome.to_version) == ("rolled_back", 3, 2)
    assert weights(endpoints) == {3: 0.0, 2: 1.0, 1: 0.0}  # not back to v3
    assert 3 in registry.blocked_versions(ENDPOINT)


def test_manual_rollback_refuses_a_rejected_or_failing_target(promoted):
    registry, endpoints, rollback, probes, _, _ = promoted
    registry.reject(1, actor="bob", reason="bug")
    outcome = rollback.rollback(ENDPOINT, actor="oncall", reason="x", to_version=1)
    assert outcome.action == "none" and "rejected" in outcome.reason
    probes.results["v2"] = False
    outcome = rollback.rollback(ENDPOINT, actor="oncall", reason="x", to_version=2)
    assert outcome.action == "none" and "probe" in outcome.reason
    assert weights(endpoints)[3] == 1.0


# -- the rollback claim: one rollback per incident, on the SQLite registry -------------------

def test_the_local_registry_keeps_the_first_rollback_claim_per_endpoint_and_head(promoted):
    registry = promoted[0]
    head = registry.deployments(ENDPOINT)[-1].deployment_id
    assert registry.claim_rollback(ENDPOINT, head, "rollback:a").claimed_by == "rollback:a"
    # re-entrant:
    assert registry.claim_rollback(ENDPOINT, head, "rollback:a").claimed_by == "rollback:a"
    assert registry.claim_rollback(ENDPOINT, head, "rollback:b").claimed_by == "rollback:a"
    # Kept in registry.db, not in the object: another process sees the same holder.
    from mlops_kit.registry.local import LocalRegistry

    assert LocalRegistry(registry.home, "fraud-scorer").claim_rollback(
        ENDPOINT, head, "rollback:b").claimed_by == "rollback:a"
    # Another head, endpoint or model group is another incident.
    assert registry.claim_rollback(ENDPOINT, "rollback:a", "rollback:b").claimed_by == "rollback:b"
    assert registry.claim_rollback("other-endpoint", head, "rollback:b").claimed_by == "rollback:b"
    assert LocalRegistry(registry.home, "other-group").claim_rollback(
        ENDPOINT, head, "rollback:b").claimed_by == "rollback:b"

    # Eight claimers of one head released together: one holder, and every one of them sees it.
    start, holders = threading.Barrier(8, timeout=30), []

    def claim(n):
        start.wait()
        holders.append(registry.claim_rollback(ENDPOINT, "promote:new",
                                              f"rollback:{n}").claimed_by)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(holders) == 8 and len(set(holders)) == 1
    assert holders[0] in {f"rollback:{n}" for n in range(8)}


def test_two_alarms_released_together_without_the_local_lock_roll_back_once(promoted):
    """Both alarms decide v3 → v2 and pass the pre-shift check (a barrier releases them
    together right after it), with no control-plane lock around them: only the claim's holder
    shifts, records and notifies."""
    registry, endpoints, rollback, _, outbox, _ = promoted
    by_shape, errors = deliver_together(rollback, endpoints, {
        shape: alarm_event(shape) for shape in ("eventbridge", "lambda")})
    outcomes = list(by_shape.values())

    assert errors == [] and sorted(o.action for o in outcomes) == ["none", "rolled_back"]
    (winner,) = [o for o in outcomes if o.action == "rolled_back"]
    (loser,) = [o for o in outcomes if o.action == "none"]
    assert loser.details["claimed_by"] == winner.deployment_id in loser.reason
    (record,) = [d for d in registry.deployments(ENDPOINT) if d.kind == "rollback"]
    assert record.deployment_id == winner.deployment_id
    assert [subject for subject, _ in outbox] == [f"[{ENDPOINT}] rollback: v3 → v2"]
    assert weights(endpoints) == {3: 0.0, 2: 1.0, 1: 0.0}


def test_a_stale_claim_holds_only_alarms_about_its_head_never_manual_shifts(promoted):
    """An invocation claimed the rollback away from the current head and never came back. The
    alarms of that incident find its claim; the operator's manual rollback and roll-forward do
    not claim and go through; once they head the history, the claim matches nothing."""
    registry, endpoints, _, probes, outbox, sleeps = promoted
    rollback = RollbackController(registry, endpoints, health=probes, notifier=outbox,
                                  settings=RollbackSettings(cooldown=timedelta(0)), sleep=sleeps)
    head = registry.deployments(ENDPOINT)[-1].deployment_id
    assert registry.claim_rollback(ENDPOINT, head, "rollback:ghost").claimed_by == "rollback:ghost"
    event = alarm_event()
    held = rollback.handle_event(event)
    claimed_at = registry.rollback_claim(ENDPOINT, head).claimed_at
    assert held.action == "none" and held.details == {"claimed_by": "rollback:ghost",
                                                      "claimed_at": claimed_at,
                                                      "rolled_back_from": head}
    assert claimed_at in held.reason and "rollback:ghost" in held.reason
    assert weights(endpoints) == {3: 1.0, 2: 0.0, 1: 0.0} and outbox == []

    manual = rollback.rollback(ENDPOINT, actor="oncall", reason="bad scores")
    assert (manual.action, manual.from_version, manual.to_version) == ("rolled_back", 3, 2)
    forward = rollback.rollforward(ENDPOINT, 3, actor="oncall", reason="fixed upstream data")
    assert forward.action == "rolled_forward"
    # The same alarm transition again (it shifted nothing the first time): a new head, so the
    # ghost's claim no longer applies.
    again = rollback.handle_event(copy.deepcopy(event))
    assert (again.action, again.from_version, again.to_version) == ("rolled_back", 3, 2)
    assert [d.kind for d in registry.deployments(ENDPOINT)][-3:] == [
        "rollback", "rollforward", "rollback"]


# -- a claim that is never used: released on failure, taken over once stale; an unrecorded
# -- promotion is not a rollback ------------------------------------------------------------

def backdate_claim(registry, head, age):
    """The claim on `head` as if made `age` ago (a claimer that died then)."""
    import sqlite3

    from mlops_kit.core.timestamps import iso_millis as iso_ms

    with sqlite3.connect(registry.db_path) as db:
        db.execute("UPDATE rollback_claims SET claimed_at = ? WHERE rolled_back_from = ?",
                   (iso_ms(datetime.now(timezone.utc) - age), head))


def claim_row(registry, head):
    """(claimed_by, claimed_at) of the claim on `head`, read from registry.db."""
    import sqlite3

    with sqlite3.connect(registry.db_path) as db:
        return db.execute("SELECT claimed_by, claimed_at FROM rollback_claims WHERE "
                          "rolled_back_from = ?", (head,)).fetchone()


@pytest.mark.parametrize("failure", ["busy past the last try", "rejected"])
def test_a_claimer_whose_shift_fails_releases_the_claim_so_the_next_alarm_rolls_back(
        promoted, failure):
    """The eventbridge alarm claims the rollback, then its weight change fails (the endpoint
    busy for all 4 tries, or an error): it gives the claim back and the error surfaces. The
    incident's next alarm is not held off by it (before, it returned `none` for good)."""
    registry, endpoints, rollback, _, outbox, _ = promoted
    head = registry.deployments(ENDPOINT)[-1].deployment_id
    real_set_weights = endpoints.set_weights

    def fail(name, w):
        if failure == "rejected":
            raise ValueError("weights rejected")
        raise EndpointBusyError("Cannot update in-progress endpoint")

    endpoints.set_weights = fail
    first = alarm_event("eventbridge")
    with pytest.raises((ValueError, EndpointBusyError)):
        rollback.handle_event(first)
    endpoints.set_weights = real_set_weights
    assert weights(endpoints) == {3: 1.0, 2: 0.0, 1: 0.0} and outbox == []

    other = rollback.handle_event(alarm_event("lambda"))  # the claim was released
    assert (other.action, other.from_version, other.to_version) == ("rolled_back", 3, 2)
    assert registry.rollback_claim(ENDPOINT, head).claimed_by == other.deployment_id
    again = rollback.handle_event(first)  # the first event, redelivered: one rollback only
    assert again.action == "none" and "cooldown" in again.reason
    assert [d.deployment_id for d in registry.deployments(ENDPOINT)
            if d.kind == "rollback"] == [other.deployment_id]
    assert [subject for subject, _ in outbox] == [f"[{ENDPOINT}] rollback: v3 → v2"]
    assert weights(endpoints) == {3: 0.0, 2: 1.0, 1: 0.0}


def test_a_claim_whose_holder_died_is_taken_over_once_stale_and_alerts_before(promoted):
    """A holder that died after claiming (nothing released it) holds the incident only for
    `claim_stale_after`: a fresh claim holds off quietly, naming holder and time; one older
    than `claim_alert_after` also alerts on-call (this alarm's `none` is final); one older
    than `claim_stale_after` is taken over and the alarm rolls back."""
    registry, endpoints, rollback, _, outbox, _ = promoted
    head = registry.deployments(ENDPOINT)[-1].deployment_id
    registry.claim_rollback(ENDPOINT, head, "rollback:ghost")

    fresh = rollback.handle_event(alarm_event("eventbridge"))
    claimed_at = claim_row(registry, head)[1]
    assert fresh.action == "none" and fresh.details["claimed_by"] == "rollback:ghost"
    assert "rollback:ghost" in fresh.reason and claimed_at in fresh.reason
    assert outbox == []  # two alarms of one incident seconds apart: the holder notifies

    backdate_claim(registry, head, timedelta(minutes=3))
    event = alarm_event("lambda")
    old = rollback.handle_event(event)
    claimed_at = claim_row(registry, head)[1]
    assert old.action == "none" and old.details["claimed_at"] == claimed_at in old.reason
    ((subject, message),) = outbox
    assert "ALERT" in subject and message["claimed_by"] == "rollback:ghost"
    assert message["claimed_at"] == claimed_at and "mlops rollback" in message["reason"]
    assert weights(endpoints) == {3: 1.0, 2: 0.0, 1: 0.0}

    backdate_claim(registry, head, timedelta(minutes=6))
    later = alarm_event("eventbridge")  # the alarm's next transition into ALARM
    later["detail"]["state"]["timestamp"] = "2030-01-01T00:00:00.000+0000"
    taken = rollback.handle_event(later)
    assert (taken.action, taken.from_version, taken.to_version) == ("rolled_back", 3, 2)
    assert claim_row(registry, head)[0] == taken.deployment_id
    assert [d.deployment_id for d in registry.deployments(ENDPOINT)
            if d.kind == "rollback"] == [taken.deployment_id]
    assert weights(endpoints) == {3: 0.0, 2: 1.0, 1: 0.0}


def test_the_local_claim_is_released_only_by_its_holder_and_renewed_by_it(promoted):
    registry = promoted[0]
    head = registry.deployments(ENDPOINT)[-1].deployment_id
    first = registry.claim_rollback(ENDPOINT, head, "rollback:a", from_version=3, to_version=2)
    assert (first.from_version, first.to_version) == (3, 2)
    assert registry.release_rollback(ENDPOINT, head, "rollback:b") is False
    backdate_claim(registry, head, timedelta(minutes=1))
    stale_after = timedelta(minutes=5)
    renewed = registry.claim_rollback(ENDPOINT, head, "rollback:a", stale_after=stale_after)
    assert renewed.claimed_by == "rollback:a" and renewed.claimed_at > first.claimed_at
    assert registry.claim_rollback(ENDPOINT, head, "rollback:b",
                                   stale_after=stale_after).claimed_by == "rollback:a"
    assert registry.release_rollback(ENDPOINT, head, "rollback:a") is True
    assert registry.rollback_claim(ENDPOINT, head) is None
    assert registry.claim_rollback(ENDPOINT, head, "rollback:b").claimed_by == "rollback:b"


def test_a_claims_table_from_before_the_decided_versions_is_migrated(promoted):
    import sqlite3

    registry = promoted[0]
    with sqlite3.connect(registry.db_path) as db:
        db.execute("DROP TABLE IF EXISTS rollback_claims")
        db.execute("CREATE TABLE rollback_claims (model_group TEXT NOT NULL, endpoint_name TEXT "
                   "NOT NULL, rolled_back_from TEXT NOT NULL, claimed_by TEXT NOT NULL, "
                   "claimed_at TEXT NOT NULL, PRIMARY KEY (model_group, endpoint_name, "
                   "rolled_back_from))")
        db.execute("INSERT INTO rollback_claims VALUES ('fraud-scorer', ?, 'h', 'rollback:old', "
                   "'2020-01-01T00:00:00.000Z')", (ENDPOINT,))
    claim = registry.claim_rollback(ENDPOINT, "h", "rollback:new",
                                    stale_after=timedelta(minutes=5), to_version=2)
    assert (claim.claimed_by, claim.to_version) == ("rollback:new", 2)


def promote_unrecorded(world, registry, version):
    """Approve `version`: the deployment controller applies it to the endpoint, then its
    history write fails (the Lambda errors; its redeliveries may come later, or never)."""
    registry.approve(version, actor="bob", reason="ship")
    real = registry.record_deployment
    registry.record_deployment = lambda record: (_ for _ in ()).throw(OSError("ledger down"))
    try:
        with pytest.raises(OSError):
            world[2].handle_event(model_package_event("fraud-scorer", version, "Approved"))
    finally:
        registry.record_deployment = real


def test_an_alarm_after_an_unrecorded_promotion_rolls_back_from_the_new_champion(world,
                                                                                promoted):
    """v4 was promoted onto the endpoint but its record failed; an alarm fires. It is not an
    earlier, unrecorded rollback (v4 was never a warm fallback of the last record): recording
    the promotion as a "rollback" to v4 would leave the alarm's model serving. The alarm rolls
    back from what serves, v4, to the newest healthy fallback, v3."""
    registry, endpoints, rollback, probes, outbox, _ = promoted
    probes.results["v4"] = True
    promote_unrecorded(world, registry, 4)
    assert weights(endpoints) == {4: 1.0, 3: 0.0, 2: 0.0}
    assert registry.deployments(ENDPOINT)[-1].version == 3  # the record says v3

    outcome = rollback.handle_event(alarm_event())
    assert (outcome.action, outcome.from_version, outcome.to_version) == ("rolled_back", 4, 3)
    assert outcome.reason != "completed an earlier, unrecorded shift"
    assert weights(endpoints) == {4: 0.0, 3: 1.0, 2: 0.0}
    (record,) = [d for d in registry.deployments(ENDPOINT) if d.kind == "rollback"]
    assert (record.previous_version, record.version) == (4, 3)
    assert "v4" in record.evidence["unrecorded_change"]
    assert [subject for subject, _ in outbox] == [f"[{ENDPOINT}] rollback: v4 → v3"]
    assert 4 in registry.blocked_versions(ENDPOINT)
    # The promotion's redelivery does not bring the rolled-back version back.
    again = world[2].handle_event(model_package_event("fraud-scorer", 4, "Approved"))
    assert again.action == "ignored" and weights(endpoints)[3] == 1.0


def test_an_alarms_own_unrecorded_shift_after_an_unrecorded_promotion_is_not_repeated(
        world, promoted):
    """As above, and the alarm's own history write fails after its shift (v4 → v3). Its
    redelivery finds v3 serving as the last record says, in a lineup no record names: its
    claim names v3 as the target, so it records that rollback instead of rolling back again
    (to v2)."""
    registry, endpoints, rollback, probes, outbox, _ = promoted
    probes.results["v4"] = True
    promote_unrecorded(world, registry, 4)
    event = alarm_event()
    real = registry.record_deployment
    registry.record_deployment = lambda record: (_ for _ in ()).throw(OSError("ledger down"))
    with pytest.raises(OSError):
        rollback.handle_event(event)
    registry.record_deployment = real
    assert weights(endpoints) == {4: 0.0, 3: 1.0, 2: 0.0}

    redelivered = rollback.handle_event(copy.deepcopy(event))
    assert (redelivered.action, redelivered.from_version, redelivered.to_version) == (
        "rolled_back", 4, 3)
    assert weights(endpoints) == {4: 0.0, 3: 1.0, 2: 0.0}  # not on to v2
    (record,) = [d for d in registry.deployments(ENDPOINT) if d.kind == "rollback"]
    assert (record.deployment_id, record.previous_version, record.version) == (
        redelivered.deployment_id, 4, 3)
    assert [subject for subject, _ in outbox] == [f"[{ENDPOINT}] rollback: v4 → v3"]


def test_status_lineup_never_shows_a_rolled_back_version(promoted):
    """v3 rolled back to v2 stays warm at weight 0, but it is no fallback: `mlops status`
    shows the lineup v2, v1; rolled forward again, v3 leads it once more."""
    from mlops_kit.registry.service import status

    registry, endpoints, rollback, _, _, _ = promoted
    assert status(registry, endpoints, ENDPOINT)["lineup"] == [3, 2, 1]
    assert rollback.handle_event(alarm_event()).action == "rolled_back"
    report = status(registry, endpoints, ENDPOINT)
    assert report["champion"] == 2 and report["lineup"] == [2, 1]
    assert 3 in {v["version"] for v in report["variants"]}  # still warm, just not a fallback
    forward = rollback.rollforward(ENDPOINT, 3, actor="bob", reason="fixed")
    assert forward.action == "rolled_forward"
    assert status(registry, endpoints, ENDPOINT)["lineup"] == [3, 2, 1]
