"""PipelineStack: the SageMaker training pipeline and its staged code, what starts it (schedule,
new data) and, optionally, the SageMaker Studio entry point for scientists."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ..config import StageConfig
from ..constructs.pipeline_triggers import PipelineTriggers, pipeline_arn
from ..constructs.registry import ModelRegistry
from ..constructs.studio import ScientistRole, Studio
from ..constructs.tracking_server import tracking_server_name
from ..constructs.training_pipeline import TrainingPipeline
from .stateful import StatefulStack


class PipelineStack(Stack):
    def __init__(self, scope: Construct, id: str, *, cfg: StageConfig, stateful: StatefulStack,
                 definition_path: Path, assets_dir: Path, registry: ModelRegistry | None = None,
                 parameter_defaults: Mapping[str, Any] | None = None, **kwargs) -> None:
        """`registry`: the model's group (a fleet's, in the registry stack); default the
        stateful stack's. `parameter_defaults`: the model's own pipeline parameter defaults
        (`TrainingPipeline`)."""
        super().__init__(scope, id, **kwargs)
        store = stateful.store
        registry = registry or stateful.registry
        # The artifact bucket through the stateful stack's named exports (see ArtifactStore.export).
        artifacts = s3.Bucket.from_bucket_attributes(
            self, "ArtifactBucket", bucket_arn=store.artifacts_arn_ref,
            bucket_name=store.artifacts_name_ref,
            encryption_key=kms.Key.from_key_arn(self, "ArtifactKey", store.key.key_arn))
        self.training = TrainingPipeline(
            self, "TrainingPipeline", definition_path=definition_path, assets_dir=assets_dir,
            artifacts=artifacts, key_arn=stateful.store.key.key_arn,
            model_group=registry.model_group,
            model_packages_resources=registry.package_resources(),
            mlflow_tracking_uri=stateful.mlflow_tracking_uri,
            parameter_defaults=parameter_defaults)
        name = f"{registry.model_group}-training"
        self.triggers = PipelineTriggers(
            self, "Triggers", pipeline_name=name, bucket_name=store.artifacts_name_ref,
            schedule=cfg.training_schedule, new_data=cfg.new_data_trigger,
            new_data_key=cfg.new_data_key)
        for rule in self.triggers.rules.values():
            rule.node.add_dependency(self.training.pipeline)
        if cfg.new_data_trigger:
            CfnOutput(self, "NewDataKey", value=cfg.new_data_key,
                      description="writing this key in the artifact bucket starts a training run")
        self.scientist = self.studio = None
        if cfg.studio.enabled:
            self.scientist = ScientistRole(
                self, "Scientist", pipeline_arn=pipeline_arn(name),
                model_group_resources=registry.package_resources(),
                ledger_table_arn=stateful.tables.ledger.table_arn,
                artifacts_arn=store.artifacts_arn_ref, key_arn=store.key.key_arn,
                mlflow_tracking_server_name=cfg.studio.mlflow_tracking_server_name or (
                    tracking_server_name(cfg.model_group) if cfg.mlflow.tracking_server else None))
            self.studio = Studio(self, "Studio", cfg=cfg.studio, stage=cfg.stage,
                                 role=self.scientist.role, key_arn=store.key.key_arn)
            CfnOutput(self, "StudioUserProfile", value=cfg.studio.user_profile_name,
                      description="SageMaker Studio user profile of the scientist role")
            CfnOutput(self, "ScientistRoleArn", value=self.scientist.role.role_arn)
        CfnOutput(self, "PipelineName", value=self.training.pipeline.ref,
                  description="SageMaker pipeline (mlops pipeline run --backend aws)")
