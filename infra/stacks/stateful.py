"""StatefulStack: what must outlive a redeploy (key, buckets, tables, model group, topic).
Logical ids are pinned by tests/infra/test_stateful_stack.py: renaming a construct here would
replace a bucket or table."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from constructs import Construct

from ..config import StageConfig
from ..constructs.artifact_store import ArtifactStore
from ..constructs.notifications import Notifications
from ..constructs.registry import ModelRegistry, Tables
from ..constructs.tracking_server import TrackingServer, tracking_server_name


@dataclass(frozen=True)
class FleetNames:
    artifacts_bucket: str | None = None
    ledger_table: str | None = None
    new_data_trigger: bool = False
    """A model of the fleet trains on new data written here."""


class StatefulStack(Stack):
    def __init__(self, scope: Construct, id: str, *, cfg: StageConfig,
                 fleet_names: FleetNames | None = None, **kwargs) -> None:
        """`fleet_names`: a fleet environment's stateful stack (no model group: the registry
        stack holds the fleet's; the registry account's bucket and ledger named)."""
        super().__init__(scope, id, termination_protection=cfg.retain, **kwargs)
        removal = RemovalPolicy.RETAIN if cfg.retain else RemovalPolicy.DESTROY
        names = fleet_names or FleetNames()
        self.store = ArtifactStore(self, "ArtifactStore", removal_policy=removal,
                                   data_retention_days=cfg.data_retention_days,
                                   artifacts_bucket_name=names.artifacts_bucket)
        if cfg.new_data_trigger or names.new_data_trigger:
            self.store.enable_event_bridge()
        self.tables = Tables(self, "Tables", key=self.store.key, removal_policy=removal,
                             ledger_table_name=names.ledger_table)
        self.registry = None if fleet_names else ModelRegistry(
            self, "ModelRegistry", model_group=cfg.model_group,
            reader_accounts=cfg.registry_reader_accounts)
        self.notifications = Notifications(self, "Notifications", key=self.store.key,
                                           email=cfg.alarm_email, removal_policy=removal)
        # Named after the model group: one tracking server per stage (names are per account
        # and region, and the model group is already unique per stage).
        self.tracking_server = (TrackingServer(
            self, "TrackingServer", artifacts=self.store.artifacts, key_arn=self.store.key.key_arn,
            name=tracking_server_name(cfg.model_group), size=cfg.mlflow.size)
            if cfg.mlflow.tracking_server else None)
        self.mlflow_tracking_uri: str | None = (
            self.tracking_server.arn if self.tracking_server else cfg.mlflow.tracking_server_arn)
        """The training step's MLflow tracking URI (a tracking server ARN), None: no remote
        tracking."""
        self.store.export(self, id)
        outputs = {
            **({"MlopsModelGroup": (cfg.model_group, "MLOPS_MODEL_GROUP")}
               if self.registry else {}),
            "LedgerTableName": (self.tables.ledger.table_name, "LEDGER_TABLE_NAME"),
            "IdempotencyTableName": (self.tables.idempotency.table_name,
                                     "IDEMPOTENCY_TABLE_NAME"),
            "NotificationTopicArn": (self.notifications.topic.topic_arn,
                                     "NOTIFICATION_TOPIC_ARN"),
            "ArtifactBucketName": (self.store.artifacts.bucket_name, "artifact bucket"),
            "CaptureS3Uri": (self.store.capture_s3_uri, "CAPTURE_S3_URI"),
        }
        if self.tracking_server:
            outputs["MlflowTrackingServerArn"] = (self.tracking_server.arn,
                                                  "MLFLOW_TRACKING_URI (sagemaker-mlflow plugin)")
        for name, (value, meaning) in outputs.items():
            CfnOutput(self, name, value=value, description=meaning)
