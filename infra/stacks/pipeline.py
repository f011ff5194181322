"""PipelineStack: the SageMaker training pipeline and its staged code."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from ..constructs.training_pipeline import TrainingPipeline
from .stateful import StatefulStack


class PipelineStack(Stack):
    def __init__(self, scope: Construct, id: str, *, stateful: StatefulStack,
                 definition_path: Path, assets_dir: Path, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        self.training = TrainingPipeline(
            self, "TrainingPipeline", definition_path=definition_path, assets_dir=assets_dir,
            artifacts=stateful.store.artifacts, key_arn=stateful.store.key.key_arn,
            model_group=stateful.registry.model_group,
            model_packages_resources=stateful.registry.package_resources())
        CfnOutput(self, "PipelineName", value=self.training.pipeline.ref,
                  description="SageMaker pipeline (mlops pipeline run --backend aws)")
