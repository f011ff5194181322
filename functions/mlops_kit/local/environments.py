"""The local home as a fleet's environments: one registry of record at `$MLOPS_HOME`, and each
environment's endpoints, probes, alarms and notifications under `$MLOPS_HOME/envs/<env>/`.

An environment is the single-model home's layout again (the same endpoint files, the same
controllers) with its registry pointed at the shared one, so everything the kit does to one
endpoint it does to `<model>-<env>` unchanged; the rollback of prod's endpoint reads and writes
prod's files and prod's deployment history only.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from mlops_kit.config import LocalSettings
from mlops_kit.deploy.controller import (DeploymentController, DeploymentOutcome,
                                         DeploymentSettings)
from mlops_kit.deploy.local_endpoint import LocalEndpoints
from mlops_kit.fleet.declaration import ModelDeclaration
from mlops_kit.fleet.loader import Fleet, FleetError, load_fleet
from mlops_kit.local.control_plane import local_registry

ENVIRONMENTS_DIR = "envs"


def environment_home(root: Path, environment: str) -> Path:
    return root / ENVIRONMENTS_DIR / environment


def environment_settings(root: LocalSettings, model: ModelDeclaration,
                         environment: str) -> LocalSettings:
    """The settings of `model` in `environment`: its endpoint and files there, the shared
    registry (the model's group) at the root home."""
    root = root.root
    return replace(root, home=environment_home(root.home, environment), parent=root,
                   environment=environment,
                   model_group=model.name, use_case=model.use_case,
                   endpoint_name=model.endpoint_name(environment))


def environment_deployment_controller(settings: LocalSettings, model: ModelDeclaration,
                                      environment: str) -> DeploymentController:
    """The environment's deployment controller for `model`, with the environment's serving
    (warm fallbacks, instance counts) from the model's declaration."""
    serving = model.serving_in(environment)
    return DeploymentController(
        local_registry(settings), LocalEndpoints(settings.home),
        DeploymentSettings(endpoint_name=settings.endpoint_name,
                           instance_count=serving.champion_instance_count,
                           fallback_instance_count=serving.fallback_instance_count,
                           warm_fallbacks=serving.warm_fallbacks, base_delay_seconds=0.2,
                           environment=environment))


def deliver_promotion(root: LocalSettings, event: Mapping[str, Any],
                      fleet: Fleet | None = None) -> Any:
    """A promotion event, to its environment's deployment controller."""
    detail = event["detail"]
    fleet = fleet or load_fleet()
    model = fleet.model(str(detail["ModelPackageGroupName"]))
    environment = str(detail["ModelLifeCycle"]["Stage"])
    if environment not in model.deploy_to:
        return DeploymentOutcome("ignored", int(detail["ModelPackageVersion"]),
                                 f"{model.name} does not deploy to {environment}")
    settings = environment_settings(root, model, environment)
    return environment_deployment_controller(settings, model, environment).handle_event(event)


def settings_of(root: LocalSettings, model: str | None, environment: str | None,
                fleet: Fleet | None = None) -> LocalSettings:
    """The settings an event names: one model's in one environment, or the root's."""
    if environment is None:
        return root
    declared = (fleet or load_fleet()).model(model)
    return environment_settings(root, declared, environment)


def endpoint_settings(root: LocalSettings, endpoint: str) -> LocalSettings:
    """The settings of the fleet's model and environment that `endpoint` is, else the root's
    (the single-model home's endpoint, or no fleet declared where the command runs)."""
    try:
        fleet = load_fleet()
    except FleetError:
        return root
    for model in fleet.models.values():
        for environment in model.deploy_to:
            if model.endpoint_name(environment) == endpoint:
                return environment_settings(root, model, environment)
    return root
