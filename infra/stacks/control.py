"""ControlStack: the control Lambdas, their rules and schedules, the serving role, and the
monitoring (alarms + dashboard). The SageMaker endpoint itself is NOT here: the deployment
controller owns it (docs/deploy.md explains why)."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from ..config import StageConfig
from mlops_kit import contract

from ..constructs.control_functions import ControlFunctions, ServedModel
from ..constructs.serving_role import ServingRole
from ..constructs.monitoring import Monitoring
from .stateful import StatefulStack


class ControlStack(Stack):
    def __init__(self, scope: Construct, id: str, *, cfg: StageConfig, stateful: StatefulStack,
                 functions_dir: Path, requirements_dir: Path, alarm_definitions: Path,
                 **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        self.serving = ServingRole(self, "ServingRole", store=stateful.store)
        self.control = ControlFunctions(
            self, "Control", cfg=cfg,
            served=(ServedModel(cfg.model_group, cfg.endpoint_name, cfg.model_group, cfg),),
            functions_dir=functions_dir, requirements_dir=requirements_dir,
            store=stateful.store, tables=stateful.tables,
            registry_resources={contract.MODEL_GROUP: [stateful.registry.group_arn],
                                contract.MODEL_PACKAGES: [stateful.registry.packages_arn]},
            notifications=stateful.notifications, serving_role=self.serving.role)
        self.monitoring = Monitoring(self, "Monitoring", endpoint_name=cfg.endpoint_name,
                                     definitions_path=alarm_definitions,
                                     schedule_minutes=cfg.drift_schedule_minutes,
                                     notification_topic=stateful.notifications.topic)
        CfnOutput(self, "EndpointName", value=cfg.endpoint_name, description="MLOPS_ENDPOINT")
        CfnOutput(self, "SageMakerExecutionRoleArn", value=self.serving.role.role_arn,
                  description="SAGEMAKER_EXECUTION_ROLE_ARN")
        CfnOutput(self, "DeploymentControllerFunction",
                  value=self.control.functions["deployment_controller"].function_name,
                  description="MLOPS_DEPLOYMENT_FUNCTION")
        CfnOutput(self, "RollbackControllerFunction",
                  value=self.control.functions["rollback_controller"].function_name,
                  description="MLOPS_ROLLBACK_FUNCTION (the CLI's --backend aws runs with its "
                              "settings)")
        CfnOutput(self, "FailedEventsQueueUrl", value=self.control.failed_events.queue_url,
                  description="on-failure queue of the controllers (mlops events replay)")
        if cfg.stream_scoring:
            CfnOutput(self, "ScoringInputStream",
                      value=self.control.input_stream.stream_name)
            CfnOutput(self, "ScoringOutputStream",
                      value=self.control.output_stream.stream_name)
