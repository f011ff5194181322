"""The local stand-in for EventBridge: events are appended to $MLOPS_HOME/events/ and handed
to the same controllers the Lambdas run, with local adapters."""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Mapping

from mlops_kit.config import LocalSettings
from mlops_kit.deploy.controller import DeploymentController, DeploymentSettings
from mlops_kit.deploy.events import DETAIL_TYPE as MODEL_PACKAGE_STATE_CHANGE
from mlops_kit.deploy.local_endpoint import LocalEndpoints
from mlops_kit.deploy.rollback import RollbackController
from mlops_kit.monitoring.alarm_events import ALARM_DETAIL_TYPE
from mlops_kit.registry.local import LocalRegistry


def local_registry(settings: LocalSettings) -> LocalRegistry:
    return LocalRegistry(settings.home, settings.model_group)


def deployment_controller(settings: LocalSettings) -> DeploymentController:
    return DeploymentController(local_registry(settings), LocalEndpoints(settings.home),
                                DeploymentSettings(endpoint_name=settings.endpoint_name,
                                                   base_delay_seconds=0.2),
                                )


PROBE_LOOKBACK = timedelta(minutes=15)
"""As in AWS (CloudWatchProbeResults): an older probe says nothing about a variant's health."""


class LocalProbeResults:
    """Per-variant verdicts of the last synthetic probe, as the local prober writes them."""

    def __init__(self, home: Path,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.home = home
        self.clock = clock

    def path(self, endpoint_name: str) -> Path:
        return self.home / "probes" / f"{endpoint_name}.json"

    def probe_results(self, endpoint_name: str) -> Mapping[str, bool | None]:
        try:
            raw = json.loads(self.path(endpoint_name).read_text())
        except FileNotFoundError:
            return {}
        probed_at = datetime.fromisoformat(raw["at"])
        if self.clock() - probed_at > PROBE_LOOKBACK:
            return {}
        return {variant: result.get("ok") for variant, result in raw.get("variants", {}).items()}


class LocalNotifier:
    """The local SNS topic: notifications appended to $MLOPS_HOME/notifications.jsonl."""

    def __init__(self, home: Path):
        self.path = home / "notifications.jsonl"

    def notify(self, subject: str, message: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"subject": subject, "message": message}, sort_keys=True,
                                    default=str) + "\n")


def rollback_controller(settings: LocalSettings) -> RollbackController:
    return RollbackController(local_registry(settings), LocalEndpoints(settings.home),
                              health=LocalProbeResults(settings.home),
                              notifier=LocalNotifier(settings.home),
                              managed_endpoints=[settings.endpoint_name])


@contextmanager
def single_writer(settings: LocalSettings) -> Iterator[None]:
    """One event handled at a time on this machine: the local twin of the Lambdas' reserved
    concurrency of 1, so two alarms at once cannot both shift traffic."""
    lock = settings.home / "events" / ".lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def publish(settings: LocalSettings, event: Mapping[str, Any]) -> list[Any]:
    """Record the event, then deliver it to every rule it matches (as EventBridge would)."""
    log = event_log(settings)
    log.parent.mkdir(parents=True, exist_ok=True)
    with single_writer(settings):
        with open(log, "a") as handle:
            handle.write(json.dumps(event, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        outcomes: list[Any] = []
        if event.get("detail-type") == MODEL_PACKAGE_STATE_CHANGE:
            outcomes.append(deployment_controller(settings).handle_event(event))
        elif event.get("detail-type") == ALARM_DETAIL_TYPE or "alarmData" in event:
            # Both shapes the rollback Lambda receives: EventBridge, and an alarm's own action.
            outcomes.append(rollback_controller(settings).handle_event(event))
        return outcomes


def event_log(settings: LocalSettings) -> Path:
    return settings.home / "events" / "events.jsonl"
