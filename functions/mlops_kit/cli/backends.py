"""Which home a command acts on: the local one ($MLOPS_HOME) or AWS (boto3)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Callable

from mlops_kit.deploy.endpoints import EndpointAdapter
from mlops_kit.registry.base import ModelRegistry, ModelVersion


class BackendError(Exception):
    pass


@dataclass
class Backend:
    name: str
    registry: ModelRegistry
    endpoints: EndpointAdapter
    endpoint_name: str
    actor: str
    emit_status_change: Callable[[ModelVersion, str], list[Any]]
    rollback_controller: Callable[[], Any]
    serialized: Callable[[], Any] = contextlib.nullcontext
    """Held while changing traffic by hand: locally the event lock the controllers take, so a
    manual shift cannot interleave with an alarm-driven one (in AWS the Lambda's reserved
    concurrency and the cooldown guard the automatic path)."""


def open_backend(name: str) -> Backend:
    if name == "local":
        from mlops_kit.config import LocalSettings

        return local_backend(LocalSettings.from_env())
    if name == "aws":
        return _aws()
    raise BackendError(f"unknown backend '{name}': use local or aws")


def local_backend(settings) -> Backend:
    from mlops_kit.deploy.events import model_package_event
    from mlops_kit.deploy.local_endpoint import LocalEndpoints
    from mlops_kit.local.control_plane import (local_registry, publish, rollback_controller,
                                               single_writer)

    def emit(version: ModelVersion, reason: str) -> list[Any]:
        # What SageMaker does on an approval, locally: the same event to the same controller.
        return publish(settings, model_package_event(version.model_group, version.version,
                                                     str(version.status), reason=reason))

    return Backend("local", local_registry(settings), LocalEndpoints(settings.home),
                   settings.endpoint_name, settings.owner, emit,
                   lambda: rollback_controller(settings), lambda: single_writer(settings))


def _aws() -> Backend:
    """SageMaker Model Registry + ledger table, the SageMaker endpoint, CloudWatch probe
    verdicts and the SNS topic: the same objects the Lambdas build, from the environment the
    CDK stack's outputs give (see docs/configuration.md)."""
    from mlops_kit.aws.health import CloudWatchProbeResults, SnsNotifier
    from mlops_kit.config import LocalSettings
    from mlops_kit.deploy.rollback import RollbackController
    from mlops_kit.deploy.sagemaker_endpoint import SageMakerEndpoints
    from mlops_kit.registry.base import RegistryError
    from mlops_kit.registry.sagemaker import SageMakerRegistry

    settings = LocalSettings.from_env()
    environ = dict(os.environ)
    environ.setdefault("MLOPS_MODEL_GROUP", settings.model_group)
    try:
        registry = SageMakerRegistry.from_env(environ)
    except RegistryError as exc:
        raise BackendError(f"aws backend: {exc} (the kit's stack outputs name them)") from None
    endpoints = SageMakerEndpoints(
        execution_role_arn=environ.get("SAGEMAKER_EXECUTION_ROLE_ARN", ""))

    def emit(version: ModelVersion, reason: str) -> list[Any]:
        # SageMaker emits the state-change event itself; EventBridge delivers it to the
        # deployment controller Lambda.
        return []

    def variant_names(endpoint_name: str) -> list[str]:
        view = endpoints.describe(endpoint_name)
        return [v.variant_name for v in view.variants] if view else []

    def rollback() -> RollbackController:
        health = CloudWatchProbeResults(variants=variant_names)
        topic = environ.get("NOTIFICATION_TOPIC_ARN", "")
        return RollbackController(registry, endpoints, health=health,
                                  notifier=SnsNotifier(topic) if topic else None)

    return Backend("aws", registry, endpoints, settings.endpoint_name, settings.owner, emit,
                   rollback)
