"""SageMakerEndpoints: moto for what it emulates, botocore's Stubber for UpdateEndpoint, busy
endpoints and throttling (moto has no UpdateEndpoint and no Creating/Updating states)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY

from mlops_kit.aws import models
from mlops_kit.aws.models import SERVING_ENVIRONMENT, model_name
from mlops_kit.core.rotation import Lineup, VariantWeight, promotion_weights
from mlops_kit.endpoints import EndpointBusyError, EndpointNotFoundError, ModelSource
from mlops_kit.deploy.sagemaker_endpoint import (DataCapture, SageMakerEndpoints,
                                                 canary_deployment_config, endpoint_config_name)

from .conftest import ACCOUNT, IMAGE_URI, REGION, ROLE_ARN, MotoExceptUpdateEndpoint

ENDPOINT = "fraud-scorer-prod"
ENDPOINT_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{ENDPOINT}"
GROUP = "fraud-detector"
CAPTURE = DataCapture("s3://capture-bucket/data-capture", sampling_percentage=25,
                      kms_key_id="arn:aws:kms:us-east-1:123456789012:key/abc")
BUSY_MESSAGE = f'Cannot update in-progress endpoint "{ENDPOINT_ARN}".'


def package_arn(version: int) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{GROUP}/{version}"


def sources(*versions: int) -> dict[int, ModelSource]:
    return {v: ModelSource(v, f"s3://artifacts/v{v}/model.tar.gz", package_arn(v))
            for v in versions}


@pytest.fixture()
def packages(sagemaker):
    """Five model packages in moto, as the registry leaves them."""
    sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
    for v in range(1, 6):
        arn = sagemaker.create_model_package(
            ModelPackageGroupName=GROUP, ModelApprovalStatus="Approved",
            InferenceSpecification={"Containers": [{"Image": IMAGE_URI,
                                                    "ModelDataUrl": f"s3://a/v{v}.tar.gz"}],
                                    "SupportedContentTypes": ["text/csv"],
                                    "SupportedResponseMIMETypes": ["text/csv"]}
        )["ModelPackageArn"]
        assert arn == package_arn(v)
    return sources(1, 2, 3, 4, 5)


def adapter(client, **kwargs):
    kwargs.setdefault("data_capture", CAPTURE)
    return SageMakerEndpoints(client, execution_role_arn=ROLE_ARN, instance_type="ml.m5.large",
                              **kwargs)


def lineup(*versions, champion_instances=2, warm_instances=1):
    return promotion_weights(Lineup(versions), champion_instances, warm_instances)


def described(status="InService", variants=(("v2", 1.0, 2), ("v1", 0.0, 1)),
              config="fraud-scorer-prod-config"):
    now = datetime(2026, 11, 19, tzinfo=timezone.utc)
    return {"EndpointName": ENDPOINT, "EndpointArn": ENDPOINT_ARN, "EndpointStatus": status,
            "EndpointConfigName": config, "CreationTime": now, "LastModifiedTime": now,
            "ProductionVariants": [
                {"VariantName": name, "CurrentWeight": weight, "DesiredWeight": weight,
                 "CurrentInstanceCount": count, "DesiredInstanceCount": count}
                for name, weight, count in variants]}


# -- moto ----------------------------------------------------------------------------------

def test_first_deploy_creates_models_config_and_endpoint(sagemaker, packages):
    endpoints = adapter(sagemaker)
    assert endpoints.describe(ENDPOINT) is None
    config_name = endpoints.deploy(ENDPOINT, lineup(3, 2, 1), packages)

    view = endpoints.describe(ENDPOINT)
    assert view.in_service and view.config_name == config_name
    assert view.variants == (VariantWeight("v3", 3, 1.0, 2), VariantWeight("v2", 2, 0.0, 1),
                             VariantWeight("v1", 1, 0.0, 1))
    config = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
    assert [(v["VariantName"], v["ModelName"], v["InitialVariantWeight"],
             v["InitialInstanceCount"], v["InstanceType"]) for v in config["ProductionVariants"]
            ] == [("v3", model_name(packages[3]), 1.0, 2, "ml.m5.large"),
                  ("v2", model_name(packages[2]), 0.0, 1, "ml.m5.large"),
                  ("v1", model_name(packages[1]), 0.0, 1, "ml.m5.large")]
    capture = config["DataCaptureConfig"]
    assert (capture["EnableCapture"], capture["InitialSamplingPercentage"],
            capture["DestinationS3Uri"], capture["KmsKeyId"]) == (
        True, 25, "s3://capture-bucket/data-capture", CAPTURE.kms_key_id)
    assert {o["CaptureMode"] for o in capture["CaptureOptions"]} == {"Input", "Output"}
    assert capture["CaptureContentTypeHeader"] == {"CsvContentTypes": ["text/csv"],
                                                   "JsonContentTypes": ["application/json"]}
    model = sagemaker.describe_model(ModelName=model_name(packages[3]))
    assert model["ExecutionRoleArn"] == ROLE_ARN
    # The package's container plus the serving environment (the default accept type, so that a
    # request without Accept gets CSV, as from the local endpoint).
    assert model["Containers"] == [{"ModelPackageName": package_arn(3),
                                    "Environment": {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT":
                                                    "text/csv"}}]
    assert len(config_name) <= 63 and config_name.startswith(ENDPOINT)


def test_a_model_made_with_another_environment_is_not_reused(monkeypatch):
    """Models are immutable: one created before SERVING_ENVIRONMENT (or with another one) would
    answer in another default type, so its name differs and a deploy creates a new model."""
    source = sources(3)[3]
    current = model_name(source)
    monkeypatch.setattr(models, "SERVING_ENVIRONMENT", {})
    older = model_name(source)
    assert older != current
    assert older.rsplit("-", 1)[0] == current.rsplit("-", 1)[0] == "fraud-detector-v3"


def test_a_repeated_deploy_is_a_no_op_with_the_same_config_name(sagemaker, packages):
    endpoints = adapter(sagemaker)
    first = endpoints.deploy(ENDPOINT, lineup(3, 2, 1), packages)
    # moto would raise NotImplementedError on UpdateEndpoint: none is made.
    assert endpoints.deploy(ENDPOINT, lineup(3, 2, 1), packages) == first
    assert adapter(sagemaker, data_capture=None).endpoint_config_request(
        lineup(3, 2, 1), {3: "a", 2: "b", 1: "c"}) != endpoints.endpoint_config_request(
        lineup(3, 2, 1), {3: "a", 2: "b", 1: "c"})


def test_redeploying_the_running_config_after_a_rollback_restores_its_weights(sagemaker,
                                                                           packages):
    endpoints = adapter(sagemaker)
    config_name = endpoints.deploy(ENDPOINT, lineup(3, 2, 1), packages)
    endpoints.set_weights(ENDPOINT, {"v3": 0.0, "v2": 1.0})  # rolled back to v2
    assert endpoints.deploy(ENDPOINT, lineup(3, 2, 1), packages) == config_name
    assert [(v.variant_name, v.weight, v.instance_count)
            for v in endpoints.describe(ENDPOINT).variants] == [
        ("v3", 1.0, 2), ("v2", 0.0, 1), ("v1", 0.0, 1)]


def test_long_endpoint_names_give_valid_config_names(sagemaker, packages):
    name = "e" * 63
    config_name = adapter(sagemaker).deploy(name, lineup(1), packages)
    assert len(config_name) <= 63
    assert sagemaker.describe_endpoint(EndpointName=name)["EndpointConfigName"] == config_name


def test_set_weights_changes_weights_at_once_and_keeps_instances(sagemaker, packages):
    endpoints = adapter(sagemaker)
    endpoints.deploy(ENDPOINT, lineup(3, 2, 1), packages)
    endpoints.set_weights(ENDPOINT, {"v3": 0.0, "v2": 1.0})
    view = endpoints.describe(ENDPOINT)
    assert view.in_service
    assert view.variants == (VariantWeight("v3", 3, 0.0, 2), VariantWeight("v2", 2, 1.0, 1),
                             VariantWeight("v1", 1, 0.0, 1))


def test_total_weight_zero_is_refused(sagemaker, packages):
    endpoints = adapter(sagemaker)
    endpoints.deploy(ENDPOINT, lineup(3, 2, 1), packages)
    with pytest.raises(ValueError, match="total weight of 0"):
        endpoints.set_weights(ENDPOINT, {"v3": 0.0, "v2": 0.0, "v1": 0.0})
    with pytest.raises(ValueError, match="total weight of 0"):
        endpoints.set_weights(ENDPOINT, {"v3": 0.0})  # the others are at 0 already
    with pytest.raises(ValueError, match="no weights"):
        endpoints.set_weights(ENDPOINT, {})
    with pytest.raises(ValueError, match=">= 0"):
        endpoints.set_weights(ENDPOINT, {"v3": -1.0, "v2": 2.0})
    with pytest.raises(ValueError, match="no variant"):
        endpoints.set_weights(ENDPOINT, {"v9": 1.0})
    zero = [VariantWeight("v3", 3, 0.0), VariantWeight("v2", 2, 0.0)]
    with pytest.raises(ValueError, match="total weight of 0"):
        endpoints.deploy(ENDPOINT, zero, packages)
    assert [v.weight for v in endpoints.describe(ENDPOINT).variants] == [1.0, 0.0, 0.0]


def test_more_than_ten_variants_are_refused_before_any_call(stubbed_sagemaker):
    client, _ = stubbed_sagemaker  # no response stubbed: any call would fail the test
    variants = [VariantWeight(f"v{v}", v, 1.0 if v == 11 else 0.0) for v in range(11, 0, -1)]
    with pytest.raises(ValueError, match="at most 10"):
        adapter(client).deploy(ENDPOINT, variants, sources(*range(1, 12)))
    with pytest.raises(ValueError, match="named v2"):
        adapter(client).deploy(ENDPOINT, [VariantWeight("AllTraffic", 2, 1.0)], sources(2))
    with pytest.raises(ValueError, match="at least one instance"):
        adapter(client).deploy(ENDPOINT, [VariantWeight("v2", 2, 1.0, 0)], sources(2))
    with pytest.raises(ValueError, match="no model source"):
        adapter(client).deploy(ENDPOINT, [VariantWeight("v2", 2, 1.0)], sources(1))


def test_missing_endpoint(sagemaker):
    endpoints = adapter(sagemaker)
    assert endpoints.describe("nope") is None
    with pytest.raises(EndpointNotFoundError):
        endpoints.set_weights("nope", {"v1": 1.0})


def test_an_endpoint_the_kit_did_not_deploy_is_not_touched(sagemaker, packages):
    sagemaker.create_model(ModelName="manual", ExecutionRoleArn=ROLE_ARN,
                           Containers=[{"ModelPackageName": package_arn(1)}])
    sagemaker.create_endpoint_config(EndpointConfigName="manual", ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": "manual", "InitialInstanceCount": 1,
         "InstanceType": "ml.m5.large", "InitialVariantWeight": 1.0}])
    sagemaker.create_endpoint(EndpointName="manual", EndpointConfigName="manual")
    with pytest.raises(ValueError, match="not named after a model version"):
        adapter(sagemaker).describe("manual")


# -- UpdateEndpoint (moto for the rest, Stubber for UpdateEndpoint) -----------------------

def test_second_deploy_updates_the_endpoint_with_a_new_config(sagemaker, packages,
                                                              stubbed_sagemaker):
    stub_client, stubber = stubbed_sagemaker
    client = MotoExceptUpdateEndpoint(sagemaker, stub_client)
    endpoints = adapter(client)
    first = endpoints.deploy(ENDPOINT, lineup(3, 2, 1), packages)
    new_lineup = lineup(4, 3, 2)
    names = {v: model_name(packages[v]) for v in (4, 3, 2)}
    expected_config = endpoint_config_name(
        ENDPOINT, endpoints.endpoint_config_request(new_lineup, names))
    stubber.add_response("update_endpoint", {"EndpointArn": ENDPOINT_ARN}, {
        "EndpointName": ENDPOINT, "EndpointConfigName": expected_config,
        "RetainAllVariantProperties": False})

    second = endpoints.deploy(ENDPOINT, new_lineup, packages)
    assert second == expected_config != first
    config = sagemaker.describe_endpoint_config(EndpointConfigName=second)
    assert [(v["VariantName"], v["InitialVariantWeight"], v["InitialInstanceCount"])
            for v in config["ProductionVariants"]] == [("v4", 1.0, 2), ("v3", 0.0, 1),
                                                       ("v2", 0.0, 1)]
    assert sagemaker.describe_model(ModelName=names[4])["Containers"] == [
        {"ModelPackageName": package_arn(4), "Environment": SERVING_ENVIRONMENT}]


def test_guardrails_are_sent_only_when_variant_names_stay(sagemaker, packages,
                                                          stubbed_sagemaker):
    stub_client, stubber = stubbed_sagemaker
    guardrails = canary_deployment_config(canary_percent=10, wait_seconds=600,
                                          alarm_names=["fraud-scorer-prod-5xx"])
    endpoints = adapter(MotoExceptUpdateEndpoint(sagemaker, stub_client),
                        deployment_config=guardrails)
    endpoints.deploy(ENDPOINT, lineup(3, 2, 1), packages)
    stubber.add_response("update_endpoint", {"EndpointArn": ENDPOINT_ARN}, {
        "EndpointName": ENDPOINT, "EndpointConfigName": ANY,
        "RetainAllVariantProperties": False, "DeploymentConfig": guardrails})
    endpoints.deploy(ENDPOINT, lineup(3, 2, 1, champion_instances=3), packages)  # same names
    stubber.add_response("update_endpoint", {"EndpointArn": ENDPOINT_ARN}, {
        "EndpointName": ENDPOINT, "EndpointConfigName": ANY,
        "RetainAllVariantProperties": False})
    endpoints.deploy(ENDPOINT, lineup(4, 3, 2), packages)  # rotation: names change
    assert guardrails["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"] == {
        "Type": "CANARY", "WaitIntervalInSeconds": 600,
        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10}}
    assert guardrails["AutoRollbackConfiguration"] == {
        "Alarms": [{"AlarmName": "fraud-scorer-prod-5xx"}]}


# -- busy and throttled (Stubber only) -----------------------------------------------------

def test_an_updating_endpoint_is_busy_before_anything_is_created(stubbed_sagemaker):
    client, stubber = stubbed_sagemaker
    stubber.add_response("describe_endpoint", described(status="Updating"),
                         {"EndpointName": ENDPOINT})
    with pytest.raises(EndpointBusyError, match="Updating"):
        adapter(client).deploy(ENDPOINT, lineup(3, 2), sources(3, 2))


def test_update_refused_while_in_progress_is_busy(stubbed_sagemaker):
    client, stubber = stubbed_sagemaker
    stubber.add_response("describe_endpoint", described(), {"EndpointName": ENDPOINT})
    for version in (3, 2):
        stubber.add_response("create_model", {"ModelArn": f"arn:aws:sagemaker:{REGION}:"
                                                          f"{ACCOUNT}:model/m{version}"}, {
            "ModelName": model_name(sources(version)[version]), "ExecutionRoleArn": ROLE_ARN,
            "Containers": [{"ModelPackageName": package_arn(version),
                            "Environment": SERVING_ENVIRONMENT}]})
    stubber.add_response("create_endpoint_config", {"EndpointConfigArn": "arn:aws:sagemaker:"
                                                    f"{REGION}:{ACCOUNT}:endpoint-config/c"},
                         {"EndpointConfigName": ANY, "ProductionVariants": ANY,
                          "DataCaptureConfig": ANY})
    stubber.add_client_error("update_endpoint", "ValidationException", BUSY_MESSAGE, 400)
    with pytest.raises(EndpointBusyError, match="in-progress"):
        adapter(client).deploy(ENDPOINT, lineup(3, 2), sources(3, 2))


def test_weights_refused_while_in_progress_are_busy(stubbed_sagemaker, sleeps):
    client, stubber = stubbed_sagemaker
    stubber.add_response("describe_endpoint", described(), {"EndpointName": ENDPOINT})
    stubber.add_client_error("update_endpoint_weights_and_capacities", "ValidationException",
                             BUSY_MESSAGE, 400)
    with pytest.raises(EndpointBusyError):
        adapter(client, sleep=sleeps).set_weights(ENDPOINT, {"v2": 0.0, "v1": 1.0})
    assert sleeps == []  # busy is not retried inside the adapter: the controller decides
    stubber.add_response("describe_endpoint", described(status="Creating"),
                         {"EndpointName": ENDPOINT})
    with pytest.raises(EndpointBusyError, match="Creating"):
        adapter(client).set_weights(ENDPOINT, {"v2": 0.0, "v1": 1.0})


def test_throttling_is_retried_with_backoff_then_succeeds(stubbed_sagemaker, sleeps):
    client, stubber = stubbed_sagemaker
    stubber.add_client_error("describe_endpoint", "ThrottlingException", "Rate exceeded", 400)
    stubber.add_response("describe_endpoint", described(), {"EndpointName": ENDPOINT})
    for _ in range(2):
        stubber.add_client_error("update_endpoint_weights_and_capacities", "ThrottlingException",
                                 "Rate exceeded", 400)
    stubber.add_response("update_endpoint_weights_and_capacities", {"EndpointArn": ENDPOINT_ARN},
                         {"EndpointName": ENDPOINT, "DesiredWeightsAndCapacities": [
                             {"VariantName": "v2", "DesiredWeight": 0.0},
                             {"VariantName": "v1", "DesiredWeight": 1.0}]})
    adapter(client, sleep=sleeps, base_delay=0.5).set_weights(ENDPOINT, {"v2": 0.0, "v1": 1.0})
    assert len(sleeps) == 3
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[2] <= 1.0


def test_throttling_gives_up_after_bounded_attempts(stubbed_sagemaker, sleeps):
    client, stubber = stubbed_sagemaker
    for _ in range(3):
        stubber.add_client_error("describe_endpoint", "ThrottlingException", "Rate exceeded", 400)
    with pytest.raises(ClientError, match="Throttling"):
        adapter(client, sleep=sleeps, max_attempts=3).describe(ENDPOINT)
    assert len(sleeps) == 2


def test_settings_from_env():
    endpoints = SageMakerEndpoints.from_env({
        "SAGEMAKER_EXECUTION_ROLE_ARN": ROLE_ARN, "ENDPOINT_INSTANCE_TYPE": "ml.c5.xlarge",
        "DATA_CAPTURE_S3_URI": "s3://capture/x", "DATA_CAPTURE_SAMPLING_PERCENT": "10"})
    assert endpoints.instance_type == "ml.c5.xlarge"
    assert endpoints.data_capture.sampling_percentage == 10
    with pytest.raises(ValueError, match="SAGEMAKER_EXECUTION_ROLE_ARN"):
        SageMakerEndpoints.from_env({})
