"""TrackingServer: a SageMaker managed MLflow tracking server (`AWS::SageMaker::MlflowTrackingServer`)
whose artifact store is the `mlflow/` prefix of the kit's artifact bucket, and the role it runs as
(that prefix, the bucket's key, nothing else).

The training step logs to it with the server's ARN (`arn`) as its tracking URI (the
sagemaker-mlflow plugin in the training bundle resolves an ARN); TrainingPipeline grants its role
`sagemaker-mlflow:*` on that ARN only. Automatic model registration is off: the kit's registry (Model
Registry + ledger) is the record, and MLflow shows the runs.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

ARTIFACT_PREFIX = "mlflow"
SIZES = ("Small", "Medium", "Large")


def tracking_server_name(model_group: str) -> str:
    """The kit's tracking server of a stage: the stateful stack creates it under this name, the
    scientist role is granted it by this name."""
    return f"{model_group}-mlflow"


class TrackingServer(Construct):
    def __init__(self, scope: Construct, id: str, *, artifacts: s3.IBucket, key_arn: str,
                 name: str, size: str = "Small") -> None:
        """`name`: the tracking server's name (1-63 letters, digits, hyphens; unique in the
        account and region). `size`: Small (default), Medium or Large."""
        super().__init__(scope, id)
        if size not in SIZES:
            raise ValueError(f"tracking server size must be one of {SIZES}, not {size!r}")
        self.role = iam.Role(
            self, "Role", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="SageMaker managed MLflow tracking server: its artifact store only")
        objects = artifacts.arn_for_objects(f"{ARTIFACT_PREFIX}/*")
        self.role.add_to_policy(iam.PolicyStatement(
            sid="ArtifactObjects", actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            resources=[objects]))
        self.role.add_to_policy(iam.PolicyStatement(
            sid="ArtifactBucket", actions=["s3:ListBucket", "s3:GetBucketLocation"],
            resources=[artifacts.bucket_arn]))
        self.role.add_to_policy(iam.PolicyStatement(
            sid="Key", actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[key_arn]))
        self.server = sagemaker.CfnMlflowTrackingServer(
            self, "Server", tracking_server_name=name,
            artifact_store_uri=f"s3://{artifacts.bucket_name}/{ARTIFACT_PREFIX}",
            role_arn=self.role.role_arn, tracking_server_size=size,
            automatic_model_registration=False)
        self.server.node.add_dependency(self.role)
        self.arn: str = self.server.attr_tracking_server_arn
        # cdk-nag IAM5: the one wildcard is the server's own artifact prefix.
        logical = Stack.of(self).resolve(artifacts.bucket_arn)
        bucket = logical["Fn::GetAtt"][0] if isinstance(logical, dict) and "Fn::GetAtt" in logical \
            else None
        if bucket:
            Validations.of(self.role).acknowledge(Acknowledgment(
                id=f"AwsSolutions::AwsSolutions-IAM5[Resource::<{bucket}.Arn>/{ARTIFACT_PREFIX}/*]",
                reason="MLflow tracking server role: MLflow names run artifacts by experiment and "
                       "run id under the server's own mlflow/ prefix of the artifact bucket"))

