"""The local stand-in for EventBridge: events are appended to $MLOPS_HOME/events/ and handed
to the same controllers the Lambdas run, with local adapters."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from mlops_kit.config import LocalSettings
from mlops_kit.deploy.controller import DeploymentController, DeploymentOutcome, DeploymentSettings
from mlops_kit.deploy.events import DETAIL_TYPE as MODEL_PACKAGE_STATE_CHANGE
from mlops_kit.deploy.local_endpoint import LocalEndpoints
from mlops_kit.registry.local import LocalRegistry


def local_registry(settings: LocalSettings) -> LocalRegistry:
    return LocalRegistry(settings.home, settings.model_group)


def deployment_controller(settings: LocalSettings) -> DeploymentController:
    return DeploymentController(local_registry(settings), LocalEndpoints(settings.home),
                                DeploymentSettings(endpoint_name=settings.endpoint_name),
                                sleep=lambda seconds: None)


def publish(settings: LocalSettings, event: Mapping[str, Any]) -> list[DeploymentOutcome]:
    """Record the event, then deliver it to every rule it matches (as EventBridge would)."""
    log = settings.home / "events" / "events.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as handle:
        handle.write(json.dumps(event, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    outcomes = []
    if event.get("detail-type") == MODEL_PACKAGE_STATE_CHANGE:
        outcomes.append(deployment_controller(settings).handle_event(event))
    return outcomes


def event_log(settings: LocalSettings) -> Path:
    return settings.home / "events" / "events.jsonl"
