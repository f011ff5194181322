"""The local home as a fleet (`FleetHome`): the shared registry's promotions, and each
environment's endpoint, ledger and alarms under `$MLOPS_HOME/envs/<env>/`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mlops_kit.config import LocalSettings
from mlops_kit.core.promotion import EnvironmentFacts, Promotion, serving_since
from mlops_kit.core.rotation import serving_champion
from mlops_kit.core.timestamps import parse_iso
from mlops_kit.deploy.local_endpoint import LocalEndpoints
from mlops_kit.fleet.declaration import ModelDeclaration
from mlops_kit.local.control_plane import deliver_pending, local_registry
from mlops_kit.local.environments import environment_settings


class LocalFleetHome:
    def __init__(self, settings: LocalSettings):
        self.settings = settings.root

    def environment(self, model: ModelDeclaration, environment: str) -> LocalSettings:
        return environment_settings(self.settings, model, environment)

    def promotions(self, model: ModelDeclaration) -> list[Promotion]:
        return local_registry(self._of(model)).promotions()

    def facts(self, model: ModelDeclaration, environment: str) -> EnvironmentFacts:
        from mlops_kit.homes.local import local_alarm_states

        settings = self.environment(model, environment)
        registry = local_registry(settings)
        endpoint = settings.endpoint_name
        view = LocalEndpoints(settings.home).describe(endpoint)
        champion = serving_champion(view.variants) if view else None
        changes = [(d.version, parse_iso(d.at)) for d in registry.deployments(endpoint)]
        firing = tuple(alarm["name"] for alarm in local_alarm_states(settings, endpoint)
                       if alarm["rollback"] and alarm["state"] == "ALARM")
        version = champion.version if champion else None
        return EnvironmentFacts(champion=version, champion_since=serving_since(changes, version),
                                firing_alarms=firing,
                                blocked=frozenset(registry.blocked_versions(endpoint)))

    def record(self, model: ModelDeclaration, version: int, environment: str, *, actor: str,
               reason: str, approve: bool) -> tuple[Promotion, bool]:
        return local_registry(self._of(model)).record_promotion(
            version, environment, actor=actor, reason=reason, approve=approve)

    def deploy(self, model: ModelDeclaration, promotion: Promotion) -> dict[str, Any] | None:
        def this_promotion(pending) -> bool:
            detail = pending.event.get("detail", {})
            return (detail.get("ModelPackageGroupName") == promotion.model
                    and detail.get("ModelPackageVersion") == promotion.version
                    and detail.get("ModelLifeCycle", {}).get("Stage") == promotion.environment)

        outcomes = deliver_pending(self.settings, registry=local_registry(self._of(model)),
                                   mine=this_promotion)
        return outcomes[0].to_dict() if outcomes else None

    def _of(self, model: ModelDeclaration) -> LocalSettings:
        return replace(self.settings, model_group=model.name, use_case=model.use_case)
