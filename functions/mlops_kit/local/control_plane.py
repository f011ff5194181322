"""The local stand-in for EventBridge: events are kept in the registry's outbox (an approval's
in the same transaction as the status change, as SageMaker emits the event with the change),
delivered to the same controllers the Lambdas run, with local adapters, and marked delivered
once their controller has acted. Delivery is at least once (a process killed between acting and
marking redelivers); the controllers are idempotent, so the effect is once. Every command that
opens the local home first delivers what is pending (`deliver_pending`)."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Mapping

from mlops_kit.config import LocalSettings
from mlops_kit.deploy.controller import DeploymentController, DeploymentSettings
from mlops_kit.deploy.events import DETAIL_TYPE as MODEL_PACKAGE_STATE_CHANGE
from mlops_kit.core.promotion import Promotion
from mlops_kit.deploy.events import PROMOTED, LifecycleStage, model_package_event
from mlops_kit.deploy.local_endpoint import LocalEndpoints
from mlops_kit.deploy.rollback import RollbackController
from mlops_kit.monitoring.alarm_events import ALARM_DETAIL_TYPE, parse_alarm_event
from mlops_kit.ports import InvalidEventError
from mlops_kit.registry.base import ModelVersion
from mlops_kit.registry.local import LocalRegistry, OutboxEvent
from mlops_kit.tracking.registry_mirror import mirror_soon

log = logging.getLogger(__name__)

MANUAL_SHIFT = "mlops.manual-traffic-shift"
"""An operator's `mlops rollback|rollforward`, kept in the outbox like any event: killed
between its weight change and its record, the next command completes it (under the same id)."""


def status_event(version: ModelVersion, reason: str, changed_at: datetime) -> dict[str, Any]:
    """What SageMaker emits on a status change, locally: the same event, same controller."""
    return model_package_event(version.model_group, version.version, str(version.status),
                               reason=reason, changed_at=changed_at)


def promotion_event(version: ModelVersion, promotion: Promotion, approved_now: bool,
                    changed_at: datetime) -> Mapping[str, Any]:
    """What SageMaker emits when a version's ModelLifeCycle is updated (and, for a promotion to
    the first environment, its approval status in the same update)."""
    fields = ("ModelApprovalStatus", "ModelLifeCycle") if approved_now else ("ModelLifeCycle",)
    return model_package_event(
        version.model_group, version.version, str(version.status),
        reason=version.status_reason, changed_at=changed_at, updated_fields=fields,
        lifecycle=LifecycleStage(promotion.environment, PROMOTED, promotion.reason))


def local_registry(settings: LocalSettings) -> LocalRegistry:
    return LocalRegistry(settings.registry_root, settings.model_group, status_event=status_event,
                         promotion_event=promotion_event)


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
def single_writer(settings: LocalSettings, *, blocking: bool = True) -> Iterator[bool]:
    """One event handled at a time on this machine: the local twin of the Lambdas' reserved
    concurrency of 1, so two alarms at once cannot both shift traffic. Yields False when
    `blocking` is off and another process holds it."""
    lock = settings.root.home / "events" / ".lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def publish(settings: LocalSettings, event: Mapping[str, Any]) -> list[Any]:
    """Keep the event, then deliver it (and anything older still pending) to every rule it
    matches, as EventBridge would; returns what its controllers did. An error of this event's
    controller propagates (after the attempt is counted: the event stays pending)."""
    registry = local_registry(settings)
    kept = registry.enqueue(event)
    outcomes = deliver_pending(settings, registry=registry,
                               mine=lambda pending: pending.seq == kept.seq)
    if not outcomes:
        # Another process (or thread) held the lock and delivered this event with its own
        # pending ones: what its controller did is in the outbox.
        delivered = registry.outbox_event(kept.seq)
        if delivered is not None and delivered.outcome:
            return [RecordedOutcome(o) for o in delivered.outcome.get("outcomes", [])]
    return outcomes


class RecordedOutcome:
    """A controller's outcome read back from the outbox (its `to_dict()`), with the same
    attribute access as the outcome objects for the fields it holds."""

    def __init__(self, data: Mapping[str, Any]):
        self._data = dict(data)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(name) from None

    def to_dict(self) -> dict[str, Any]:
        return dict(self._data)


def deliver_pending(settings: LocalSettings, *, registry: LocalRegistry | None = None,
                    blocking: bool = True,
                    mine: Callable[[OutboxEvent], bool] | None = None) -> list[Any]:
    """Deliver every pending event, oldest first, each marked once its controller acted.

    Returns the outcomes of the events `mine` selects (of all, when None); an error of one of
    those propagates, any other is logged. An event whose controller raises stays pending
    (counted); after `MAX_DELIVERY_ATTEMPTS` it is dead-lettered and on-call notified. With
    `blocking` off, a delivery running in another process is left to do the work."""
    registry = registry or local_registry(settings)
    if not registry.db_path.exists() and registry.marker() is None:
        return []  # a new home: nothing was ever kept
    root = settings.root  # one event bus per machine: each event says where it goes
    outcomes: list[Any] = []
    delivered = 0
    with single_writer(settings, blocking=blocking) as held:
        if not held:
            return outcomes
        for pending in registry.pending_events():
            selected = mine is None or mine(pending)
            try:
                results = _dispatch(root, pending)
            except Exception as exc:
                if pending.detail_type == MANUAL_SHIFT:
                    # The operator saw this error (endpoint busy, ...) and decides again: a
                    # later, unrelated command must not move the traffic on their behalf.
                    registry.mark_delivered(pending.seq, {"action": "failed",
                                                          "reason": f"{type(exc).__name__}: {exc}"})
                    if selected and mine is not None:
                        raise
                    continue
                failed = registry.mark_attempt_failed(pending.seq, f"{type(exc).__name__}: {exc}")
                if failed.delivered_at is not None:
                    _dead_letter(root, failed)
                if selected and mine is not None:
                    raise
                log.warning("event %s not delivered (attempt %d): %s", pending.event_id,
                            failed.attempts, exc)
                continue
            registry.mark_delivered(pending.seq, {"outcomes": [_as_dict(r) for r in results]})
            delivered += 1
            if selected:
                outcomes.extend(results)
    if delivered:
        # MLflow's registry follows what was applied, outside the event lock and without
        # making on-call wait for MLflow's import (tracking/registry_mirror.mirror_soon);
        # best-effort: the sync is of the whole state, so the next one catches up.
        mirror_soon(settings, registry)
    return outcomes


def _dispatch(settings: LocalSettings, pending: OutboxEvent) -> list[Any]:
    event = pending.event
    _append_log(settings, event)
    if event.get("detail-type") == MODEL_PACKAGE_STATE_CHANGE:
        if "ModelLifeCycle" in event.get("detail", {}):
            # A promotion: deployed by its environment's controller, in its environment.
            from mlops_kit.local.environments import deliver_promotion

            return [deliver_promotion(settings, event)]
        return [deployment_controller(settings).handle_event(event)]
    if event.get("detail-type") == MANUAL_SHIFT:
        detail = event["detail"]
        from mlops_kit.local.environments import settings_of

        return [manual_shift(settings_of(settings, detail.get("model"),
                                         detail.get("environment")), detail)]
    if event.get("detail-type") == ALARM_DETAIL_TYPE or "alarmData" in event:
        # Both shapes the rollback Lambda receives: EventBridge, and an alarm's own action;
        # an alarm of a fleet's endpoint goes to its environment's controller.
        from mlops_kit.local.environments import endpoint_settings

        try:
            endpoint = parse_alarm_event(event).endpoint_name
        except InvalidEventError:  # malformed: the controller refuses it with the reason
            endpoint = ""
        target = endpoint_settings(settings, endpoint) if endpoint else settings
        return [rollback_controller(target).handle_event(event)]
    return []


def manual_shift_event(kind: str, endpoint_name: str, to_version: int | None, *, actor: str,
                       reason: str, settings: LocalSettings | None = None) -> dict[str, Any]:
    """`settings`: an environment's of a fleet, so the shift is delivered there."""
    request_id = str(uuid.uuid4())
    where = ({"model": settings.model_group, "environment": settings.environment}
             if settings is not None and settings.environment else {})
    return {"id": request_id, "detail-type": MANUAL_SHIFT, "source": "mlops.cli",
            "detail": {"kind": kind, "endpoint": endpoint_name, "to_version": to_version,
                       "actor": actor, "reason": reason, **where,
                       "deployment_id": f"manual-{kind}:{endpoint_name}:{request_id}"}}


