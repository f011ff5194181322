"""Injected faults on the AWS home (issue [E]): DynamoDB throttling and conditional failures in
the ledger, SageMaker throttling on the registry's calls, a half-written registration, the
two writers of one version's status, an Updating endpoint during a promotion and a rollback,
and two alarms of one endpoint at once. moto underneath; faults are injected by a client wrapper
that fails chosen calls before they reach moto."""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from mlops_kit.aws.clients import Backoff
from mlops_kit.deploy.controller import DeploymentController, DeploymentSettings
from mlops_kit.endpoints import EndpointBusyError
from mlops_kit.deploy.events import model_package_event
from mlops_kit.deploy.rollback import RollbackController, RollbackDeferred
from mlops_kit.deploy.sagemaker_endpoint import SageMakerEndpoints
from mlops_kit.monitoring.alarm_events import parse_alarm_event

from builders import alarm_event, deliver_together, registration
from mlops_kit.registry.base import ApprovalStatus, DeploymentRecord
from mlops_kit.core.rotation import VariantWeight
from mlops_kit.registry.sagemaker import SageMakerRegistry

from .conftest import ACCOUNT, IMAGE_URI, LEDGER, REGION, ROLE_ARN

GROUP, ENDPOINT = "fraud-scorer", "fraud-scorer-prod"


def throttled(operation: str) -> ClientError:
    return ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}},
                       operation)


def cancelled(*codes: str) -> ClientError:
    return ClientError({"Error": {"Code": "TransactionCanceledException",
                                  "Message": "Transaction cancelled"},
                        "CancellationReasons": [{"Code": c} for c in codes]},
                       "TransactWriteItems")


class Faulty:
    """The real (moto) client, except that chosen operations first raise the queued errors
    (or run a hook) before they go through."""

    def __init__(self, client):
        self.client = client
        self.faults: dict[str, list] = {}
        self.calls: dict[str, int] = {}

    def fail(self, operation: str, *errors) -> None:
        self.faults.setdefault(operation, []).extend(errors)

    def __getattr__(self, name):
        real = getattr(self.client, name)

        def call(**kwargs):
            self.calls[name] = self.calls.get(name, 0) + 1
            queued = self.faults.get(name)
            if queued:
                fault = queued.pop(0)
                if isinstance(fault, BaseException):
                    raise fault
                fault()  # a hook: another writer acting right now
            return real(**kwargs)
        return call


@pytest.fixture()
def faulty(sagemaker, dynamodb, sleeps):
    sm, ddb = Faulty(sagemaker), Faulty(dynamodb)
    registry = SageMakerRegistry(GROUP, ledger_table=LEDGER, image_uri=IMAGE_URI,
                                 sagemaker_client=sm, dynamodb_client=ddb,
                                 backoff=Backoff(max_attempts=4, sleep=sleeps))
    return registry, sm, ddb, sleeps


def package_status(registry, version=1) -> str:
    return registry.sagemaker.client.describe_model_package(
        ModelPackageName=registry.model_package_arn(version))["ModelApprovalStatus"]


def trail(registry, version=1) -> list[tuple[str, str]]:
    return [(t.from_status, t.to_status) for t in registry.transitions(version)]


def test_throttled_sagemaker_calls_of_an_approval_are_retried_and_applied_once(faulty):
    registry, sm, _, sleeps = faulty
    registry.register(registration(group=GROUP))
    sm.fail("describe_model_package", throttled("DescribeModelPackage"))
    sm.fail("update_model_package", throttled("UpdateModelPackage"), throttled("UpdateModelPackage"))
    version, changed = registry.approve(1, actor="bob", reason="ship")
    assert changed and version.status is ApprovalStatus.APPROVED
    assert len(sleeps) == 3
    assert package_status(registry) == "Approved"
    assert trail(registry) == [("", "PendingManualApproval"), ("PendingManualApproval", "Approved")]


def test_an_approval_throttled_past_the_last_try_surfaces_and_changes_nothing(faulty):
    registry, sm, _, sleeps = faulty
    registry.register(registration(group=GROUP))
    sm.fail("update_model_package", *[throttled("UpdateModelPackage")] * 4)
    with pytest.raises(ClientError, match="Throttling"):
        registry.approve(1, actor="bob", reason="ship")
    assert len(sleeps) == 3
    assert package_status(registry) == "PendingManualApproval"
    assert trail(registry) == [("", "PendingManualApproval")]
    assert registry.get(1).status is ApprovalStatus.PENDING


