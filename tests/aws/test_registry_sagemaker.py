"""SageMakerRegistry against moto: the same semantics as the local adapter
(tests/unit/test_registry_local.py), plus what is particular to SageMaker."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from mlops_kit.aws.ledger import LEDGER_TABLE, Ledger
from mlops_kit.core.rotation import VariantWeight
from mlops_kit.registry.base import (ApprovalStatus, DeploymentRecord, InvalidRegistrationError,
                                     RegistrationRequest, UnknownVersionError)
from mlops_kit.registry.sagemaker import (MAX_METADATA_ENTRIES, REGISTER_METADATA_LIMIT,
                                          SageMakerRegistry, metadata_safe)

from registry_cases import INVALID_REQUESTS

from .conftest import IMAGE_URI, LEDGER

GROUP = "fraud-detector"
GATES = [{"gate": "min_aupr", "passed": True, "value": 0.6, "threshold": 0.4}]
LINEAGE = {"data": {"uri": "s3://data/d.parquet", "sha256": "ab" * 32},
           "code": {"version": "git:x"}, "parameters": {"seed": 42},
           "libraries": {"xgboost-cpu": "3.0.5"},
           "pipeline_run": "run-1",
           "evaluation_uri": "s3://artifacts/run-1/evaluation/evaluation.json",
           "drift_baseline": "s3://artifacts/run-1/preprocess/baseline/baseline.json"}
ARTIFACT = "s3://artifacts/run-1/train/model.tar.gz"


def request(**overrides):
    fields = dict(model_group=GROUP, model_artifact=ARTIFACT, training_run_id="run-1",
                  metrics={"aupr": 0.6, "roc_auc": 0.91}, latency={"p99_ms": 1.0}, gates=GATES,
                  lineage=LINEAGE, owner="alice", use_case="fraud")
    fields.update(overrides)
    return RegistrationRequest(**fields)


@pytest.fixture()
def make_registry(sagemaker, dynamodb):
    def make(group=GROUP, **kwargs):
        return SageMakerRegistry(group, ledger_table=LEDGER, image_uri=IMAGE_URI,
                                 sagemaker_client=sagemaker, dynamodb_client=dynamodb, **kwargs)
    return make


@pytest.fixture()
def registry(make_registry):
    return make_registry()


def test_register_counts_versions_from_one_and_persists(registry, make_registry):
    first = registry.register(request())
    second = registry.register(request(training_run_id="run-2"))
    assert (first.version, second.version) == (1, 2)
    assert first.status is ApprovalStatus.PENDING
    reopened = make_registry()
    assert [v.version for v in reopened.list_versions()] == [1, 2]
    assert reopened.get(2).training_run_id == "run-2"
    # The lineage also names the package (the deployment controller's model source reads it).
    assert reopened.get(1).lineage == {**LINEAGE,
                                       "model_package_arn": reopened.model_package_arn(1)}
    assert reopened.get(1).model_uri == ARTIFACT
    assert reopened.get(1) == first
    assert [v.version for v in reopened.list_versions(ApprovalStatus.APPROVED)] == []


def test_register_writes_the_model_package_sagemaker_needs(registry, sagemaker):
    version = registry.register(request(description="nightly retrain"))
    group = sagemaker.describe_model_package_group(ModelPackageGroupName=GROUP)
    assert "alice" in group["ModelPackageGroupDescription"]
    assert "fraud" in group["ModelPackageGroupDescription"]
    package = sagemaker.describe_model_package(ModelPackageName=registry.model_package_arn(1))
    assert package["ModelPackageVersion"] == version.version == 1
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert package["ModelPackageDescription"] == "nightly retrain"
    (container,) = package["InferenceSpecification"]["Containers"]
    assert container["Image"] == IMAGE_URI
    assert container["ModelDataUrl"] == ARTIFACT
    assert package["InferenceSpecification"]["SupportedContentTypes"] == ["text/csv"]
    assert package["ModelMetrics"]["ModelQuality"]["Statistics"] == {
        "ContentType": "application/json", "S3Uri": LINEAGE["evaluation_uri"]}
    assert package["DriftCheckBaselines"]["ModelDataQuality"]["Statistics"]["S3Uri"] == \
        LINEAGE["drift_baseline"]
    assert package["MetadataProperties"]["GeneratedBy"] == "run-1"
    assert package["MetadataProperties"]["CommitId"] == "git:x"
    props = package["CustomerMetadataProperties"]
    assert props["mlops:owner"] == "alice"
    assert props["mlops:use_case"] == "fraud"
    assert props["mlops:training_run_id"] == "run-1"
    assert props["mlops:metric:aupr"] == "0.6"
    assert props["mlops:gate:min_aupr"] == "passed value=0.6 threshold=0.4"
    assert props["mlops:lineage:data.sha256"] == "ab" * 32
    assert props["mlops:lineage:parameters.seed"] == "42"
    # A second registration finds the group and does not create it again.
    registry.register(request())
    assert len(sagemaker.list_model_package_groups()["ModelPackageGroupSummaryList"]) == 1


def test_metadata_stays_within_sagemaker_limits_and_the_ledger_keeps_everything(registry,
                                                                                sagemaker):
    lineage = dict(LINEAGE, code={"version": "git:x", "step_scripts": {
        f"mlops_pipelines/steps/step{i}.py": f"{i:064x}" for i in range(80)}},
        container_image={"local": "python 3.11 on x86_64 (xgboost 3.0.5)"},
        notes="x" * 300)
    registry.register(request(lineage=lineage))
    props = sagemaker.describe_model_package(
        ModelPackageName=registry.model_package_arn(1))["CustomerMetadataProperties"]
    assert len(props) <= REGISTER_METADATA_LIMIT < MAX_METADATA_ENTRIES
    assert all(metadata_safe(k, 128) and metadata_safe(v, 256) for k, v in props.items())
    assert int(props["mlops:omitted"]) > 0
    # Shallow lineage comes first; the parenthesised and over-long values are left out.
    assert props["mlops:lineage:code.version"] == "git:x"
    assert "mlops:lineage:notes" not in props
    assert "mlops:lineage:container_image.local" not in props
    assert registry.get(1).lineage == {**lineage,
                                       "model_package_arn": registry.model_package_arn(1)}


def test_audit_trail_records_registration(registry):
    registry.register(request())
    (trail,) = registry.transitions(1)
    assert (trail.from_status, trail.to_status, trail.actor) == ("", "PendingManualApproval",
                                                                 "alice")
    assert trail.details["model_package_arn"].endswith("/fraud-detector/1")


@pytest.mark.parametrize("overrides,match", [
    *INVALID_REQUESTS,
    ({"model_artifact": "/tmp/model"}, "s3://"),
])
def test_incomplete_or_failing_requests_are_refused_and_nothing_is_written(
        make_registry, sagemaker, overrides, match):
    registry = make_registry(overrides.get("model_group", GROUP))
    with pytest.raises(InvalidRegistrationError, match=match):
        registry.register(request(**overrides))
    assert registry.list_versions() == []
    assert sagemaker.list_model_packages()["ModelPackageSummaryList"] == []


def test_register_needs_an_image_but_reading_does_not(sagemaker, dynamodb):
    registry = SageMakerRegistry(GROUP, ledger_table=LEDGER, sagemaker_client=sagemaker,
                                 dynamodb_client=dynamodb)
    with pytest.raises(InvalidRegistrationError, match="image"):
        registry.register(request())
    assert registry.list_versions() == []


def test_wrong_group_and_unknown_version(make_registry, registry):
    other = make_registry("other-group")
    with pytest.raises(InvalidRegistrationError, match="model group"):
        other.register(request())
    with pytest.raises(UnknownVersionError, match="no version 3"):
        other.get(3)  # no group at all
    registry.register(request())
    with pytest.raises(UnknownVersionError, match="no version 3"):
        registry.get(3)
    with pytest.raises(UnknownVersionError):
        registry.approve(3, actor="bob", reason="looks good")


def test_approve_and_reject_keep_who_when_why(registry):
    registry.register(request())
    registry.register(request(training_run_id="run-2"))
    approved, changed = registry.approve(1, actor="bob", reason="AUPR 0.6 beats 0.55")
    assert changed
    assert approved.status is ApprovalStatus.APPROVED
    assert (approved.status_changed_by, approved.status_reason) == ("bob", "AUPR 0.6 beats 0.55")
    rejected, changed = registry.reject(2, actor="carol", reason="calibration off")
    assert changed and rejected.status is ApprovalStatus.REJECTED

    again = registry.get(1)
    assert again.status is ApprovalStatus.APPROVED
    assert (again.status_changed_by, again.status_reason) == ("bob", "AUPR 0.6 beats 0.55")
    assert again.status_changed_at == approved.status_changed_at
    trail = registry.transitions()
    assert [(t.version, t.from_status, t.to_status, t.actor) for t in trail] == [
        (1, "", "PendingManualApproval", "alice"),
        (2, "", "PendingManualApproval", "alice"),
        (1, "PendingManualApproval", "Approved", "bob"),
        (2, "PendingManualApproval", "Rejected", "carol")]
    assert trail[2].reason == "AUPR 0.6 beats 0.55"
    assert [t.to_status for t in registry.transitions(2)] == ["PendingManualApproval",
                                                              "Rejected"]
    assert [v.version for v in registry.list_versions(ApprovalStatus.APPROVED)] == [1]
    assert [v.version for v in registry.list_versions(ApprovalStatus.REJECTED)] == [2]


def test_setting_the_same_status_changes_nothing_and_records_nothing(registry):
    registry.register(request())
    _, changed = registry.set_status(1, ApprovalStatus.PENDING, actor="bob", reason="noop")
    assert not changed
    registry.approve(1, actor="bob", reason="good")
    version, changed = registry.approve(1, actor="dave", reason="again")
    assert not changed
    assert version.status_changed_by == "bob"
    assert len(registry.transitions(1)) == 2


def test_a_status_change_needs_who_and_why(registry):
    registry.register(request())
    with pytest.raises(InvalidRegistrationError, match="who"):
        registry.approve(1, actor=" ", reason="x")
    with pytest.raises(InvalidRegistrationError, match="why"):
        registry.approve(1, actor="bob", reason="")


def test_moto_wipes_what_update_model_package_is_not_sent(registry, sagemaker):
    """The gap the adapter works around: a bare status update drops the metadata in moto
    (real AWS keeps it). Kept here so a moto upgrade that changes this is noticed."""
    registry.register(request())
    arn = registry.model_package_arn(1)
    sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    assert sagemaker.describe_model_package(ModelPackageName=arn).get(
        "CustomerMetadataProperties") is None


def test_approval_keeps_every_field_of_the_package(registry, sagemaker):
    registry.register(request())
    arn = registry.model_package_arn(1)
    before = sagemaker.describe_model_package(ModelPackageName=arn)
    registry.approve(1, actor="bob@example.com", reason="AUPR\n0.6 beats 0.55")
    after = sagemaker.describe_model_package(ModelPackageName=arn)
    assert after["ModelApprovalStatus"] == "Approved"
    assert after["ApprovalDescription"] == "AUPR 0.6 beats 0.55"
    expected = dict(before["CustomerMetadataProperties"])
    expected.update({"mlops:status_changed_by": "bob@example.com",
                     "mlops:status_changed_at": registry.get(1).status_changed_at})
    assert after["CustomerMetadataProperties"] == expected
    for field in ("InferenceSpecification", "ModelMetrics", "DriftCheckBaselines",
                  "MetadataProperties", "ModelPackageDescription"):
        assert after[field] == before[field], field
    # A later metadata write-back (after a deployment) keeps status and reason too.
    registry.annotate(1, {"deployed_at": "2026-11-19T15:03:58Z", "endpoint": "fraud-scorer-prod"})
    annotated = sagemaker.describe_model_package(ModelPackageName=arn)
    assert annotated["ModelApprovalStatus"] == "Approved"
    assert annotated["ApprovalDescription"] == "AUPR 0.6 beats 0.55"
    assert annotated["CustomerMetadataProperties"] == {
        **expected, "deployed_at": "2026-11-19T15:03:58Z", "endpoint": "fraud-scorer-prod"}
    with pytest.raises(ValueError, match="limits"):
        registry.annotate(1, {"note": "{json}"})


def test_a_status_changed_outside_the_kit_is_what_sagemaker_says(registry, sagemaker):
    registry.register(request())
    arn = registry.model_package_arn(1)
    props = sagemaker.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]
    sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved",
                                   ApprovalDescription="approved in Studio",
                                   CustomerMetadataProperties=props)
    version = registry.get(1)
    assert version.status is ApprovalStatus.APPROVED
    assert version.status_reason == "approved in Studio"
    assert version.status_changed_by != "alice"  # not the registrant from the old metadata
    assert registry.list_versions(ApprovalStatus.APPROVED)[0].status_reason == "approved in Studio"
    _, changed = registry.approve(1, actor="bob", reason="again")
    assert not changed
    _, changed = registry.reject(1, actor="bob", reason="drift in shadow traffic")
    assert changed
    assert registry.transitions(1)[-1].from_status == "Approved"


def test_a_package_the_pipeline_registered_is_read_from_its_metadata(registry, sagemaker):
    sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
    arn = sagemaker.create_model_package(
        ModelPackageGroupName=GROUP, ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={"Containers": [{"Image": IMAGE_URI, "ModelDataUrl": ARTIFACT}],
                                "SupportedContentTypes": ["text/csv"],
                                "SupportedResponseMIMETypes": ["text/csv"]},
        MetadataProperties={"GeneratedBy": "arn:aws:sagemaker:us-east-1:123456789012:"
                                           "pipeline/p/execution/abc"},
        ModelMetrics={"ModelQuality": {"Statistics": {
            "ContentType": "application/json", "S3Uri": LINEAGE["evaluation_uri"]}}},
        CustomerMetadataProperties={"mlops:code_sha256": "cd" * 32,
                                    "mlops:training_job": "train-abc",
                                    "mlops:model_sha256": "ef" * 32})["ModelPackageArn"]
    version = registry.get(1)
    assert version.model_uri == ARTIFACT
    assert version.training_run_id == "train-abc"
    assert version.lineage["code_sha256"] == "cd" * 32
    assert version.lineage["evaluation_uri"] == LINEAGE["evaluation_uri"]
    approved, changed = registry.approve(1, actor="bob", reason="pipeline gates passed")
    assert changed and approved.status is ApprovalStatus.APPROVED
    assert registry.get(1).status_changed_by == "bob"
    assert [t.to_status for t in registry.transitions(1)] == ["Approved"]
    props = sagemaker.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]
    assert props["mlops:code_sha256"] == "cd" * 32
    assert registry.model_source(1).model_package_arn == arn


def test_archive_is_recorded_once_and_keeps_the_package(registry, sagemaker):
    registry.register(request())
    registry.register(request())
    registry.approve(2, actor="bob", reason="ok")
    archived, changed = registry.archive(1, actor="retention", reason="never approved, 31 days")
    assert changed and archived.archived_at
    _, changed = registry.archive(1, actor="retention", reason="again")
    assert not changed
    assert registry.get(1).archived_at == archived.archived_at
    assert [v.archived_at != "" for v in registry.list_versions()] == [True, False]
    assert [(t.from_status, t.to_status, t.actor) for t in registry.transitions(1)][-1] == (
        "PendingManualApproval", "Archived", "retention")
    package = sagemaker.describe_model_package(ModelPackageName=registry.model_package_arn(1))
    assert package["CustomerMetadataProperties"]["mlops:archived_at"] == archived.archived_at
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert (registry.ever_approved(1), registry.ever_approved(2)) == (False, True)


def test_listing_follows_pages(make_registry, sagemaker):
    registry = make_registry(page_size=2)
    for run in range(5):
        registry.register(request(training_run_id=f"run-{run}"))
    registry.approve(2, actor="bob", reason="ok")
    registry.approve(5, actor="bob", reason="ok")
    calls = []
    sagemaker.meta.events.register("provide-client-params.sagemaker.ListModelPackages",
                                   lambda params, **_: calls.append(params.get("NextToken")))
    versions = registry.list_versions()
    assert [v.version for v in versions] == [1, 2, 3, 4, 5]
    assert [v.training_run_id for v in versions] == [f"run-{i}" for i in range(5)]
    assert len(calls) == 3 and calls[0] is None and all(calls[1:])
    assert [v.version for v in registry.list_versions(ApprovalStatus.APPROVED)] == [2, 5]
    assert [v.version for v in registry.list_versions(ApprovalStatus.PENDING)] == [1, 3, 4]


def deployment(deployment_id, version, *, endpoint="fraud-scorer-prod", kind="promote",
               previous=None):
    variants = (VariantWeight(f"v{version}", version, 1.0),)
    return DeploymentRecord(deployment_id=deployment_id, endpoint_name=endpoint, kind=kind,
                            version=version, variants=variants, actor="deployer",
                            reason="approved", at="2026-11-19T15:03:58.000Z",
                            previous_version=previous, evidence={"event": deployment_id})


def test_deployments_are_recorded_once_per_id_oldest_first(registry):
    for _ in range(3):
        registry.register(request())
    first, added = registry.record_deployment(deployment("d-1", 1))
    assert added
    again, added = registry.record_deployment(replace(deployment("d-1", 1), reason="retry",
                                                      at="2026-11-19T15:09:00.000Z"))
    assert not added and again == first and again.reason == "approved"
    registry.record_deployment(deployment("d-2", 2))
    registry.record_deployment(deployment("d-3", 3, endpoint="fraud-scorer-staging"))
    registry.record_deployment(deployment("d-4", 1, kind="rollback", previous=2))
    assert [d.deployment_id for d in registry.deployments()] == ["d-1", "d-2", "d-3", "d-4"]
    assert [d.deployment_id for d in registry.deployments("fraud-scorer-prod")] == [
        "d-1", "d-2", "d-4"]
    assert registry.deployments("fraud-scorer-prod")[0] == first
    assert registry.champion("fraud-scorer-prod").version == 1
    assert registry.champion("fraud-scorer-staging").version == 3
    assert registry.blocked_versions("fraud-scorer-prod") == {2}
    assert registry.lineup("fraud-scorer-prod").versions == (2, 1)


def test_no_champion_without_deployments(registry):
    registry.register(request())
    assert registry.champion() is None
    assert registry.deployments() == []


def test_ledger_schema_and_order(dynamodb):
    assert LEDGER_TABLE["partition_key"] == {"name": "pk", "type": "S"}
    assert LEDGER_TABLE["sort_key"] == {"name": "sk", "type": "S"}
    ledger = Ledger(LEDGER, GROUP, dynamodb)
    for i in range(30):
        ledger.put_deployment(f"id-{i:02d}", "e", {"n": i})
    items = list(ledger.query_prefix("deployment#"))
    assert [json.loads(i["record"])["n"] for i in items] == list(range(30))
    assert ledger.put_deployment("id-07", "e", {"n": 99}) == {"n": 7}


def test_the_pipelines_metric_metadata_reads_back_as_metrics_and_a_champion_comparison(
        registry, sagemaker):
    """The keys come from the pipeline definition itself (RegisterModel's metadata); the values
    are what its Join(JsonGet) renders at run time: numbers as strings."""
    import json
    from pathlib import Path

    from mlops_kit.cli.render import champion_comparison_text

    definition = json.loads((Path(__file__).parents[2] / "pipelines" / "definition.json")
                            .read_text())
    register = next(step for condition in definition["Steps"] if condition["Type"] == "Condition"
                    for step in condition["Arguments"]["IfSteps"])
    keys = [k for k in register["Arguments"]["CustomerMetadataProperties"]
            if k.startswith("mlops:metric:")]
    sample = {"aupr": "0.5679", "ece": "0.0019", "score_psi": "0.0006", "champion_compared": "1.0",
              "aupr_regression": "-0.0302", "aupr_regression_lower": "-0.0466",
              "aupr_regression_upper": "-0.0104"}
    assert sorted(k.removeprefix("mlops:metric:") for k in keys) == sorted(sample)
    sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
    sagemaker.create_model_package(
        ModelPackageGroupName=GROUP, ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={"Containers": [{"Image": IMAGE_URI, "ModelDataUrl": ARTIFACT}],
                                "SupportedContentTypes": ["text/csv"],
                                "SupportedResponseMIMETypes": ["text/csv"]},
        CustomerMetadataProperties={key: sample[key.removeprefix("mlops:metric:")]
                                    for key in keys})
    version = registry.get(1)
    assert version.metrics["aupr"] == 0.5679 and version.metrics["aupr_regression_upper"] == -0.0104
    assert champion_comparison_text(version, [version], compact=True) == \
        "+0.030 vs champion [+0.010, +0.047]"
