"""ArtifactStore: the kit's KMS key and its S3 buckets (artifacts, data capture, access logs)."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct


class ArtifactStore(Construct):
    """KMS key (rotation on) and three buckets: `artifacts` (pipeline code, data, model
    artifacts; versioned), `capture` (endpoint data capture; expires after
    `data_retention_days`) and `access_logs` (server access logs of the other two; SSE-S3,
    since S3 log delivery cannot write with a customer key). All SSL-only, public access
    blocked, versioned."""

    def __init__(self, scope: Construct, id: str, *, removal_policy: RemovalPolicy,
                 data_retention_days: int = 30, artifacts_bucket_name: str | None = None
                 ) -> None:
        """`artifacts_bucket_name`: a fixed name (a fleet's registry account, whose bucket
        other accounts' policies name); None: CloudFormation names it."""
        super().__init__(scope, id)
        self.key = kms.Key(self, "Key", enable_key_rotation=True,
                           description="mlops-kit: buckets, tables, topic, queues, streams",
                           removal_policy=removal_policy)
        common = dict(block_public_access=s3.BlockPublicAccess.BLOCK_ALL, enforce_ssl=True,
                      versioned=True, removal_policy=removal_policy,
                      object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED)
        self.access_logs = s3.Bucket(
            self, "AccessLogs", encryption=s3.BucketEncryption.S3_MANAGED,
            lifecycle_rules=[s3.LifecycleRule(
                id="expire-logs", expiration=Duration.days(max(data_retention_days, 90)),
                noncurrent_version_expiration=Duration.days(7),
                abort_incomplete_multipart_upload_after=Duration.days(1))],
            **common)
        kms_common = dict(encryption=s3.BucketEncryption.KMS, encryption_key=self.key,
                          bucket_key_enabled=True, server_access_logs_bucket=self.access_logs)
        self.artifacts = s3.Bucket(
            self, "Artifacts", bucket_name=artifacts_bucket_name,
            server_access_logs_prefix="artifacts/",
            lifecycle_rules=[s3.LifecycleRule(
                id="old-versions", noncurrent_version_expiration=Duration.days(data_retention_days),
                abort_incomplete_multipart_upload_after=Duration.days(7))],
            **kms_common, **common)
        self.capture = s3.Bucket(
            self, "DataCapture", server_access_logs_prefix="capture/",
            lifecycle_rules=[s3.LifecycleRule(
                id="expire-capture", expiration=Duration.days(data_retention_days),
                noncurrent_version_expiration=Duration.days(1),
                abort_incomplete_multipart_upload_after=Duration.days(1))],
            **kms_common, **common)

        # What other stacks reference: the local values until export() names them.
        self.artifacts_arn_ref: str = self.artifacts.bucket_arn
        self.artifacts_name_ref: str = self.artifacts.bucket_name
        self.capture_arn_ref: str = self.capture.bucket_arn

    def export(self, stack: Stack, prefix: str) -> None:
        """Explicitly named exports (`<prefix>-ArtifactBucketArn`, ...) for the values the
        pipeline and control stacks reference. CDK's automatic exports embed a hash of the
        construct path, which leaked into the cdk-nag finding ids (IAM5 `<bucket>/*`); named
        exports keep those ids, and infra/nag.py's acknowledgements, stable."""
        self.artifacts_arn_ref = stack.export_value(self.artifacts.bucket_arn,
                                                    name=f"{prefix}-ArtifactBucketArn")
        self.artifacts_name_ref = stack.export_value(self.artifacts.bucket_name,
                                                     name=f"{prefix}-ArtifactBucketName")
        self.capture_arn_ref = stack.export_value(self.capture.bucket_arn,
                                                  name=f"{prefix}-CaptureBucketArn")

    def enable_event_bridge(self) -> None:
        """Send the artifact bucket's object events to EventBridge (the pipeline's new-data
        trigger). Set on the CloudFormation bucket itself: the L2 `event_bridge_enabled` adds a
        notifications custom resource (a Lambda) for what is a plain bucket property."""
        cfn = self.artifacts.node.default_child
        cfn.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            event_bridge_configuration=s3.CfnBucket.EventBridgeConfigurationProperty(
                event_bridge_enabled=True))

    def share_read(self, accounts: tuple[str, ...]) -> None:
        """Let `accounts` read the artifacts (an environment's endpoints load model files, its
        monitors read baselines): the bucket policy, and the key for S3's decryption only."""
        if not accounts:
            return
        principals = [iam.AccountPrincipal(a) for a in accounts]
        self.artifacts.add_to_resource_policy(iam.PolicyStatement(
            sid="EnvironmentsRead", actions=["s3:GetObject"], principals=principals,
            resources=[self.artifacts.arn_for_objects("*")]))
        self.key.add_to_resource_policy(iam.PolicyStatement(
            sid="EnvironmentsDecryptArtifacts", actions=["kms:Decrypt"], principals=principals,
            resources=["*"],  # in a key policy, "*" is this key
            conditions={"StringEquals": {
                "kms:ViaService": f"s3.{Stack.of(self).region}.amazonaws.com"}}))

    @property
    def capture_s3_uri(self) -> str:
        return f"s3://{self.capture.bucket_name}/capture"

    def grant_key_use(self, grantee: iam.IGrantable) -> None:
        """Decrypt and generate data keys (SSE-KMS objects, encrypted tables/queues/topics)."""
        iam.Grant.add_to_principal(grantee=grantee, actions=["kms:Decrypt", "kms:GenerateDataKey"],
                                   resource_arns=[self.key.key_arn])
