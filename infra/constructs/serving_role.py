"""ServingRole: the execution role of the SageMaker models the deployment controller creates;
RegistryArtifacts: a fleet's registry bucket in another account, as this one reads it."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from constructs import Construct

from .artifact_store import ArtifactStore


@dataclass(frozen=True)
class RegistryArtifacts:
    """What an environment beside the registry's (another account, or another environment of
    the same one) reads there: the artifact bucket (model files, baselines) and, in the same
    account, the ledger of versions and promotions. The registry's key is made at deploy time,
    so a policy here names the registry account's keys, used only through S3 or DynamoDB in
    the registry's region."""
    bucket_arn: str
    account: str
    region: str

    def _key(self, service: str) -> iam.PolicyStatement:
        return iam.PolicyStatement(
            sid=f"Registry{service.title()}Key", actions=["kms:Decrypt"],
            resources=[f"arn:{Aws.PARTITION}:kms:{self.region}:{self.account}:key/*"],
            conditions={"StringEquals": {"kms:ViaService":
                                         f"{service}.{self.region}.amazonaws.com"}})

    def grant_read(self, role: iam.IRole) -> None:
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="ReadRegistryArtifacts", actions=["s3:GetObject"],
            resources=[f"{self.bucket_arn}/*"]))
        role.add_to_principal_policy(self._key("s3"))

    def grant_ledger_key(self, role: iam.IRole) -> None:
        """Decrypt the registry ledger's items (the table itself: the contract's
        `REGISTRY_LEDGER_TABLE` grant)."""
        role.add_to_principal_policy(self._key("dynamodb"))


class ServingRole(Construct):
    """Execution role of the SageMaker models the deployment controller creates: reads model
    artifacts and code from the artifact bucket, pulls the XGBoost image, writes data capture."""

    def __init__(self, scope: Construct, id: str, *, store: ArtifactStore,
                 registry_artifacts: RegistryArtifacts | None = None) -> None:
        """`registry_artifacts`: a fleet's registry bucket in another account, where the model
        files are (its bucket and key policies let this account read)."""
        super().__init__(scope, id)
        self.role = iam.Role(self, "Role",
                             assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                             description="SageMaker models and endpoints of the kit")
        add = self.role.add_to_policy
        add(iam.PolicyStatement(sid="ReadArtifacts", actions=["s3:GetObject"],
                                resources=[f"{store.artifacts_arn_ref}/*"]))
        if registry_artifacts is not None:
            registry_artifacts.grant_read(self.role)
        add(iam.PolicyStatement(sid="WriteCapture", actions=["s3:PutObject"],
                                resources=[f"{store.capture_arn_ref}/*"]))
        add(iam.PolicyStatement(sid="Key", actions=["kms:Decrypt", "kms:GenerateDataKey"],
                                resources=[store.key.key_arn]))
        add(iam.PolicyStatement(sid="EcrToken", actions=["ecr:GetAuthorizationToken"],
                                resources=["*"]))
        add(iam.PolicyStatement(
            sid="XGBoostImage", actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                                         "ecr:BatchCheckLayerAvailability"],
            resources=[f"arn:{Aws.PARTITION}:ecr:{Aws.REGION}:*:repository/sagemaker-xgboost"]))
        add(iam.PolicyStatement(
            sid="Logs", actions=["logs:CreateLogGroup", "logs:CreateLogStream",
                                 "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:/aws/sagemaker/Endpoints/*"]))
        add(iam.PolicyStatement(sid="Metrics", actions=["cloudwatch:PutMetricData"],
                                resources=["*"],
                                conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}}))