@pytest.mark.parametrize("error", [
    ClientError({"Error": {"Code": "ProvisionedThroughputExceededException",
                           "Message": "slow down"}}, "TransactWriteItems"),
    cancelled("None", "ThrottlingError"),
    cancelled("TransactionConflict", "None"),
], ids=["provisioned-throughput", "transaction-throttled", "transaction-conflict"])
def test_a_throttled_or_conflicting_ledger_transaction_is_retried_and_written_once(
        faulty, error):
    registry, _, ddb, sleeps = faulty
    record = DeploymentRecord("promote:1", ENDPOINT, "promote", 1,
                              (VariantWeight("v1", 1, 1.0),), "bob", "ship",
                              "2026-11-27T10:00:00.000Z")
    ddb.fail("transact_write_items", error, error)
    assert registry.record_deployment(record) == (record, True)
    assert len(sleeps) == 2
    assert registry.record_deployment(record)[1] is False  # the guard holds: once per id
    assert [d.deployment_id for d in registry.deployments(ENDPOINT)] == ["promote:1"]


def test_a_conditional_failure_is_not_retried_as_if_it_were_throttling(faulty):
    registry, _, ddb, sleeps = faulty
    record = DeploymentRecord("promote:1", ENDPOINT, "promote", 1,
                              (VariantWeight("v1", 1, 1.0),), "bob", "ship",
                              "2026-11-27T10:00:00.000Z")
    registry.record_deployment(record)
    ddb.fail("transact_write_items", cancelled("ConditionalCheckFailed", "None"))
    assert registry.record_deployment(record)[1] is False
    assert sleeps == []


def test_a_ledger_write_lost_after_the_package_update_is_completed_by_the_next_call(faulty):
    registry, _, ddb, _ = faulty
    registry.register(registration(group=GROUP))
    ddb.fail("transact_write_items", *[throttled("TransactWriteItems")] * 4)
    with pytest.raises(ClientError, match="Throttling"):
        registry.approve(1, actor="bob", reason="ship it")
    # Half-applied: SageMaker approved (and emits the deployment event), the ledger did not
    # follow. Reads already show SageMaker's word.
    assert package_status(registry) == "Approved"
    assert registry.get(1).status is ApprovalStatus.APPROVED
    assert trail(registry) == [("", "PendingManualApproval")]
    # The retried approval completes the trail with the original who, when and why.
    version, changed = registry.approve(1, actor="bob", reason="ship it")
    assert not changed and version.status is ApprovalStatus.APPROVED
    last = registry.transitions(1)[-1]
    assert (last.from_status, last.to_status, last.actor, last.reason) == (
        "PendingManualApproval", "Approved", "bob", "ship it")
    assert registry.approve(1, actor="bob", reason="ship it")[1] is False
    assert len(registry.transitions(1)) == 2  # completed once


@pytest.mark.parametrize("order", ["other-first", "ours-first"])
def test_two_writers_of_one_status_leave_sagemaker_and_the_trail_in_agreement(
        faulty, sagemaker, dynamodb, order):
    """bob approves while carol rejects the same version: both read Pending, both update the
    package, and only one ledger compare-and-swap from Pending can succeed."""
    registry, sm, _, _ = faulty
    registry.register(registration(group=GROUP))
    carol = SageMakerRegistry(GROUP, ledger_table=LEDGER, sagemaker_client=sagemaker,
                              dynamodb_client=dynamodb)

    def carol_rejects():
        carol.reject(1, actor="carol", reason="bias found")

    if order == "other-first":
        # carol's whole change lands between bob's read and bob's package update
        sm.fail("update_model_package", carol_rejects)
        registry.approve(1, actor="bob", reason="ship")
    else:
        # bob's package update lands, then carol's whole change, then bob's ledger write
        original = registry.ledger.change_status
        registry.ledger.change_status = lambda *a, **k: (carol_rejects(), original(*a, **k))[1]
        registry.approve(1, actor="bob", reason="ship")
        registry.ledger.change_status = original
    final = package_status(registry)
    transitions = registry.transitions(1)
    assert transitions[-1].to_status == final == str(registry.get(1).status)
    assert final == ("Approved" if order == "other-first" else "Rejected")
    if order == "other-first":
        # bob's transition is appended after carol's: an unbroken chain
        assert [(t.from_status, t.to_status, t.actor) for t in transitions[1:]] == [
            ("PendingManualApproval", "Rejected", "carol"), ("Rejected", "Approved", "bob")]
    else:
        # SageMaker superseded bob's approval before his ledger write: he records nothing;
        # carol's transition starts from the Approved she saw in SageMaker.
        assert [(t.from_status, t.to_status, t.actor) for t in transitions[1:]] == [
            ("Approved", "Rejected", "carol")]


