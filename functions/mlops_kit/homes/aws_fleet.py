"""The AWS home as a fleet (`FleetHome`): one registry account holds every model's package group
and the ledger of versions and promotions; each environment (an account and region) holds its
endpoints, its own ledger of what they served, and its controllers, which read the registry
account through a role they assume there.

`clients` factories give the boto3 clients of each account (with the credentials of the role
the caller holds there); the promotion itself is a `ModelLifeCycle` update in the registry
account, whose event EventBridge forwards to the environment's bus, where the environment's
deployment controller (`deployment_controller`) deploys it. `deploy` therefore returns None:
the delivery is EventBridge's, not this process's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Mapping

from mlops_kit.core.promotion import EnvironmentFacts, Promotion
from mlops_kit.deploy.promotion import facts_from_status
from mlops_kit.fleet.declaration import ModelDeclaration

Clients = Callable[[str], Any]
"""service name → a boto3 client in one account."""


@dataclass(frozen=True)
class AwsEnvironment:
    name: str
    ledger_table: str
    """The environment's deployment ledger (endpoint history, rollback claims)."""
    clients: Clients
    execution_role_arn: str
    """The role the environment's endpoints serve with (CreateModel)."""
    notification_topic_arn: str = ""


class AwsFleetHome:
    def __init__(self, registry_ledger_table: str, registry_clients: Clients,
                 environments: Mapping[str, AwsEnvironment]):
        self.registry_ledger_table = registry_ledger_table
        self.registry_clients = registry_clients
        self.environments = dict(environments)

    # -- the registry account ----------------------------------------------------------------

    def registry(self, model: ModelDeclaration, environment: str | None = None):
        """The model's registry; from an environment, with that environment's deployment
        ledger (the packages and versions are always the registry account's)."""
        from mlops_kit.registry.sagemaker import SageMakerRegistry

        env = self.environments[environment] if environment else None
        return SageMakerRegistry(
            model.name, ledger_table=self.registry_ledger_table,
            sagemaker_client=self.registry_clients("sagemaker"),
            dynamodb_client=self.registry_clients("dynamodb"),
            deployment_ledger_table=env.ledger_table if env else None,
            deployment_dynamodb_client=env.clients("dynamodb") if env else None)

    def promotions(self, model: ModelDeclaration) -> list[Promotion]:
        return self.registry(model).promotions()

    def record(self, model: ModelDeclaration, version: int, environment: str, *, actor: str,
               reason: str, approve: bool) -> tuple[Promotion, bool]:
        return self.registry(model).record_promotion(version, environment, actor=actor,
                                                     reason=reason, approve=approve)

    def deploy(self, model: ModelDeclaration, promotion: Promotion) -> dict[str, Any] | None:
        return None  # SageMaker emits the event; EventBridge delivers it to the environment

    # -- an environment's account ------------------------------------------------------------

    def facts(self, model: ModelDeclaration, environment: str) -> EnvironmentFacts:
        report = self.status(model, environment)
        registry = self.registry(model, environment)
        return facts_from_status(report, registry.blocked_versions(report["endpoint"]))

    def status(self, model: ModelDeclaration, environment: str) -> dict[str, Any]:
        from mlops_kit.homes.aws import alarm_states, endpoints
        from mlops_kit.registry.service import status

        env = self.environments[environment]
        endpoint = model.endpoint_name(environment)
        return status(self.registry(model, environment), endpoints(env.clients), endpoint,
                      alarms=alarm_states(endpoint, env.clients),
                      cooldown=timedelta(minutes=model.serving_in(environment)
                                         .rollback_cooldown_minutes))

    def deployment_controller(self, model: ModelDeclaration, environment: str):
        """What the environment's deployment Lambda runs for the model's promotions."""
        from mlops_kit.deploy.controller import DeploymentController, DeploymentSettings
        from mlops_kit.deploy.sagemaker_endpoint import SageMakerEndpoints

        env = self.environments[environment]
        serving = model.serving_in(environment)
        return DeploymentController(
            self.registry(model, environment),
            SageMakerEndpoints(env.clients("sagemaker"), execution_role_arn=env.execution_role_arn,
                               instance_type=serving.instance_type),
            DeploymentSettings(model.endpoint_name(environment),
                               serving.champion_instance_count, serving.fallback_instance_count,
                               serving.warm_fallbacks, environment=environment))

    def rollback_controller(self, model: ModelDeclaration, environment: str):
        """What the environment's rollback Lambda runs for the model's endpoint there."""
        from mlops_kit.homes.aws import build_rollback_controller

        env = self.environments[environment]
        return build_rollback_controller(
            self.registry(model, environment), env.clients,
            endpoint_name=model.endpoint_name(environment),
            cooldown_minutes=model.serving_in(environment).rollback_cooldown_minutes,
            notification_topic_arn=env.notification_topic_arn)