def manual_shift(settings: LocalSettings, request: Mapping[str, Any]) -> Any:
    controller = rollback_controller(settings)
    if request["kind"] == "rollback":
        return controller.rollback(request["endpoint"], actor=request["actor"],
                                   reason=request["reason"], to_version=request["to_version"],
                                   deployment_id=request["deployment_id"])
    return controller.rollforward(request["endpoint"], request["to_version"],
                                  actor=request["actor"], reason=request["reason"],
                                  deployment_id=request["deployment_id"])


def _append_log(settings: LocalSettings, event: Mapping[str, Any]) -> None:
    """Every delivery, in order (a redelivery appears again, as in a consumer's log). A log
    only: the outbox is the record, so a full disk here does not stop the delivery."""
    log_path = event_log(settings)
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as handle:
            handle.write(json.dumps(event, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        log.warning("event log %s not written: %s", log_path, exc)


def _dead_letter(settings: LocalSettings, failed: OutboxEvent) -> None:
    """The local FailedEvents queue: kept in the outbox as failed, and on-call told."""
    try:
        LocalNotifier(settings.home).notify(
            f"[{settings.endpoint_name}] ALERT: event not delivered after {failed.attempts} "
            f"attempts", {"event_id": failed.event_id, "detail_type": failed.detail_type,
                          "error": failed.last_error})
    except OSError as exc:
        log.warning("could not notify the dead-lettered event %s: %s", failed.event_id, exc)


def _as_dict(result: Any) -> Any:
    return result.to_dict() if hasattr(result, "to_dict") else result


def event_log(settings: LocalSettings) -> Path:
    return settings.root.home / "events" / "events.jsonl"