def test_a_package_created_without_its_ledger_record_is_readable_and_the_next_ops_work(
        faulty):
    registry, _, ddb, _ = faulty
    ddb.fail("transact_write_items", *[cancelled("ThrottlingError")] * 4)
    with pytest.raises(ClientError):
        registry.register(registration(1, group=GROUP))
    # The package exists in SageMaker; the ledger has nothing. list/show still work, from
    # the package's own metadata.
    (listed,) = registry.list_versions()
    assert (listed.version, listed.owner, listed.training_run_id) == (1, "alice", "run-1")
    assert registry.get(1).status is ApprovalStatus.PENDING
    approved, changed = registry.approve(1, actor="bob", reason="ship")
    assert changed and package_status(registry) == "Approved"
    assert trail(registry) == [("PendingManualApproval", "Approved")]
    assert registry.register(registration(2, group=GROUP)).version == 2
    assert [v.version for v in registry.list_versions()] == [1, 2]


# -- an Updating endpoint during a promotion and during a rollback ---------------------------
#
# moto has no UpdateEndpoint and never shows an endpoint Updating, so `BusyEndpoint` adds both
# on top of moto: the first N update calls answer SageMaker's real busy error, and an
# UpdateEndpoint that goes through is applied (the endpoint re-created on the new config) so
# that describe and the redelivered event see what SageMaker would show once InService.

EVENTS = Path(__file__).resolve().parents[1] / "fixtures" / "events"
ENDPOINT_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{ENDPOINT}"
BUSY = f'Cannot update in-progress endpoint "{ENDPOINT_ARN}".'
"""SageMaker's answer to an update while the endpoint is Creating/Updating (ValidationException)."""
UPDATES = ("update_endpoint", "update_endpoint_weights_and_capacities")


def busy(operation: str) -> ClientError:
    name = "".join(part.title() for part in operation.split("_"))
    return ClientError({"Error": {"Code": "ValidationException", "Message": BUSY},
                        "ResponseMetadata": {"HTTPStatusCode": 400}}, name)


class BusyEndpoint:
    """moto's SageMaker client with UpdateEndpoint added and a settable number of busy answers
    per update operation; `applied` lists the updates that reached the endpoint."""

    def __init__(self, client):
        self.client = client
        self.busy_for = {op: 0 for op in UPDATES}
        self.attempts = {op: 0 for op in UPDATES}
        self.applied: list[tuple[str, object]] = []
        self.before_update = None  # a hook: someone else acting right before an update lands

    def __getattr__(self, name):
        return getattr(self.client, name)

    def _gate(self, operation: str) -> None:
        self.attempts[operation] += 1
        if self.busy_for[operation] > 0:
            self.busy_for[operation] -= 1
            raise busy(operation)
        if self.before_update is not None:
            hook, self.before_update = self.before_update, None
            hook()

    def update_endpoint(self, *, EndpointName, EndpointConfigName, **_):
        self._gate("update_endpoint")
        self.client.delete_endpoint(EndpointName=EndpointName)
        self.client.create_endpoint(EndpointName=EndpointName,
                                    EndpointConfigName=EndpointConfigName)
        self.applied.append(("update_endpoint", EndpointConfigName))
        return {"EndpointArn": ENDPOINT_ARN}

    def update_endpoint_weights_and_capacities(self, **kwargs):
        self._gate("update_endpoint_weights_and_capacities")
        answer = self.client.update_endpoint_weights_and_capacities(**kwargs)
        self.applied.append(("update_endpoint_weights_and_capacities",
                             {w["VariantName"]: w["DesiredWeight"]
                              for w in kwargs["DesiredWeightsAndCapacities"]}))
        return answer


class HealthyProbes:
    def probe_results(self, endpoint_name):
        return {"v1": True, "v2": True}


