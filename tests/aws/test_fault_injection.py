"""Injected faults on the AWS home (issue [E]): DynamoDB throttling and conditional failures in
the ledger, SageMaker throttling on the registry's calls, a half-written registration, and the
two writers of one version's status. moto underneath; faults are injected by a client wrapper
that fails chosen calls before they reach moto."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from mlops_kit.aws.clients import Backoff
from mlops_kit.registry.base import ApprovalStatus, DeploymentRecord, RegistrationRequest
from mlops_kit.core.rotation import VariantWeight
from mlops_kit.registry.sagemaker import SageMakerRegistry

from .conftest import IMAGE_URI, LEDGER

GROUP, ENDPOINT = "fraud-scorer", "fraud-scorer-prod"


def registration(run: int = 1) -> RegistrationRequest:
    return RegistrationRequest(
        model_group=GROUP, model_artifact=f"s3://a/run-{run}/model.tar.gz",
        training_run_id=f"run-{run}", metrics={"aupr": 0.6}, latency={},
        gates=[{"gate": "min_aupr", "passed": True}],
        lineage={"data": {}, "code": {}, "parameters": {}, "libraries": {}},
        owner="alice", use_case="fraud")


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
    registry.register(registration())
    sm.fail("describe_model_package", throttled("DescribeModelPackage"))
    sm.fail("update_model_package", throttled("UpdateModelPackage"), throttled("UpdateModelPackage"))
    version, changed = registry.approve(1, actor="bob", reason="ship")
    assert changed and version.status is ApprovalStatus.APPROVED
    assert len(sleeps) == 3
    assert package_status(registry) == "Approved"
    assert trail(registry) == [("", "PendingManualApproval"), ("PendingManualApproval", "Approved")]


def test_an_approval_throttled_past_the_last_try_surfaces_and_changes_nothing(faulty):
    registry, sm, _, sleeps = faulty
    registry.register(registration())
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
    registry.register(registration())
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
    registry.register(registration())
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
        registry.register(registration(1))
    # The package exists in SageMaker; the ledger has nothing. list/show still work, from
    # the package's own metadata.
    (listed,) = registry.list_versions()
    assert (listed.version, listed.owner, listed.training_run_id) == (1, "alice", "run-1")
    assert registry.get(1).status is ApprovalStatus.PENDING
    approved, changed = registry.approve(1, actor="bob", reason="ship")
    assert changed and package_status(registry) == "Approved"
    assert trail(registry) == [("PendingManualApproval", "Approved")]
    assert registry.register(registration(2)).version == 2
    assert [v.version for v in registry.list_versions()] == [1, 2]
