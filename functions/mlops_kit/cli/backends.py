"""Which home a command acts on: the local one ($MLOPS_HOME) or AWS (boto3)."""

from __future__ import annotations

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


def open_backend(name: str) -> Backend:
    if name == "local":
        return _local()
    if name == "aws":
        return _aws()
    raise BackendError(f"unknown backend '{name}': use local or aws")


def _local() -> Backend:
    from mlops_kit.config import LocalSettings
    from mlops_kit.deploy.events import model_package_event
    from mlops_kit.deploy.local_endpoint import LocalEndpoints
    from mlops_kit.local.control_plane import local_registry, publish, rollback_controller

    settings = LocalSettings.from_env()

    def emit(version: ModelVersion, reason: str) -> list[Any]:
        # What SageMaker does on an approval, locally: the same event to the same controller.
        return publish(settings, model_package_event(version.model_group, version.version,
                                                     str(version.status), reason=reason))

    return Backend("local", local_registry(settings), LocalEndpoints(settings.home),
                   settings.endpoint_name, settings.owner, emit,
                   lambda: rollback_controller(settings))


def _aws() -> Backend:
    raise BackendError("the aws backend needs the SageMaker adapters (not wired yet)")


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)