@pytest.fixture()
def busy_world(sagemaker, dynamodb, sleeps):
    """v1 and v2 registered; the controllers on the SageMaker adapters over `BusyEndpoint`,
    with the production retry settings (6 tries, 2 s doubling, at most 30 s) and no real
    sleeping."""
    registry = SageMakerRegistry(GROUP, ledger_table=LEDGER, image_uri=IMAGE_URI,
                                 sagemaker_client=sagemaker, dynamodb_client=dynamodb)
    for run in (1, 2):
        registry.register(registration(run, group=GROUP))
    client = BusyEndpoint(sagemaker)
    endpoints = SageMakerEndpoints(client, execution_role_arn=ROLE_ARN, sleep=sleeps)
    deployer = DeploymentController(registry, endpoints, DeploymentSettings(ENDPOINT),
                                    sleep=sleeps)
    return registry, client, endpoints, deployer, sleeps


def approved(registry, version: int) -> dict:
    registry.approve(version, actor="bob", reason=f"ship v{version}")
    return model_package_event(GROUP, version, "Approved", reason=f"ship v{version}",
                               region=REGION, account=ACCOUNT)


def served(endpoints) -> dict[str, float]:
    return {v.variant_name: v.weight for v in endpoints.describe(ENDPOINT).variants}


def promotions(registry) -> list[int]:
    return [d.version for d in registry.deployments(ENDPOINT) if d.kind == "promote"]


def test_an_updating_endpoint_during_a_promotion_is_retried_with_backoff_then_updated_once(
        busy_world):
    registry, client, endpoints, deployer, sleeps = busy_world
    assert deployer.handle_event(approved(registry, 1)).action == "deployed"  # CreateEndpoint
    client.busy_for["update_endpoint"] = 2
    outcome = deployer.handle_event(approved(registry, 2))
    assert (outcome.action, outcome.attempts) == ("deployed", 3)
    assert sleeps == [2.0, 4.0]  # the controller's backoff, not the adapter's throttling one
    assert client.attempts["update_endpoint"] == 3
    assert client.applied == [("update_endpoint", outcome.details["endpoint_config"])]
    assert served(endpoints) == {"v2": 1.0, "v1": 0.0}
    assert promotions(registry) == [1, 2]


def test_a_promotion_busy_past_the_last_try_surfaces_records_nothing_and_redelivery_deploys_once(
        busy_world):
    registry, client, endpoints, deployer, sleeps = busy_world
    deployer.handle_event(approved(registry, 1))
    event = approved(registry, 2)
    client.busy_for["update_endpoint"] = 6  # every one of the 6 tries
    with pytest.raises(EndpointBusyError, match="in-progress endpoint"):
        deployer.handle_event(event)  # the Lambda fails, so EventBridge redelivers the event
    assert sleeps == [2.0, 4.0, 8.0, 16.0, 30.0]
    assert client.applied == []
    assert served(endpoints) == {"v1": 1.0}
    assert promotions(registry) == [1]  # no half-applied promotion in the ledger
    assert registry.champion(ENDPOINT).version == 1

    redelivered = deployer.handle_event(copy.deepcopy(event))  # the endpoint is InService now
    assert (redelivered.action, redelivered.attempts) == ("deployed", 1)
    assert served(endpoints) == {"v2": 1.0, "v1": 0.0}
    assert deployer.handle_event(copy.deepcopy(event)).action == "duplicate"
    assert [a for a, _ in client.applied] == ["update_endpoint"]
    assert promotions(registry) == [1, 2]


@pytest.fixture()
def rolling(busy_world):
    """v2 serving, v1 warm (both approvals deployed through the controller), both probed
    healthy; a rollback controller with the same client."""
    registry, client, endpoints, deployer, sleeps = busy_world
    for version in (1, 2):
        assert deployer.handle_event(approved(registry, version)).action == "deployed"
    client.applied.clear()
    rollback = RollbackController(registry, endpoints, health=HealthyProbes(),
                                  managed_endpoints=[ENDPOINT], sleep=sleeps)
    return registry, client, endpoints, rollback, sleeps


def rollbacks(registry):
    return [d for d in registry.deployments(ENDPOINT) if d.kind == "rollback"]


def test_an_updating_endpoint_during_a_rollback_is_retried_with_backoff_then_shifted_once(
        rolling):
    registry, client, endpoints, rollback, sleeps = rolling
    client.busy_for["update_endpoint_weights_and_capacities"] = 2
    outcome = rollback.handle_event(alarm_event())
    assert (outcome.action, outcome.from_version, outcome.to_version) == ("rolled_back", 2, 1)
    assert outcome.details["attempts"] == 3 and sleeps == [2.0, 4.0]
    assert client.applied == [("update_endpoint_weights_and_capacities",
                               {"v2": 0.0, "v1": 1.0})]
    assert served(endpoints) == {"v2": 0.0, "v1": 1.0}
    (record,) = rollbacks(registry)
    assert record.evidence["attempts"] == 3


