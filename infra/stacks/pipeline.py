"""PipelineStack: the SageMaker training pipeline and its staged code."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ..constructs.training_pipeline import TrainingPipeline
from .stateful import StatefulStack


class PipelineStack(Stack):
    def __init__(self, scope: Construct, id: str, *, stateful: StatefulStack,
                 definition_path: Path, assets_dir: Path, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        store = stateful.store
        # The artifact bucket through the stateful stack's named exports (see ArtifactStore.export).
        artifacts = s3.Bucket.from_bucket_attributes(
            self, "ArtifactBucket", bucket_arn=store.artifacts_arn_ref,
            bucket_name=store.artifacts_name_ref,
            encryption_key=kms.Key.from_key_arn(self, "ArtifactKey", store.key.key_arn))
        self.training = TrainingPipeline(
            self, "TrainingPipeline", definition_path=definition_path, assets_dir=assets_dir,
            artifacts=artifacts, key_arn=stateful.store.key.key_arn,
            model_group=stateful.registry.model_group,
            model_packages_resources=stateful.registry.package_resources())
        CfnOutput(self, "PipelineName", value=self.training.pipeline.ref,
                  description="SageMaker pipeline (mlops pipeline run --backend aws)")
