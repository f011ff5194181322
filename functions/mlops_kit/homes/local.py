"""The local home's wiring ($MLOPS_HOME): the registry, endpoint, controllers and event bus of
one machine (built in `mlops_kit.local.control_plane`), as the CLI's backend."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mlops_kit.config import LocalSettings
from mlops_kit.core.approvals import undeployed_approval
from mlops_kit.core.rollback_policy import DEFAULT_COOLDOWN
from mlops_kit.homes import Backend
from mlops_kit.registry.base import ModelVersion


def backend(settings: LocalSettings | None = None) -> Backend:
    from mlops_kit.deploy.events import DETAIL_TYPE
    from mlops_kit.deploy.local_endpoint import LocalEndpoints
    from mlops_kit.local.control_plane import (deliver_pending, local_registry,
                                               manual_shift_event, publish,
                                               rollback_controller, single_writer)

    settings = settings or LocalSettings.from_env()
    registry = local_registry(settings)
    # What an earlier command left undelivered (killed between an approval and its deployment)
    # is delivered before this one reads or changes anything.
    deliver_pending(settings, registry=registry, blocking=False)

    def of_version(version: ModelVersion):
        return lambda pending: (pending.detail_type == DETAIL_TYPE and pending.event.get(
            "detail", {}).get("ModelPackageVersion") == version.version)

    def emit(version: ModelVersion, reason: str) -> list[Any]:
        # The status change already holds its event (one transaction): deliver it now.
        return deliver_pending(settings, registry=registry, mine=of_version(version))

    def resend(version: ModelVersion) -> list[Any]:
        """Re-approving an approved version that never deployed (its event dead-lettered, or
        a home from before the outbox): its approval event again, same change time, so the
        deployment controller treats it as that approval."""
        promoted = {d.version for d in registry.deployments(settings.endpoint_name)
                    if d.kind == "promote"}
        if not undeployed_approval(version, promoted,
                                   registry.blocked_versions(settings.endpoint_name)):
            return []
        changed_at = datetime.fromisoformat(version.status_changed_at.replace("Z", "+00:00"))
        registry.enqueue_status_event(version, version.status_reason or "approved", changed_at)
        return deliver_pending(settings, registry=registry, mine=of_version(version))

    def manual_shift(kind: str, endpoint_name: str, to_version: int | None, *, actor: str,
                     reason: str) -> Any:
        outcomes = publish(settings, manual_shift_event(kind, endpoint_name, to_version,
                                                        actor=actor, reason=reason,
                                                        settings=settings))
        if not outcomes:  # delivered by another holder of the lock, and it failed there
            from mlops_kit.local.control_plane import RecordedOutcome

            return RecordedOutcome({"action": "none", "reason": "the request was not applied "
                                    "(see `mlops status`)", "from_version": None,
                                    "to_version": None})
        return outcomes[0]

    return Backend("local", registry, LocalEndpoints(settings.home),
                   settings.endpoint_name, settings.owner, emit,
                   lambda: rollback_controller(settings), lambda: single_writer(settings),
                   alarm_states=lambda endpoint: local_alarm_states(settings, endpoint),
                   # The local rollback controller runs with the default settings
                   # (`control_plane.rollback_controller`): its cooldown is the default one.
                   cooldown=DEFAULT_COOLDOWN,
                   manual_shift=manual_shift, resend_status_change=resend)


def local_alarm_states(settings: LocalSettings, endpoint_name: str) -> list[dict[str, Any]]:
    """The local evaluator's alarm states (what `mlops monitor` last decided)."""
    from mlops_kit.core.alarms import load_definitions
    from mlops_kit.monitoring.evaluator import LocalAlarmEvaluator

    definitions = load_definitions()
    states = LocalAlarmEvaluator(settings.home, endpoint_name, definitions).states()
    return [{"name": d.alarm_name(endpoint_name), "rollback": d.rollback,
             "state": states.get(d.alarm_name(endpoint_name), {}).get("state",
                                                                     "INSUFFICIENT_DATA"),
             "since": states.get(d.alarm_name(endpoint_name), {}).get("since")}
            for d in definitions]


def local_registry_only(settings: LocalSettings | None = None):
    """The home's registry without delivering anything (for `mlops registry check|restore`,
    which must work on a damaged home)."""
    from mlops_kit.local.control_plane import local_registry

    return local_registry(settings or LocalSettings.from_env())