def test_a_rollback_busy_past_the_last_try_surfaces_records_nothing_and_redelivery_shifts_once(
        rolling):
    registry, client, endpoints, rollback, sleeps = rolling
    event = alarm_event()
    client.busy_for["update_endpoint_weights_and_capacities"] = 6
    with pytest.raises(EndpointBusyError, match="in-progress endpoint"):
        rollback.handle_event(event)
    assert sleeps == [2.0, 4.0, 8.0, 16.0, 30.0]
    assert client.applied == [] and served(endpoints) == {"v2": 1.0, "v1": 0.0}
    assert rollbacks(registry) == []
    assert registry.champion(ENDPOINT).version == 2

    redelivered = rollback.handle_event(copy.deepcopy(event))
    assert (redelivered.action, redelivered.to_version) == ("rolled_back", 1)
    assert rollback.handle_event(copy.deepcopy(event)).action == "duplicate"
    assert len(client.applied) == 1 and served(endpoints) == {"v2": 0.0, "v1": 1.0}
    assert len(rollbacks(registry)) == 1


# -- two alarms of one endpoint at once, without the Lambda's reserved concurrency ----------

def test_two_alarms_interleaved_between_decide_and_shift_roll_back_once(rolling):
    """The feature-drift alarm decides v2 → v1; before its weights go out, the prediction-drift
    invocation runs whole. The first must not shift again nor record a second rollback: it is
    deferred (the Lambda fails, the event comes back) and then finds the cooldown."""
    registry, client, endpoints, rollback, _ = rolling
    other: list = []
    real_describe = endpoints.describe
    calls = {"n": 0}

    def describe_then_let_the_other_alarm_in(name):
        calls["n"] += 1
        if calls["n"] == 2:  # the first describe decides; the second is the shift's re-check
            other.append(rollback.handle_event(alarm_event("prediction-drift")))
        return real_describe(name)

    endpoints.describe = describe_then_let_the_other_alarm_in
    try:
        with pytest.raises(RollbackDeferred):
            rollback.handle_event(alarm_event("feature-drift"))
    finally:
        endpoints.describe = real_describe
    assert [(o.action, o.to_version) for o in other] == [("rolled_back", 1)]
    again = rollback.handle_event(alarm_event("feature-drift"))  # the redelivered event
    assert again.action == "none" and "cooldown" in again.reason
    assert client.applied == [("update_endpoint_weights_and_capacities",
                               {"v2": 0.0, "v1": 1.0})]
    (record,) = rollbacks(registry)
    assert record.evidence["alarm"] == "fraud-scorer-prod-prediction-drift"
    assert served(endpoints) == {"v2": 0.0, "v1": 1.0}



# -- two alarms of one endpoint released at the same instant; a claimer that dies -----------

class Outbox(list):
    def notify(self, subject, message):
        self.append((subject, message))


class Serialized:
    """moto's DynamoDB client with each call made atomic. DynamoDB applies conditional writes
    to one item one at a time; moto checks the condition and writes in separate steps, so two
    threads could both pass `attribute_not_exists` there, which DynamoDB never allows."""

    def __init__(self, client):
        self.client, self.lock = client, threading.Lock()

    def __getattr__(self, name):
        real = getattr(self.client, name)

        def call(**kwargs):
            with self.lock:
                return real(**kwargs)
        return call


