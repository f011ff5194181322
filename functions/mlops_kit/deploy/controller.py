"""Deployment controller: an approved version becomes the champion at weight 1, and the two
previous champions stay warm at weight 0. The same code runs in the Lambda and locally."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Callable, Mapping

from mlops_kit.core.guards import VersionFacts, promotion_refusal
from mlops_kit.core.rotation import (DEFAULT_WARM_FALLBACKS, VariantWeight, plan_promotion,
                                     promotion_weights, same_serving, serving_champion)
from mlops_kit.endpoints import EndpointAdapter, EndpointBusyError, ModelSource
from mlops_kit.core.approvals import deploy_decision
from mlops_kit.deploy.events import ModelPackageStateChange, parse_model_package_event
from mlops_kit.registry.base import (ApprovalStatus, DeploymentRecord, ModelRegistry,
                                     ModelVersion)
from mlops_kit.clock import utc_now_iso
from mlops_kit.retry import Backoff


@dataclass(frozen=True)
class DeploymentSettings:
    endpoint_name: str
    instance_count: int = 1
    fallback_instance_count: int = 1
    warm_fallbacks: int = DEFAULT_WARM_FALLBACKS
    max_attempts: int = 6
    """Tries while the endpoint is busy; then the error surfaces (EventBridge retries)."""
    base_delay_seconds: float = 2.0
    max_delay_seconds: float = 30.0
    environment: str | None = None
    """The fleet environment this endpoint serves: it deploys promotions to it (and nothing
    else); None: the single-model kit, which deploys every approval."""


@dataclass(frozen=True)
class DeploymentOutcome:
    action: str
    """deployed | unchanged | ignored | duplicate"""
    version: int | None
    reason: str
    variants: tuple[VariantWeight, ...] = ()
    deployment_id: str = ""
    attempts: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "version": self.version, "reason": self.reason,
                "variants": [v.to_dict() for v in self.variants],
                "deployment_id": self.deployment_id, "attempts": self.attempts,
                **self.details}


def default_model_source(version: ModelVersion) -> ModelSource:
    arn = str(version.lineage.get("model_package_arn", ""))
    return ModelSource(version.version, version.model_uri, arn)


def busy_backoff(settings: DeploymentSettings,
                 sleep: Callable[[float], None] = time.sleep) -> Backoff:
    """The settings' waiting while the endpoint is busy, as the kit's one backoff helper:
    doubling from the base, capped, without jitter, retrying only EndpointBusyError."""
    return Backoff(settings.max_attempts, settings.base_delay_seconds,
                   settings.max_delay_seconds, sleep, jitter=False,
                   retry_if=lambda exc: isinstance(exc, EndpointBusyError))


def backoff_delay(settings: DeploymentSettings, attempt: int) -> float:
    """The wait after busy try number `attempt` (1, 2, ...): doubling from the base, capped."""
    return busy_backoff(settings).delay(attempt)


def retry_horizon(settings: DeploymentSettings) -> timedelta:
    """The waiting `retry_while_busy` does before it gives up."""
    return timedelta(seconds=busy_backoff(settings).horizon())


def retry_while_busy(action: Callable[[], Any], settings: DeploymentSettings,
                     sleep: Callable[[float], None]) -> tuple[Any, int]:
    """Run `action`, waiting with exponential backoff while the endpoint is busy."""
    return busy_backoff(settings, sleep).attempt(action)


class DeploymentController:
    def __init__(self, registry: ModelRegistry, endpoints: EndpointAdapter,
                 settings: DeploymentSettings, *,
                 model_source: Callable[[ModelVersion], ModelSource] = default_model_source,
                 sleep: Callable[[float], None] = time.sleep):
        self.registry = registry
        self.endpoints = endpoints
        self.settings = settings
        self.model_source = model_source
        self.sleep = sleep

    def handle_event(self, event: Mapping[str, Any]) -> DeploymentOutcome:
        """A model package state change (raw EventBridge event): parsed, then `handle_change`."""
        return self.handle_change(parse_model_package_event(event))

    def handle_change(self, change: ModelPackageStateChange) -> DeploymentOutcome:
        """A parsed model package state change: deploy on approval, ignore everything else."""
        act, why = deploy_decision(change, self.settings.environment)
        if not act:
            return DeploymentOutcome("ignored", change.version, why)
        if change.model_group != self.registry.model_group:
            return DeploymentOutcome("ignored", change.version,
                                     f"model group {change.model_group} is not "
                                     f"{self.registry.model_group}")
        reason = (change.lifecycle.description if self.settings.environment and change.lifecycle
                  else change.approval_description)
        return self.promote(change.version, actor=f"event:{change.event_id or 'unknown'}",
                            reason=reason or why,
                            deployment_id=f"promote:{change.change_key}")

    def promote(self, version: int, *, actor: str, reason: str,
                deployment_id: str) -> DeploymentOutcome:
        endpoint = self.settings.endpoint_name
        history = self.registry.deployments(endpoint)
        if any(d.deployment_id == deployment_id for d in history):
            return DeploymentOutcome("duplicate", version, "this approval was already deployed",
                                     deployment_id=deployment_id)
        candidate = self.registry.get(version)
        if candidate.status != ApprovalStatus.APPROVED:
            return DeploymentOutcome("ignored", version,
                                     f"version {version} is {candidate.status}: not deployed")
        refusal = promotion_refusal(VersionFacts(version, str(candidate.status),
                                                 candidate.archived_at))
        if refusal:
            return DeploymentOutcome("ignored", version, refusal)
        histories = [history]  # the first try decides on the history read above

        def attempt() -> DeploymentOutcome:
            # Decided again on every try, from the history and the endpoint as they are then:
            # in AWS another approval's invocation may land while this one waits for the
            # endpoint (nothing serialises the two), and a lineup computed before the wait
            # would leave that version out, or put the older approval above it.
            seen = histories.pop() if histories else self.registry.deployments(endpoint)
            if any(d.deployment_id == deployment_id for d in seen):
                return DeploymentOutcome("duplicate", version,
                                         "this approval was already deployed",
                                         deployment_id=deployment_id)
            return self._deploy_once(version, seen, actor=actor, reason=reason,
                                     deployment_id=deployment_id)

        outcome, attempts = retry_while_busy(attempt, self.settings, self.sleep)
        return replace(outcome, attempts=attempts) if outcome.action == "deployed" else outcome

    def _deploy_once(self, version: int, history, *, actor: str, reason: str,
                     deployment_id: str) -> DeploymentOutcome:
        """One try: decide the lineup on the current facts and deploy it (EndpointBusyError
        while the endpoint is busy: the caller waits and calls again)."""
        endpoint = self.settings.endpoint_name
        blocked = self.registry.blocked_versions(endpoint)
        if version in blocked:
            return DeploymentOutcome("ignored", version,
                                     f"version {version} was rolled back or rejected: "
                                     f"roll it forward by hand to serve it again")
        current = self.endpoints.describe(endpoint)
        previous = serving_champion(current.variants) if current else None
        # The approved version of each earlier promotion (a promotion that kept a newer
        # champion records that champion as its version, and the approval in its evidence).
        promotions = [int(d.evidence.get("approved_version", d.version)) for d in history
                      if d.kind == "promote"]
        plan = plan_promotion(promotions, version,
                              serving=previous.version if previous else None,
                              excluded=blocked, warm_fallbacks=self.settings.warm_fallbacks)
        lineup = plan.lineup
        target = promotion_weights(lineup, self.settings.instance_count,
                                   self.settings.fallback_instance_count)
        evidence: dict[str, Any] = {"lineup": list(lineup.versions)}
        if plan.held_by is not None:
            evidence.update(approved_version=version, kept_champion=plan.reason)
        record = DeploymentRecord(
            deployment_id=deployment_id, endpoint_name=endpoint, kind="promote",
            version=lineup.champion, variants=target, actor=actor,  # type: ignore[arg-type]
            reason=reason, at=utc_now_iso(),
            previous_version=previous.version if previous else None, evidence=evidence)
        said = plan.reason or reason

        if current is not None and same_serving(current.variants, target):
            latest = history[-1] if history else None
            if latest is None or not same_serving(latest.variants, target):
                # Deployed before a crash kept the record from being written: write it now.
                self.registry.record_deployment(record)
            return DeploymentOutcome("unchanged", version,
                                     "the endpoint already serves this"
                                     + (f" ({plan.reason})" if plan.reason else ""),
                                     target, deployment_id)

        models = {v: self.model_source(self.registry.get(v)) for v in lineup.versions}
        config_name = self.endpoints.deploy(endpoint, target, models)
        self.registry.record_deployment(record)
        return DeploymentOutcome("deployed", version, said, target, deployment_id, 0,
                                 {"endpoint_config": config_name,
                                  "previous_version": record.previous_version,
                                  **({"champion": plan.held_by} if plan.held_by else {})})
