"""The local home's wiring ($MLOPS_HOME): the registry, endpoint, controllers and event bus of
one machine (built in `mlops_kit.local.control_plane`), as the CLI's backend."""

from __future__ import annotations

from typing import Any

from mlops_kit.config import LocalSettings
from mlops_kit.homes import Backend
from mlops_kit.registry.base import ModelVersion


def backend(settings: LocalSettings | None = None) -> Backend:
    from mlops_kit.deploy.events import model_package_event
    from mlops_kit.deploy.local_endpoint import LocalEndpoints
    from mlops_kit.local.control_plane import (local_registry, publish, rollback_controller,
                                               single_writer)

    settings = settings or LocalSettings.from_env()

    def emit(version: ModelVersion, reason: str) -> list[Any]:
        # What SageMaker does on an approval, locally: the same event to the same controller.
        return publish(settings, model_package_event(version.model_group, version.version,
                                                     str(version.status), reason=reason))

    return Backend("local", local_registry(settings), LocalEndpoints(settings.home),
                   settings.endpoint_name, settings.owner, emit,
                   lambda: rollback_controller(settings), lambda: single_writer(settings))