def test_two_alarms_released_together_after_deciding_roll_back_once(rolling, sagemaker,
                                                                    dynamodb):
    """The feature-drift and prediction-drift invocations each decide v2 → v1 and re-check the
    endpoint; a barrier holds both right after that re-check (both have seen the traffic
    unmoved) and releases them together, as reserved concurrency 1 does not prevent. Only the
    claim's holder may shift, record and notify."""
    _, client, endpoints, _, sleeps = rolling
    registry = SageMakerRegistry(GROUP, ledger_table=LEDGER, image_uri=IMAGE_URI,
                                 sagemaker_client=sagemaker, dynamodb_client=Serialized(dynamodb))
    outbox = Outbox()
    rollback = RollbackController(registry, endpoints, health=HealthyProbes(), notifier=outbox,
                                  managed_endpoints=[ENDPOINT], sleep=sleeps)
    outcomes, errors = deliver_together(rollback, endpoints, {
        name: alarm_event(name) for name in ("feature-drift", "prediction-drift")})

    assert errors == [] and sorted(o.action for o in outcomes.values()) == [
        "none", "rolled_back"]
    (winner,) = [o for o in outcomes.values() if o.action == "rolled_back"]
    (loser,) = [o for o in outcomes.values() if o is not winner]
    assert (winner.from_version, winner.to_version) == (2, 1)
    # The other invocation shifted nothing, recorded nothing, and says whose rollback it is.
    assert loser.action == "none" and winner.deployment_id in loser.reason
    assert loser.details["claimed_by"] == winner.deployment_id
    assert client.applied == [("update_endpoint_weights_and_capacities",
                               {"v2": 0.0, "v1": 1.0})]  # one weight change, not two equal ones
    (record,) = rollbacks(registry)
    assert record.deployment_id == winner.deployment_id
    assert [subject for subject, _ in outbox] == [f"[{ENDPOINT}] rollback: v2 → v1"]
    assert served(endpoints) == {"v2": 0.0, "v1": 1.0}


class Killed(Exception):
    """The Lambda dying mid-invocation (timeout, out of memory): the event is delivered again."""


@pytest.mark.parametrize("dies", ["before-the-shift", "after-the-shift"])
def test_a_claimer_that_dies_is_finished_by_its_redelivery_and_no_other_alarm(rolling, dies):
    """The feature-drift invocation claims the rollback and dies: in the weight change (nothing
    shifted) or in the history write (shifted, not recorded). A death (timeout, out of memory)
    runs nothing afterwards, not even the release of the claim. The prediction-drift alarm,
    arriving meanwhile, finds the claim; the redelivered feature-drift event completes the
    rollback exactly once, under its own id, with one notification."""
    registry, client, endpoints, _, sleeps = rolling
    outbox = Outbox()
    rollback = RollbackController(registry, endpoints, health=HealthyProbes(), notifier=outbox,
                                  managed_endpoints=[ENDPOINT], sleep=sleeps)
    real_record = registry.record_deployment

    def die(*_):
        raise Killed("the invocation died")

    registry.release_rollback = die  # the process is gone

    if dies == "before-the-shift":
        client.before_update = die  # once: the weight change never reaches the endpoint
    else:
        registry.record_deployment = die
    event = alarm_event("feature-drift")
    with pytest.raises(Killed):
        rollback.handle_event(event)
    registry.record_deployment = real_record
    del registry.release_rollback
    expected = {"v2": 1.0, "v1": 0.0} if dies == "before-the-shift" else {"v2": 0.0, "v1": 1.0}
    assert served(endpoints) == expected and rollbacks(registry) == [] and outbox == []

    claimer = f"rollback:{parse_alarm_event(event).transition_key}"
    other = rollback.handle_event(alarm_event("prediction-drift"))
    assert other.action == "none" and other.details["claimed_by"] == claimer
    assert served(endpoints) == expected and rollbacks(registry) == []

    redelivered = rollback.handle_event(copy.deepcopy(event))
    assert (redelivered.action, redelivered.from_version, redelivered.to_version,
            redelivered.deployment_id) == ("rolled_back", 2, 1, claimer)
    assert rollback.handle_event(copy.deepcopy(event)).action == "duplicate"
    assert client.applied == [("update_endpoint_weights_and_capacities",
                               {"v2": 0.0, "v1": 1.0})]
    (record,) = rollbacks(registry)
    assert record.deployment_id == claimer
    assert [subject for subject, _ in outbox] == [f"[{ENDPOINT}] rollback: v2 → v1"]
    assert served(endpoints) == {"v2": 0.0, "v1": 1.0}


# -- a claim that is never used: released on failure, taken over once stale; an unrecorded
# -- promotion is not a rollback ------------------------------------------------------------

from datetime import datetime, timedelta, timezone  # noqa: E402

from mlops_kit.aws.ledger import iso_micro  # noqa: E402


def claim_sk(registry) -> str:
    head = registry.deployments(ENDPOINT)[-1].deployment_id
    return f"rollback-claim#{ENDPOINT}#{head}"


