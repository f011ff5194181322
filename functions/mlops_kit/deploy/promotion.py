"""Promoting a version of a model to an environment, the same in every home: gather the facts
(the ledger's promotions, each environment's champion and alarms), decide (`core.promotion`),
record the promotion with the event it implies, and hand it to the environment's deployment
controller. The homes provide the facts and the recording (`FleetHome`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from mlops_kit.core.promotion import (EnvironmentFacts, Promotion, PromotionDecision,
                                      promotion_decision)
from mlops_kit.core.timestamps import parse_iso
from mlops_kit.fleet.declaration import ModelDeclaration
from mlops_kit.fleet.loader import Fleet


class FleetHome(Protocol):
    def promotions(self, model: ModelDeclaration) -> list[Promotion]:
        """Every promotion of the model, oldest first."""

    def facts(self, model: ModelDeclaration, environment: str) -> EnvironmentFacts:
        """The model's endpoint in the environment as it is now."""

    def record(self, model: ModelDeclaration, version: int, environment: str, *, actor: str,
               reason: str, approve: bool) -> tuple[Promotion, bool]:
        """Record the promotion and its event (one fact); False when it was recorded before."""

    def deploy(self, model: ModelDeclaration, promotion: Promotion) -> dict[str, Any] | None:
        """Deliver the promotion to the environment's deployment controller: its outcome, or
        None where the delivery is asynchronous (EventBridge)."""


def facts_from_status(report: dict[str, Any], blocked: set[int]) -> EnvironmentFacts:
    """An environment's facts from its endpoint's `mlops status` report (`registry.service.
    status`, the same in every home) and the versions blocked there."""
    since = report["champion_since"]
    return EnvironmentFacts(
        champion=report["champion"], champion_since=parse_iso(since) if since else None,
        firing_alarms=tuple(a["name"] for a in report["alarms"]
                            if a.get("rollback", True) and a["state"] == "ALARM"),
        blocked=frozenset(blocked))


@dataclass(frozen=True)
class PromotionResult:
    model: str
    version: int
    environment: str
    decision: PromotionDecision
    promotion: Promotion | None = None
    deployment: dict[str, Any] | None = None

    @property
    def promoted(self) -> bool:
        return self.decision.allowed and not self.decision.already

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "environment": self.environment,
                "allowed": self.decision.allowed, "already": self.decision.already,
                "reason": self.decision.reason,
                "promotion": self.promotion.__dict__ if self.promotion else None,
                "deployment": self.deployment}


def promote(fleet: Fleet, home: FleetHome, model_name: str | None, version: int, target: str, *,
            actor: str, reason: str, now: datetime, override: bool = False) -> PromotionResult:
    """Promote `version` of the model to `target` if the environments' order and checks allow
    it; idempotent (a promotion made before is reported as such, nothing is redone)."""
    model = fleet.model(model_name)
    promotions = home.promotions(model)
    facts = {env: home.facts(model, env) for env in model.deploy_to if env in
             fleet.environment_names}
    decision = promotion_decision(fleet.environments, model.deploy_to, model=model.name,
                                  version=version, target=target, promotions=promotions,
                                  facts=facts, now=now, override=override)
    result = PromotionResult(model.name, version, target, decision)
    if not decision.allowed or decision.already:
        return result
    # An override is part of the record: the audit shows which promotions skipped a step.
    why = f"{reason} (skips {decision.skipped} by override)" if decision.skipped else reason
    promotion, _ = home.record(model, version, target, actor=actor, reason=why,
                               approve=target == model.deploy_to[0])
    return PromotionResult(model.name, version, target, decision, promotion,
                           home.deploy(model, promotion))
