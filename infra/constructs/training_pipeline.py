"""TrainingPipeline: the SageMaker pipeline from pipelines/definition.json, its execution role
and the staged code (pipelines/build/artifact-bucket) uploaded to the artifact bucket.

The definition is generated offline by `mlops pipeline definition --assets ...` (`make
definition`); infra reads it as text and substitutes its three placeholders with Fn::Sub. The
staged tree must exist and hold every `pipeline-code/` object the definition references: synth
fails with the command to run otherwise (a pipeline pointing at code that is not in the bucket
fails only at its first execution, hours later).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

from aws_cdk import Aws, Fn
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

PLACEHOLDERS = ("ArtifactBucket", "PipelineRoleArn", "ModelPackageGroupName")
TRACKING_URI_PARAMETER = "MlflowTrackingUri"
"""The pipeline parameter the training step passes to train.py as its MLflow tracking URI."""
_STAGED_REF = re.compile(r"s3://\$\{ArtifactBucket\}/(pipeline-code/[^\"]*)")
_XGBOOST_REPOSITORY = "sagemaker-xgboost"


MLFLOW_ACTIONS = ("CreateExperiment", "GetExperiment", "GetExperimentByName", "SearchExperiments",
                  "CreateRun", "UpdateRun", "GetRun", "SearchRuns", "LogBatch", "LogMetric",
                  "LogParam", "LogInputs", "LogOutputs", "LogModel", "SetTag", "ListArtifacts")
"""What the training step's MLflow client calls on the tracking server (experiment, run, params,
metrics, tags, the model): no registry or delete action, no UI."""

class PipelineAssetsMissing(RuntimeError):
    pass


def check_staged(definition_text: str, assets_dir: Path) -> list[str]:
    """The staged keys the definition references that are missing under `assets_dir`."""
    missing = []
    for key in sorted(set(_STAGED_REF.findall(definition_text))):
        if not (assets_dir / key).exists():
            missing.append(key)
    return missing


_PARAMETER_TYPES = {"Float": float, "Integer": int, "String": str, "Boolean": bool}


def with_parameter_defaults(definition_text: str, defaults: Mapping[str, Any]) -> str:
    """The definition with these parameters' defaults, each as its declared type (a run may
    still override any of them). A name the definition lacks is an error naming it."""
    definition = json.loads(definition_text)
    parameters = {p["Name"]: p for p in definition["Parameters"]}
    unknown = sorted(set(defaults) - set(parameters))
    if unknown:
        raise ValueError(f"the pipeline definition has no parameter {', '.join(unknown)} "
                         f"(it has: {', '.join(sorted(parameters))})")
    for name, value in defaults.items():
        parameters[name]["DefaultValue"] = _PARAMETER_TYPES[parameters[name]["Type"]](value)
    return json.dumps(definition, indent=2)


def _checked_definition(definition_path: Path, assets_dir: Path) -> str:
    """The definition's text, once its placeholders are known and its staged code is there."""
    text = definition_path.read_text()
    unknown = set(re.findall(r"\$\{([^}]+)\}", text)) - set(PLACEHOLDERS)
    if unknown:
        raise ValueError(f"{definition_path}: unknown placeholder(s) {sorted(unknown)}")
    if not assets_dir.is_dir():
        raise PipelineAssetsMissing(
            f"{assets_dir} does not exist: run `make definition` (mlops pipeline definition "
            f"--out pipelines/definition.json --assets pipelines/build/artifact-bucket) "
            f"before synth")
    missing = check_staged(text, assets_dir)
    if missing:
        raise PipelineAssetsMissing(
            f"{assets_dir} lacks {len(missing)} object(s) the definition references "
            f"(first: {missing[0]}); definition and staged code are out of step: run "
            f"`make definition`")
    return text