def backdate_claim(dynamodb, registry, age) -> str:
    """The ledger's claim as if written `age` ago; returns the claimed_at written."""
    claimed_at = iso_micro(datetime.now(timezone.utc) - age)
    dynamodb.update_item(TableName=LEDGER,
                         Key={"pk": {"S": GROUP}, "sk": {"S": claim_sk(registry)}},
                         UpdateExpression="SET claimed_at = :at",
                         ExpressionAttributeValues={":at": {"S": claimed_at}})
    return claimed_at


def test_a_rollback_busy_past_the_last_try_releases_its_claim_so_the_next_alarm_rolls_back(
        rolling, dynamodb):
    """The feature-drift invocation claims, then the endpoint stays Updating past its 6 tries
    (about 60 s): the claim is released (an Update marking it, kept for the audit) before the
    error surfaces. The prediction-drift alarm then rolls back; before, it found the claim and
    returned `none`, cached by idempotency, with no notification."""
    registry, client, endpoints, _, sleeps = rolling
    outbox = Outbox()
    rollback = RollbackController(registry, endpoints, health=HealthyProbes(), notifier=outbox,
                                  managed_endpoints=[ENDPOINT], sleep=sleeps)
    event = alarm_event("feature-drift")
    claimer = f"rollback:{parse_alarm_event(event).transition_key}"
    client.busy_for["update_endpoint_weights_and_capacities"] = 6
    with pytest.raises(EndpointBusyError):
        rollback.handle_event(event)
    item = dynamodb.get_item(TableName=LEDGER, Key={"pk": {"S": GROUP},
                                                    "sk": {"S": claim_sk(registry)}})["Item"]
    head = registry.deployments(ENDPOINT)[-1].deployment_id

    other = rollback.handle_event(alarm_event("prediction-drift"))
    assert (other.action, other.from_version, other.to_version) == ("rolled_back", 2, 1)
    assert item["claimed_by"]["S"] == claimer and "released_at" in item
    assert registry.rollback_claim(ENDPOINT, head).claimed_by == other.deployment_id
    again = rollback.handle_event(copy.deepcopy(event))  # the busy one, redelivered
    assert again.action == "none" and "cooldown" in again.reason
    assert client.applied == [("update_endpoint_weights_and_capacities",
                               {"v2": 0.0, "v1": 1.0})]
    assert [r.deployment_id for r in rollbacks(registry)] == [other.deployment_id]
    assert [subject for subject, _ in outbox] == [f"[{ENDPOINT}] rollback: v2 → v1"]


def test_a_dead_claimers_claim_alerts_when_old_and_is_taken_over_once_stale(rolling,
                                                                           dynamodb):
    """The feature-drift invocation claims and dies before the shift (nothing runs after it,
    not even the release) and is never redelivered. The prediction-drift alarm 3 minutes later
    is held off, naming the holder and its claimed_at, and alerts on-call; a later alarm, 6
    minutes after the claim (> claim_stale_after), takes the claim over (a conditional write
    on the ISO timestamps) and rolls back once."""
    registry, client, endpoints, _, sleeps = rolling
    outbox = Outbox()
    rollback = RollbackController(registry, endpoints, health=HealthyProbes(), notifier=outbox,
                                  managed_endpoints=[ENDPOINT], sleep=sleeps)

    def die(*_):
        raise Killed("the invocation died")

    client.before_update = die
    registry.release_rollback = die  # the process is gone
    event = alarm_event("feature-drift")
    with pytest.raises(Killed):
        rollback.handle_event(event)
    del registry.release_rollback
    claimer = f"rollback:{parse_alarm_event(event).transition_key}"

    claimed_at = backdate_claim(dynamodb, registry, timedelta(minutes=3))
    held = rollback.handle_event(alarm_event("prediction-drift"))
    assert held.action == "none" and held.details["claimed_by"] == claimer
    assert held.details["claimed_at"] == claimed_at and claimed_at in held.reason
    ((subject, message),) = outbox
    assert "ALERT" in subject and message["claimed_by"] == claimer
    assert client.applied == [] and rollbacks(registry) == []

    backdate_claim(dynamodb, registry, timedelta(minutes=6))
    later = alarm_event("feature-drift")
    later["detail"]["state"]["timestamp"] = "2030-01-01T00:00:00.000+0000"
    taken = rollback.handle_event(later)
    assert (taken.action, taken.from_version, taken.to_version) == ("rolled_back", 2, 1)
    assert client.applied == [("update_endpoint_weights_and_capacities",
                               {"v2": 0.0, "v1": 1.0})]
    assert [r.deployment_id for r in rollbacks(registry)] == [taken.deployment_id]
    assert [s for s, _ in outbox][1:] == [f"[{ENDPOINT}] rollback: v2 → v1"]


