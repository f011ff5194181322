"""Batch transform launcher against moto (it stores CreateTransformJob requests)."""

from __future__ import annotations

from mlops_kit.aws.models import SERVING_ENVIRONMENT

import pytest
from botocore.exceptions import ClientError

from mlops_kit.aws.batch_transform import BatchTransformLauncher, NoChampionError
from mlops_kit.aws.models import model_name
from mlops_kit.core.rotation import VariantWeight
from mlops_kit.endpoints import ModelSource
from mlops_kit.registry.base import DeploymentRecord
from mlops_kit.registry.sagemaker import SageMakerRegistry

from builders import registration

from .conftest import IMAGE_URI, LEDGER, ROLE_ARN

INPUT = "s3://scoring/input/2026-11-19/"
OUTPUT = "s3://scoring/output/2026-11-19/"


@pytest.fixture()
def registry(sagemaker, dynamodb):
    registry = SageMakerRegistry("fraud-detector", ledger_table=LEDGER, image_uri=IMAGE_URI,
                                 sagemaker_client=sagemaker, dynamodb_client=dynamodb)
    lineage = {"data": {"uri": "s3://d/x.parquet"}, "code": {"version": "git:x"},
               "parameters": {}, "libraries": {}}
    for run in ("run-1", "run-2"):
        registry.register(registration(run, group="fraud-detector", lineage=lineage))
    return registry


def launcher(client, **kwargs):
    return BatchTransformLauncher(client, execution_role_arn=ROLE_ARN,
                                  instance_type="ml.m5.xlarge", instance_count=2, **kwargs)


def test_a_job_is_started_from_the_model_package(sagemaker, registry):
    source = registry.model_source(2)
    job = launcher(sagemaker, data_processing={"InputFilter": "$[1:]", "JoinSource": "Input"}
                   ).start(source, input_s3_uri=INPUT, output_s3_uri=OUTPUT)
    assert len(job) <= 63
    described = sagemaker.describe_transform_job(TransformJobName=job)
    assert described["ModelName"] == model_name(source)
    assert described["TransformInput"] == {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": INPUT}},
        "ContentType": "text/csv", "SplitType": "Line", "CompressionType": "None"}
    assert described["TransformOutput"] == {"S3OutputPath": OUTPUT, "Accept": "text/csv",
                                            "AssembleWith": "Line"}
    assert described["TransformResources"] == {"InstanceType": "ml.m5.xlarge",
                                               "InstanceCount": 2}
    assert described["DataProcessing"] == {"InputFilter": "$[1:]", "JoinSource": "Input"}
    model = sagemaker.describe_model(ModelName=model_name(source))
    assert model["Containers"] == [{"ModelPackageName": source.model_package_arn, "Environment": SERVING_ENVIRONMENT}]
    # The same scoring again is the same job; another output is another job.
    assert launcher(sagemaker).start(source, input_s3_uri=INPUT, output_s3_uri=OUTPUT) == job
    other = launcher(sagemaker).start(source, input_s3_uri=INPUT, output_s3_uri=OUTPUT + "b/")
    assert other != job


def test_the_champion_of_an_endpoint_is_scored(sagemaker, registry):
    with pytest.raises(NoChampionError):
        launcher(sagemaker).start_for_champion(registry, "fraud-scorer-prod",
                                               input_s3_uri=INPUT, output_s3_uri=OUTPUT)
    registry.record_deployment(DeploymentRecord(
        deployment_id="d-1", endpoint_name="fraud-scorer-prod", kind="promote", version=1,
        variants=(VariantWeight("v1", 1, 1.0), VariantWeight("v2", 2, 0.0)), actor="deployer",
        reason="approved", at="2026-11-19T15:03:58.000Z"))
    job = launcher(sagemaker).start_for_champion(registry, "fraud-scorer-prod",
                                                 input_s3_uri=INPUT, output_s3_uri=OUTPUT)
    assert sagemaker.describe_transform_job(TransformJobName=job)["ModelName"] == \
        model_name(registry.model_source(1))


def test_bad_requests_are_refused(stubbed_sagemaker):
    client, stubber = stubbed_sagemaker
    source = ModelSource(1, "/tmp/model")
    with pytest.raises(ValueError, match="s3://"):
        launcher(client).start(source, input_s3_uri="/tmp/in", output_s3_uri=OUTPUT)
    with pytest.raises(ValueError, match="cannot be served"):
        launcher(client).start(source, input_s3_uri=INPUT, output_s3_uri=OUTPUT)
    with pytest.raises(ValueError, match="role"):
        BatchTransformLauncher(client, execution_role_arn="")


def test_a_bare_s3_model_needs_the_image_and_a_named_job_is_not_reused(stubbed_sagemaker):
    client, stubber = stubbed_sagemaker
    source = ModelSource(3, "s3://a/v3/model.tar.gz")
    stubber.add_response("create_model", {"ModelArn": "arn:aws:sagemaker:us-east-1:"
                                                      "123456789012:model/m"}, {
        "ModelName": model_name(source), "ExecutionRoleArn": ROLE_ARN,
        "Containers": [{"Image": IMAGE_URI, "ModelDataUrl": source.model_uri,
             "Environment": SERVING_ENVIRONMENT}]})
    stubber.add_client_error("create_transform_job", "ValidationException",
                             "Job name must be unique within an AWS account and region, and a "
                             "job with this name already exists", 400)
    with pytest.raises(ClientError, match="unique"):
        launcher(client, image_uri=IMAGE_URI).start(source, input_s3_uri=INPUT,
                                                    output_s3_uri=OUTPUT, job_name="nightly")
