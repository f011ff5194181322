"""Studio: an optional SageMaker Studio entry point for data scientists (stage block `studio`).

Either the kit creates an IAM-auth domain in the configured VPC/subnets (no lookups; app network
access VpcOnly unless configured otherwise) and a user profile, or, with `domainId`, it only adds
a user profile to that existing domain. Either way the profile's execution role is the
least-privilege `ScientistRole` below: the scientist runs and watches the kit's pipeline, reads
the registry and approves/rejects versions (approval triggers the deployment controller), reads
the ledger and the evaluation reports, and optionally reads the MLflow tracking server. Nothing
else: no endpoint, no other pipeline, no writes to the bucket.
"""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from ..config import StudioConfig

# What the scientist role may do, by statement (tests/infra pin these).
PIPELINE_ACTIONS = ("sagemaker:StartPipelineExecution", "sagemaker:DescribePipeline",
                    "sagemaker:DescribePipelineExecution",
                    "sagemaker:DescribePipelineDefinitionForExecution",
                    "sagemaker:ListPipelineExecutions", "sagemaker:ListPipelineExecutionSteps",
                    "sagemaker:ListPipelineParametersForExecution")
REGISTRY_READ_ACTIONS = ("sagemaker:DescribeModelPackageGroup", "sagemaker:DescribeModelPackage")
APPROVE_ACTIONS = ("sagemaker:UpdateModelPackage",)
LIST_ACTIONS = ("sagemaker:ListPipelines", "sagemaker:ListModelPackageGroups",
                "sagemaker:ListModelPackages")
"""List calls that support no resource scoping (the Studio UI's pipeline and registry lists)."""
LEDGER_ACTIONS = ("dynamodb:GetItem", "dynamodb:Query")
REPORT_ACTIONS = ("s3:GetObject",)
EVALUATION_KEYS = "pipeline-runs/*/EvaluateModel/*"
"""Where the pipeline's EvaluateModel step writes evaluation.json (pipelines/definition.json)."""
MLFLOW_ACTIONS = ("sagemaker-mlflow:AccessUI", "sagemaker-mlflow:SearchExperiments",
                  "sagemaker-mlflow:GetExperiment", "sagemaker-mlflow:GetExperimentByName",
                  "sagemaker-mlflow:SearchRuns", "sagemaker-mlflow:GetRun",
                  "sagemaker-mlflow:GetMetricHistory", "sagemaker-mlflow:ListArtifacts",
                  "sagemaker-mlflow:SearchRegisteredModels",
                  "sagemaker-mlflow:GetRegisteredModel", "sagemaker-mlflow:SearchModelVersions",
                  "sagemaker-mlflow:GetModelVersion")
MLFLOW_SERVER_ACTIONS = ("sagemaker:DescribeMlflowTrackingServer",
                         "sagemaker:CreatePresignedMlflowTrackingServerUrl")


def _arn(resource: str) -> str:
    return f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}:{resource}"


class ScientistRole(Construct):
    def __init__(self, scope: Construct, id: str, *, pipeline_arn: str,
                 model_group_resources: list[str], ledger_table_arn: str, artifacts_arn: str,
                 key_arn: str, mlflow_tracking_server_name: str | None) -> None:
        super().__init__(scope, id)
        self.role = iam.Role(self, "Role",
                             assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                             description="mlops-kit scientist (SageMaker Studio user profile)")
        group_arn, packages_arn = model_group_resources
        self.statements = [
            iam.PolicyStatement(sid="PipelineExecutions", actions=list(PIPELINE_ACTIONS),
                                resources=[pipeline_arn, f"{pipeline_arn}/execution/*"]),
            iam.PolicyStatement(sid="ReadRegistry", actions=list(REGISTRY_READ_ACTIONS),
                                resources=[group_arn, packages_arn]),
            iam.PolicyStatement(sid="ApproveOrReject", actions=list(APPROVE_ACTIONS),
                                resources=[packages_arn]),
            iam.PolicyStatement(sid="List", actions=list(LIST_ACTIONS), resources=["*"]),
            iam.PolicyStatement(sid="ReadLedger", actions=list(LEDGER_ACTIONS),
                                resources=[ledger_table_arn]),
            iam.PolicyStatement(sid="ReadEvaluationReports", actions=list(REPORT_ACTIONS),
                                resources=[f"{artifacts_arn}/{EVALUATION_KEYS}"]),
            iam.PolicyStatement(sid="Decrypt", actions=["kms:Decrypt"],  # reports, ledger
                                resources=[key_arn]),
        ]
        if mlflow_tracking_server_name:
            server = _arn(f"mlflow-tracking-server/{mlflow_tracking_server_name}")
            self.statements += [
                iam.PolicyStatement(sid="MlflowRead", actions=list(MLFLOW_ACTIONS),
                                    resources=[server]),
                iam.PolicyStatement(sid="MlflowServer", actions=list(MLFLOW_SERVER_ACTIONS),
                                    resources=[server]),
            ]
        for statement in self.statements:
            self.role.add_to_policy(statement)


class Studio(Construct):
    def __init__(self, scope: Construct, id: str, *, cfg: StudioConfig, stage: str,
                 role: iam.IRole, key_arn: str) -> None:
        super().__init__(scope, id)
        self.domain = None
        if cfg.domain_id is not None:
            domain_id = cfg.domain_id
        else:
            self.domain = sagemaker.CfnDomain(
                self, "Domain", auth_mode="IAM", domain_name=f"mlops-kit-{stage}",
                vpc_id=cfg.vpc_id, subnet_ids=list(cfg.subnet_ids),
                app_network_access_type=cfg.network_access, kms_key_id=key_arn,
                default_user_settings=sagemaker.CfnDomain.UserSettingsProperty(
                    execution_role=role.role_arn,
                    security_groups=list(cfg.security_group_ids) or None))
            domain_id = self.domain.attr_domain_id
        self.user_profile = sagemaker.CfnUserProfile(
            self, "UserProfile", domain_id=domain_id, user_profile_name=cfg.user_profile_name,
            user_settings=sagemaker.CfnUserProfile.UserSettingsProperty(
                execution_role=role.role_arn,
                security_groups=list(cfg.security_group_ids) or None))
        self.user_profile.node.add_dependency(role)