def test_the_ledger_claim_is_renewed_by_its_holder_released_only_by_it_and_taken_over_once(
        faulty, dynamodb):
    """The claim's conditional writes on DynamoDB: the holder renews; another claimer does not
    take a live claim; a release by a non-holder changes nothing; a throttled release is
    retried; of two claimers of one stale claim, the first takes it and the second sees it."""
    registry, _, ddb, sleeps = faulty
    head, stale_after = "promote:x", timedelta(minutes=5)
    first = registry.claim_rollback(ENDPOINT, head, "rollback:a", from_version=2, to_version=1)
    assert (first.claimed_by, first.from_version, first.to_version) == ("rollback:a", 2, 1)
    renewed = registry.claim_rollback(ENDPOINT, head, "rollback:a", stale_after=stale_after)
    assert renewed.claimed_by == "rollback:a" and renewed.claimed_at > first.claimed_at
    assert registry.claim_rollback(ENDPOINT, head, "rollback:b",
                                   stale_after=stale_after).claimed_by == "rollback:a"
    assert registry.release_rollback(ENDPOINT, head, "rollback:b") is False
    ddb.fail("transact_write_items", cancelled("ThrottlingError"))
    assert registry.release_rollback(ENDPOINT, head, "rollback:a") is True and len(sleeps) == 1
    assert registry.release_rollback(ENDPOINT, head, "rollback:a") is False  # once
    assert registry.rollback_claim(ENDPOINT, head) is None
    assert registry.claim_rollback(ENDPOINT, head, "rollback:b").claimed_by == "rollback:b"

    dynamodb.update_item(TableName=LEDGER, Key={"pk": {"S": GROUP},
                                                "sk": {"S": f"rollback-claim#{ENDPOINT}#{head}"}},
                         UpdateExpression="SET claimed_at = :at", ExpressionAttributeValues={
                             ":at": {"S": iso_micro(datetime.now(timezone.utc)
                                                    - timedelta(minutes=6))}})
    assert registry.claim_rollback(ENDPOINT, head, "rollback:c",
                                   stale_after=stale_after).claimed_by == "rollback:c"
    assert registry.claim_rollback(ENDPOINT, head, "rollback:d",
                                   stale_after=stale_after).claimed_by == "rollback:c"


def test_an_alarm_after_an_unrecorded_promotion_rolls_back_from_the_new_champion(rolling):
    """v3 is promoted onto the endpoint (UpdateEndpoint applied) but its ledger write fails;
    then an alarm fires. Before, the alarm took the new lineup for its own unrecorded
    rollback: it recorded a "rollback" v2 → v3, notified so, and v3 kept the traffic. Now it
    decides on the endpoint as it is: v3 → v2, with the discrepancy in the evidence."""
    registry, client, endpoints, _, sleeps = rolling
    outbox = Outbox()
    rollback = RollbackController(registry, endpoints,
                                  health=type("P", (), {"probe_results": lambda self, e: {
                                      "v1": True, "v2": True, "v3": True}})(),
                                  notifier=outbox, managed_endpoints=[ENDPOINT], sleep=sleeps)
    deployer = DeploymentController(registry, endpoints, DeploymentSettings(ENDPOINT),
                                    sleep=sleeps)
    registry.register(registration(3, group=GROUP))
    promotion = approved(registry, 3)
    real_record = registry.record_deployment

    def ledger_down(*_):
        raise Killed("the ledger write failed")

    registry.record_deployment = ledger_down
    with pytest.raises(Killed):
        deployer.handle_event(promotion)
    registry.record_deployment = real_record
    assert served(endpoints) == {"v3": 1.0, "v2": 0.0, "v1": 0.0}
    assert promotions(registry) == [1, 2]

    outcome = rollback.handle_event(alarm_event("feature-drift"))
    assert (outcome.action, outcome.from_version, outcome.to_version) == ("rolled_back", 3, 2)
    assert served(endpoints) == {"v3": 0.0, "v2": 1.0, "v1": 0.0}
    (record,) = rollbacks(registry)
    assert (record.previous_version, record.version) == (3, 2)
    assert "unrecorded_change" in record.evidence
    assert [subject for subject, _ in outbox] == [f"[{ENDPOINT}] rollback: v3 → v2"]
