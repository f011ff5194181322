"""The rollback controller's first step: gather, once, the facts its decision reads (the
deployment history, the endpoint as described, probe verdicts, blocked versions, missing model
artifacts, and how the endpoint stands against its head record). The decisions themselves are
in `mlops_kit.core` (`rollback_policy`, `shift_checks`); `deploy.rollback` applies them."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Callable, Mapping, Protocol

from mlops_kit.core.guards import VersionFacts
from mlops_kit.core.rollback_policy import RollbackFacts, VariantHealth, last_rollback_time
from mlops_kit.core.rotation import same_traffic, serving_champion
from mlops_kit.core.shift_checks import (UNRECORDED_SHIFT, EndpointChange,
                                         classify_unrecorded_change)
from mlops_kit.endpoints import EndpointAdapter, EndpointView
from mlops_kit.registry.base import DeploymentRecord, ModelRegistry, UnknownVersionError


class HealthSource(Protocol):
    def probe_results(self, endpoint_name: str) -> Mapping[str, bool | None]:
        """Last synthetic-probe verdict per variant name (None: never probed)."""


class NoProbes:
    def probe_results(self, endpoint_name: str) -> Mapping[str, bool | None]:
        return {}


@dataclass(frozen=True)
class ShiftRequest:
    """One request to move the traffic: an alarm's rollback, or on-call's shift."""
    endpoint_name: str
    kind: str
    """rollback | rollforward (the deployment record's kind)"""
    deployment_id: str
    actor: str
    reason: str
    evidence: Mapping[str, Any]
    started: float
    """`time.perf_counter()` when the request arrived: what the timings are measured from."""
    to_version: int | None = None
    manual: bool = False
    alarm_raised_at: datetime | None = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def with_evidence(self, **more: Any) -> "ShiftRequest":
        return replace(self, evidence={**self.evidence, **more})

    @property
    def action(self) -> str:
        return "rolled_back" if self.kind == "rollback" else "rolled_forward"


@dataclass(frozen=True)
class NothingToDecide:
    """The request needs no decision: already handled, or no endpoint."""
    action: str
    reason: str
    deployment_id: str = ""


@dataclass(frozen=True)
class EndpointFacts:
    """What the decision reads: the history, the endpoint as described, the policy's facts
    and how the endpoint stands against its head record."""
    history: tuple[DeploymentRecord, ...]
    view: EndpointView
    policy: RollbackFacts
    change: EndpointChange
    target: VersionFacts | None = None
    """A roll-forward target as the registry knows it (None: not a roll-forward, or unknown)."""

    @property
    def rolled_back_from(self) -> str:
        """What a rollback moves the traffic away from: the record that made the champion
        serve (or, for an endpoint the kit has no record of, the serving version)."""
        if self.history:
            return self.history[-1].deployment_id
        champion = serving_champion(self.view.variants)
        return f"serving:v{champion.version if champion else None}"


def gather_facts(request: ShiftRequest, *, registry: ModelRegistry, endpoints: EndpointAdapter,
                 health: HealthSource, clock: Callable[[], datetime],
                 artifact_available: Callable[[str], bool]) -> EndpointFacts | NothingToDecide:
    """Read everything once. The head's rollback claim is read only when the endpoint differs
    from its head record (the one case that needs it: an API call fewer on the usual path)."""
    name = request.endpoint_name
    history = tuple(registry.deployments(name))
    if any(d.deployment_id == request.deployment_id for d in history):
        return NothingToDecide("duplicate", "this alarm transition was already handled",
                               request.deployment_id)
    view = endpoints.describe(name)
    if view is None:
        return NothingToDecide("none", f"endpoint {name} does not exist: nothing serves yet. "
                                       f"Approve a version first (`mlops registry approve N "
                                       f"--reason ...`), or name the endpoint (--endpoint, "
                                       f"MLOPS_ENDPOINT)")
    probes = health.probe_results(name)
    verdicts = {v.variant_name: VariantHealth(v.variant_name, view.in_service, v.instance_count,
                                              probes.get(v.variant_name))
                for v in view.variants}
    blocked = frozenset(registry.blocked_versions(name))
    missing = missing_artifacts(view, artifact_available)
    head = history[-1] if history else None
    claim = None
    if (head is not None and serving_champion(view.variants) is not None
            and not same_traffic(view.variants, head.variants)):
        claim = registry.rollback_claim(name, head.deployment_id)
    change = classify_unrecorded_change(name, view.variants, head, claim, blocked=blocked,
                                        manual=request.manual,
                                        deployment_id=request.deployment_id)
    # A roll-forward is what unblocks a version: the policy sees nothing blocked for it.
    policy = RollbackFacts(view.status, view.variants, verdicts,
                           blocked if request.kind == "rollback" else frozenset(),
                           last_rollback_time(history), clock(), missing_artifacts=missing,
                           alarm_raised_at=request.alarm_raised_at, history=history)
    target = None
    if request.kind == "rollforward" and change.kind != UNRECORDED_SHIFT:
        target = rollforward_facts(registry, request.to_version, artifact_available)
    return EndpointFacts(history, view, policy, change, target)


def missing_artifacts(view: EndpointView, artifact_available: Callable[[str], bool]
                      ) -> dict[int, str]:
    """Versions on the endpoint whose model directory is gone (version → URI); only adapters
    that name the served model directories (the local one) are checked."""
    uris: Mapping[str, str] = getattr(view, "model_uris", None) or {}
    return {v.version: uris[v.variant_name] for v in view.variants
            if v.variant_name in uris and not artifact_available(uris[v.variant_name])}


def rollforward_facts(registry: ModelRegistry, version: int | None,
                      artifact_available: Callable[[str], bool]) -> VersionFacts | None:
    """What the registry says about a roll-forward target (None: it does not know it)."""
    if version is None:
        return None
    try:
        known = registry.get(version)
    except UnknownVersionError:
        return None
    return VersionFacts(version, str(known.status), known.archived_at, known.status_reason,
                        known.model_uri, artifact_available(known.model_uri))
