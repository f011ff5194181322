"""The local home as a fleet (`FleetHome`): the shared registry's promotions, and each
environment's endpoint, ledger and alarms under `$MLOPS_HOME/envs/<env>/`."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from mlops_kit.config import LocalSettings
from mlops_kit.core.promotion import EnvironmentFacts, Promotion
from mlops_kit.deploy.local_endpoint import LocalEndpoints
from mlops_kit.deploy.promotion import facts_from_status
from mlops_kit.fleet.declaration import ModelDeclaration
from mlops_kit.fleet.loader import Fleet, FleetError, load_fleet
from mlops_kit.local.control_plane import deliver_pending, local_registry
from mlops_kit.local.environments import environment_settings


def fleet_settings(settings: LocalSettings, model: str | None,
                   environment: str | None) -> LocalSettings:
    """The settings of a declared model (its registry group), in an environment when named;
    neither named: `settings` as they are (the single-model home)."""
    if model is None and environment is None:
        return settings
    declared = load_fleet().model(model)
    if environment is None:
        return replace(settings, model_group=declared.name, use_case=declared.use_case)
    if environment not in declared.deploy_to:
        raise FleetError(f"{declared.name} does not deploy to {environment!r} (deploy_to: "
                         f"{', '.join(declared.deploy_to)})")
    return environment_settings(settings, declared, environment)


class LocalFleetHome:
    def __init__(self, settings: LocalSettings):
        self.settings = settings.root

    def environment(self, model: ModelDeclaration, environment: str) -> LocalSettings:
        return environment_settings(self.settings, model, environment)

    def promotions(self, model: ModelDeclaration) -> list[Promotion]:
        return local_registry(self._of(model)).promotions()

    def facts(self, model: ModelDeclaration, environment: str) -> EnvironmentFacts:
        report = self.status(model, environment)
        registry = local_registry(self.environment(model, environment))
        return facts_from_status(report, registry.blocked_versions(report["endpoint"]))

    def status(self, model: ModelDeclaration, environment: str) -> dict[str, Any]:
        """`mlops status` of the model's endpoint in the environment."""
        from mlops_kit.homes.local import local_alarm_states
        from mlops_kit.registry.service import status

        settings = self.environment(model, environment)
        endpoint = settings.endpoint_name
        return status(local_registry(settings), LocalEndpoints(settings.home), endpoint,
                      alarms=local_alarm_states(settings, endpoint),
                      cooldown=timedelta(minutes=model.serving_in(environment)
                                         .rollback_cooldown_minutes))

    def fleet_status(self, fleet: Fleet) -> list[dict[str, Any]]:
        """One row per model and environment it deploys to: `mlops status --all`."""
        return [fleet_row(model.name, environment, self.status(model, environment))
                for _, model in sorted(fleet.models.items()) for environment in
                fleet.environment_names if environment in model.deploy_to]

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


def fleet_row(model: str, environment: str, report: dict[str, Any]) -> dict[str, Any]:
    """A row of the fleet table from one endpoint's status report."""
    firing = [a["name"] for a in report["alarms"] if a["state"] == "ALARM"]
    changed = [a for a in report["alarms"] if a.get("since")]
    last = max(changed, key=lambda a: a["since"]) if changed else None
    return {"model": model, "environment": environment, "endpoint": report["endpoint"],
            "champion": report["champion"], "since": report["champion_since"],
            "warm": report["lineup"][1:],
            "health": (f"ALARM: {', '.join(firing)}" if firing else
                       report["status"] if report["status"] != "InService" else "ok"),
            "last_alarm": ({"name": last["name"], "state": last["state"], "since": last["since"]}
                           if last else None),
            "last_rollback": report["last_rollback"]}
