"""Deployment controller: an approved version becomes the champion at weight 1, and the two
previous champions stay warm at weight 0. The same code runs in the Lambda and locally."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from mlops_kit.core.rotation import (DEFAULT_WARM_FALLBACKS, VariantWeight, lineup_after_promotion,
                                     promotion_weights, same_serving, serving_champion)
from mlops_kit.deploy.endpoints import EndpointAdapter, EndpointBusyError, ModelSource
from mlops_kit.deploy.events import deploy_decision, parse_model_package_event
from mlops_kit.registry.base import (ApprovalStatus, DeploymentRecord, ModelRegistry,
                                     ModelVersion)
from mlops_kit.serving.state import now


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


def retry_while_busy(action: Callable[[], Any], settings: DeploymentSettings,
                     sleep: Callable[[float], None]) -> tuple[Any, int]:
    """Run `action`, waiting with exponential backoff while the endpoint is busy."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return action(), attempt
        except EndpointBusyError:
            if attempt >= settings.max_attempts:
                raise
            sleep(min(settings.max_delay_seconds, settings.base_delay_seconds * 2 ** (attempt - 1)))


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
        """A model package state change: deploy on approval, ignore everything else."""
        change = parse_model_package_event(event)
        act, why = deploy_decision(change)
        if not act:
            return DeploymentOutcome("ignored", change.version, why)
        if change.model_group != self.registry.model_group:
            return DeploymentOutcome("ignored", change.version,
                                     f"model group {change.model_group} is not "
                                     f"{self.registry.model_group}")
        return self.promote(change.version, actor=f"event:{change.event_id or 'unknown'}",
                            reason=change.approval_description or "approved",
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
        blocked = self.registry.blocked_versions(endpoint)
        if version in blocked:
            return DeploymentOutcome("ignored", version,
                                     f"version {version} was rolled back or rejected: "
                                     f"roll it forward by hand to serve it again")
        promotions = [d.version for d in history if d.kind == "promote"]
        lineup = lineup_after_promotion(promotions, version, excluded=blocked,
                                        warm_fallbacks=self.settings.warm_fallbacks)
        target = promotion_weights(lineup, self.settings.instance_count,
                                   self.settings.fallback_instance_count)
        current = self.endpoints.describe(endpoint)
        previous = serving_champion(current.variants) if current else None
        record = DeploymentRecord(
            deployment_id=deployment_id, endpoint_name=endpoint, kind="promote",
            version=version, variants=target, actor=actor, reason=reason, at=now(),
            previous_version=previous.version if previous else None,
            evidence={"lineup": list(lineup.versions)})

        if current is not None and same_serving(current.variants, target):
            latest = history[-1] if history else None
            if latest is None or not same_serving(latest.variants, target):
                # Deployed before a crash kept the record from being written: write it now.
                self.registry.record_deployment(record)
            return DeploymentOutcome("unchanged", version, "the endpoint already serves this",
                                     target, deployment_id)

        models = {v: self.model_source(self.registry.get(v)) for v in lineup.versions}
        config_name, attempts = retry_while_busy(
            lambda: self.endpoints.deploy(endpoint, target, models), self.settings, self.sleep)
        self.registry.record_deployment(record)
        return DeploymentOutcome("deployed", version, reason, target, deployment_id, attempts,
                                 {"endpoint_config": config_name,
                                  "previous_version": record.previous_version})