def _execution_role(scope: Construct, artifacts: s3.IBucket, key_arn: str,
                    model_packages_resources: list[str]) -> iam.Role:
    """The pipeline's and its jobs' role: the artifact bucket, the key, its own jobs, one
    model package group, the XGBoost image and the jobs' logs and metrics."""
    role = iam.Role(
        scope, "ExecutionRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
        description="SageMaker pipeline and its processing/training jobs")
    role.add_to_policy(iam.PolicyStatement(
        sid="ArtifactObjects", actions=["s3:GetObject", "s3:PutObject"],
        resources=[artifacts.arn_for_objects("*")]))
    role.add_to_policy(iam.PolicyStatement(
        sid="ArtifactBucket", actions=["s3:ListBucket", "s3:GetBucketLocation"],
        resources=[artifacts.bucket_arn]))
    role.add_to_policy(iam.PolicyStatement(
        sid="Key", actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[key_arn]))
    role.add_to_policy(iam.PolicyStatement(
        sid="Jobs", actions=["sagemaker:CreateProcessingJob", "sagemaker:CreateTrainingJob",
                             "sagemaker:DescribeProcessingJob",
                             "sagemaker:DescribeTrainingJob", "sagemaker:StopProcessingJob",
                             "sagemaker:StopTrainingJob", "sagemaker:AddTags"],
        resources=[f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}:processing-job/*",
                   f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}:training-job/*"]))
    role.add_to_policy(iam.PolicyStatement(
        sid="Register", actions=["sagemaker:CreateModelPackage",
                                 "sagemaker:DescribeModelPackageGroup", "sagemaker:AddTags"],
        resources=model_packages_resources))
    role.add_to_policy(iam.PolicyStatement(
        sid="PassSelf", actions=["iam:PassRole"], resources=[role.role_arn],
        conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}))
    role.add_to_policy(iam.PolicyStatement(
        sid="EcrToken", actions=["ecr:GetAuthorizationToken"], resources=["*"]))
    role.add_to_policy(iam.PolicyStatement(
        sid="XGBoostImage",
        actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                 "ecr:BatchCheckLayerAvailability"],
        resources=[f"arn:{Aws.PARTITION}:ecr:{Aws.REGION}:*:repository/{_XGBOOST_REPOSITORY}"]))
    role.add_to_policy(iam.PolicyStatement(
        sid="JobLogs", actions=["logs:CreateLogGroup", "logs:CreateLogStream",
                                "logs:PutLogEvents", "logs:DescribeLogStreams"],
        resources=[f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:/aws/sagemaker/*"]))
    role.add_to_policy(iam.PolicyStatement(
        sid="JobMetrics", actions=["cloudwatch:PutMetricData"], resources=["*"],
        conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}}))
    return role


class TrainingPipeline(Construct):
    def __init__(self, scope: Construct, id: str, *, definition_path: Path, assets_dir: Path,
                 artifacts: s3.IBucket, key_arn: str, model_group: str,
                 model_packages_resources: list[str],
                 mlflow_tracking_uri: str | None = None,
                 parameter_defaults: Mapping[str, Any] | None = None) -> None:
        """`mlflow_tracking_uri`: a SageMaker MLflow tracking server's ARN, made the default of
        the `MlflowTrackingUri` parameter (a run may still override it) and granted to the
        role; None (default): the training step tracks nothing remotely.
        `parameter_defaults`: the model's own defaults of the pipeline's parameters (a fleet
        model's label column, gate thresholds and training parameters, from its declaration)."""
        super().__init__(scope, id)
        text = _checked_definition(definition_path, assets_dir)
        if parameter_defaults:
            text = with_parameter_defaults(text, parameter_defaults)
        self.role = role = _execution_role(self, artifacts, key_arn, model_packages_resources)

        self.deployment = s3deploy.BucketDeployment(
            self, "StagedCode", sources=[s3deploy.Source.asset(str(assets_dir))],
            destination_bucket=artifacts, prune=False, retain_on_delete=True,
            memory_limit=512, extract=True)

        values = {"ArtifactBucket": artifacts.bucket_name, "PipelineRoleArn": role.role_arn,
                  "ModelPackageGroupName": model_group}
        if mlflow_tracking_uri:
            text = with_parameter_defaults(text, {
                TRACKING_URI_PARAMETER: "${%s}" % TRACKING_URI_PARAMETER})
            values[TRACKING_URI_PARAMETER] = mlflow_tracking_uri
            role.add_to_policy(iam.PolicyStatement(
                sid="MlflowTracking", actions=[f"sagemaker-mlflow:{a}" for a in MLFLOW_ACTIONS],
                resources=[mlflow_tracking_uri]))
        body = Fn.sub(text, values)
        self.pipeline = sagemaker.CfnPipeline(
            self, "Pipeline", pipeline_name=f"{model_group}-training",
            pipeline_display_name=f"{model_group}-training",
            pipeline_description="mlops-kit training: preprocess, train, evaluate, gates, register",
            role_arn=role.role_arn,
            pipeline_definition={"PipelineDefinitionBody": body})
        # The code must be in the bucket before the pipeline can point at it.
        self.pipeline.node.add_dependency(self.deployment)
        self.pipeline.node.add_dependency(role)
