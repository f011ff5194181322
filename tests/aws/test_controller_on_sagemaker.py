"""The deployment controller (the same code the Lambda runs) on the SageMaker adapters:
approval events in, endpoint created then updated, history in the ledger."""

from __future__ import annotations

import pytest
from botocore.stub import ANY

from mlops_kit.deploy.controller import DeploymentController, DeploymentSettings
from mlops_kit.deploy.events import model_package_event
from mlops_kit.deploy.sagemaker_endpoint import SageMakerEndpoints
from mlops_kit.registry.sagemaker import SageMakerRegistry

from builders import registration

from .conftest import ACCOUNT, IMAGE_URI, LEDGER, REGION, ROLE_ARN, MotoExceptUpdateEndpoint

GROUP = "fraud-scorer"
ENDPOINT = "fraud-scorer-prod"


@pytest.fixture()
def registry(sagemaker, dynamodb):
    registry = SageMakerRegistry(GROUP, ledger_table=LEDGER, image_uri=IMAGE_URI,
                                 sagemaker_client=sagemaker, dynamodb_client=dynamodb)
    lineage = {"data": {"uri": "s3://d/x.parquet"}, "code": {"version": "git:x"},
               "parameters": {}, "libraries": {}}
    for run in range(1, 4):
        registry.register(registration(run, group=GROUP, lineage=lineage))
    return registry


def approval(registry, version, reason):
    approved, _ = registry.approve(version, actor="bob", reason=reason)
    return model_package_event(GROUP, version, str(approved.status), reason=reason,
                               region=REGION, account=ACCOUNT)


def test_approvals_deploy_through_the_sagemaker_adapters(registry, sagemaker, stubbed_sagemaker,
                                                         sleeps):
    stub_client, stubber = stubbed_sagemaker
    endpoints = SageMakerEndpoints(MotoExceptUpdateEndpoint(sagemaker, stub_client),
                                   execution_role_arn=ROLE_ARN, sleep=sleeps)
    controller = DeploymentController(registry, endpoints,
                                      DeploymentSettings(ENDPOINT, instance_count=2),
                                      sleep=sleeps)

    first_event = approval(registry, 1, "first model")
    first = controller.handle_event(first_event)
    assert first.action == "deployed"
    view = endpoints.describe(ENDPOINT)
    assert [(v.variant_name, v.weight, v.instance_count) for v in view.variants] == [
        ("v1", 1.0, 2)]
    assert controller.handle_event(first_event).action == "duplicate"

    stubber.add_response("update_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:"
                                                            f"{ACCOUNT}:endpoint/{ENDPOINT}"},
                         {"EndpointName": ENDPOINT, "EndpointConfigName": ANY,
                          "RetainAllVariantProperties": False})
    second = controller.handle_event(approval(registry, 2, "beats v1"))
    assert second.action == "deployed"
    assert [(v.variant_name, v.weight) for v in second.variants] == [("v2", 1.0), ("v1", 0.0)]
    config = sagemaker.describe_endpoint_config(
        EndpointConfigName=second.details["endpoint_config"])
    assert [v["VariantName"] for v in config["ProductionVariants"]] == ["v2", "v1"]
    assert [d.version for d in registry.deployments(ENDPOINT)] == [1, 2]
    assert registry.lineup(ENDPOINT).versions == (2, 1)
    assert registry.champion(ENDPOINT).version == 2
