"""The deployment and rollback Lambdas end to end against moto: real event shapes, Powertools
idempotency on DynamoDB, duplicated and foreign events. Each handler runs through its own
module wiring (`mlops_kit.aws.lambda_runtime`, `mlops_kit.homes.aws`): settings from the
environment the test sets, moto clients injected into the module's `clients`."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from mlops_kit.registry.sagemaker import SageMakerRegistry

from builders import alarm_event, load_handler, probes_healthy, registration

from .conftest import ACCOUNT, IMAGE_URI, LEDGER, REGION, ROLE_ARN

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "fixtures" / "events"
GROUP = "fraud-scorer"
ENDPOINT = "fraud-scorer-prod"
IDEMPOTENCY = "mlops-idempotency"


class Context:
    function_name = "test"
    memory_limit_in_mb = 256
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:test"
    aws_request_id = "req-1"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


def event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


@pytest.fixture()
def tables(dynamodb):
    dynamodb.create_table(TableName=IDEMPOTENCY, BillingMode="PAY_PER_REQUEST",
                          KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
    return dynamodb


@pytest.fixture()
def registry(sagemaker, tables):
    registry = SageMakerRegistry(GROUP, ledger_table=LEDGER, image_uri=IMAGE_URI,
                                 sagemaker_client=sagemaker, dynamodb_client=tables)
    for run in range(1, 4):
        registry.register(registration(run, group=GROUP))
    return registry


@pytest.fixture()
def load(monkeypatch, tables, make_client):
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("ENDPOINT_NAME", ENDPOINT)
    monkeypatch.setenv("MLOPS_MODEL_GROUP", GROUP)
    monkeypatch.setenv("LEDGER_TABLE_NAME", LEDGER)
    monkeypatch.setenv("IDEMPOTENCY_TABLE_NAME", IDEMPOTENCY)
    monkeypatch.setenv("SAGEMAKER_EXECUTION_ROLE_ARN", ROLE_ARN)
    monkeypatch.setenv("DATA_CAPTURE_S3_URI", "s3://kit-capture/capture")
    for name, value in {"DATA_CAPTURE_SAMPLING_PERCENT": "100",
                        "ENDPOINT_INSTANCE_TYPE": "ml.m5.large", "CHAMPION_INSTANCE_COUNT": "1",
                        "FALLBACK_INSTANCE_COUNT": "1", "WARM_FALLBACKS": "2"}.items():
        monkeypatch.setenv(name, value)

    def load_module(function: str):
        module = load_handler(function, monkeypatch)
        module.persistence.client = make_client("dynamodb")
        for service in ("sagemaker", "dynamodb", "cloudwatch", "sns"):
            module.clients.inject(service, make_client(service))
        return module
    return load_module


def test_approval_deploys_once_and_foreign_events_are_ignored(load, registry, sagemaker):
    from mlops_kit.deploy.sagemaker_endpoint import SageMakerEndpoints

    handler = load("deployment_controller")
    endpoints = SageMakerEndpoints(sagemaker)

    registry.approve(1, actor="bob", reason="ship it")
    approved = event("sagemaker-model-package-state-change.approved.json")
    approved["detail"]["ModelPackageVersion"] = 1
    first = handler.lambda_handler(approved, Context())
    assert first["action"] == "deployed"
    view = endpoints.describe(ENDPOINT)
    assert [(v.variant_name, v.weight) for v in view.variants] == [("v1", 1.0)]
    # Deployed as the environment says: the execution role and data capture of the settings.
    config = sagemaker.describe_endpoint_config(
        EndpointConfigName=sagemaker.describe_endpoint(EndpointName=ENDPOINT)[
            "EndpointConfigName"])
    assert config["DataCaptureConfig"]["DestinationS3Uri"] == "s3://kit-capture/capture"
    model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    assert model["ExecutionRoleArn"] == ROLE_ARN

    # Redelivered under another event id: Powertools returns the stored result, nothing runs.
    redelivered = dict(copy.deepcopy(approved), id="another-id")
    assert handler.lambda_handler(redelivered, Context()) == first
    assert len(registry.deployments(ENDPOINT)) == 1

    writeback = event("sagemaker-model-package-state-change.metadata-writeback.json")
    assert handler.lambda_handler(writeback, Context())["action"] == "ignored"
    garbage = {"detail-type": "SageMaker Model Package State Change", "source": "aws.sagemaker",
               "detail": {"ModelPackageGroupName": GROUP}}
    assert handler.lambda_handler(garbage, Context())["action"] == "rejected"


def test_settings_fail_fast_naming_what_is_missing(monkeypatch, load):
    monkeypatch.delenv("LEDGER_TABLE_NAME")
    monkeypatch.delenv("DATA_CAPTURE_S3_URI")
    with pytest.raises(Exception, match="LEDGER_TABLE_NAME is required.*DATA_CAPTURE_S3_URI"):
        load("deployment_controller")


def test_the_lambda_deploys_with_data_capture(load):
    handler = load("deployment_controller")
    capture = handler.controller(handler.runtime.routes.only).endpoints.data_capture
    assert capture.destination_s3_uri == "s3://kit-capture/capture"
    assert capture.to_request()["EnableCapture"] is True


@pytest.fixture()
def serving(registry, sagemaker, make_client):
    """v2 serving at weight 1, v1 warm at 0 (first deploy through moto), both probed healthy."""
    from mlops_kit.deploy.sagemaker_endpoint import SageMakerEndpoints
    from mlops_kit.core.rotation import VariantWeight
    from mlops_kit.registry.base import DeploymentRecord

    endpoints = SageMakerEndpoints(sagemaker, execution_role_arn=ROLE_ARN)
    for v in (1, 2):
        registry.approve(v, actor="bob", reason="ship")
    variants = (VariantWeight("v2", 2, 1.0), VariantWeight("v1", 1, 0.0))
    endpoints.deploy(ENDPOINT, variants, {v: registry.model_source(v) for v in (1, 2)})
    history = {1: (VariantWeight("v1", 1, 1.0),), 2: variants}
    for day, version in ((20, 1), (21, 2)):
        registry.record_deployment(DeploymentRecord(
            f"promote-{version}", ENDPOINT, "promote", version, history[version], "bob", "ship",
            f"2026-11-{day}T00:00:00.000Z"))
    cloudwatch = make_client("cloudwatch")
    probes_healthy(cloudwatch, ENDPOINT)
    return endpoints, cloudwatch


def test_alarm_rolls_back_once_in_both_shapes(load, registry, sagemaker, serving):
    endpoints, _ = serving
    handler = load("rollback_controller")

    alarm = alarm_event("feature-drift")
    outcome = handler.lambda_handler(alarm, Context())
    assert (outcome["action"], outcome["from_version"], outcome["to_version"]) == \
        ("rolled_back", 2, 1)
    weights = {v.variant_name: v.weight for v in endpoints.describe(ENDPOINT).variants}
    assert weights == {"v1": 1.0, "v2": 0.0}
    assert handler.lambda_handler(copy.deepcopy(alarm), Context()) == outcome  # replay
    # The other shape, a different alarm, moments later: within the cooldown, no second shift.
    second = handler.lambda_handler(alarm_event("prediction-drift"), Context())
    assert second["action"] == "none" and "cooldown" in second["reason"]
    rollbacks = [d for d in registry.deployments(ENDPOINT) if d.kind == "rollback"]
    assert len(rollbacks) == 1 and rollbacks[0].evidence["alarm"] == alarm["detail"]["alarmName"]


def test_foreign_and_malformed_alarms_are_ignored_without_error(load, registry, sagemaker,
                                                               serving):
    endpoints, _ = serving
    handler = load("rollback_controller")
    foreign = alarm_event("feature-drift")
    foreign["detail"]["alarmName"] = "someone-elses-alarm"
    foreign["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"] = {}
    assert handler.lambda_handler(foreign, Context())["action"] == "ignored"
    assert handler.lambda_handler({"hello": "world"}, Context())["action"] == "ignored"
    back_to_ok = alarm_event("prediction-drift")
    back_to_ok["alarmData"]["state"]["value"] = "OK"
    back_to_ok["alarmData"]["previousState"]["value"] = "ALARM"
    assert handler.lambda_handler(back_to_ok, Context())["action"] == "ignored"
    weights = {v.variant_name: v.weight for v in endpoints.describe(ENDPOINT).variants}
    assert weights == {"v1": 0.0, "v2": 1.0}
