"""The fleet as the CDK app reads it (`-c fleet=true`): every model declared in `models/*.toml`
(`mlops_kit.fleet.loader`, the same reader the local home uses), every environment of
cdk.json's `promotionOrder` with its stage settings (`infra.config`, the same typed reader
the single-stage app uses: account, region, retention, alarms, promotion policy), and the
environment whose account holds the registry of record (`registryEnvironment`, default the
first of the order: versions are trained and registered there once).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from mlops_kit.fleet.declaration import ModelDeclaration
from mlops_kit.fleet.loader import Fleet, FleetError, load_fleet

from .config import ConfigError, StageConfig, load


@dataclass(frozen=True)
class FleetConfig:
    fleet: Fleet
    environments: dict[str, StageConfig]
    """Every environment's stage settings, in promotion order."""
    registry_environment: str

    @property
    def registry(self) -> StageConfig:
        return self.environments[self.registry_environment]

    def models_in(self, environment: str) -> list[ModelDeclaration]:
        return [m for m in self.fleet.models.values() if environment in m.deploy_to]

    def crosses_accounts(self, environment: str) -> bool:
        """The environment is in another account than the registry's (both accounts given:
        without accounts, every stack deploys to the deploying credentials' one)."""
        here, registry = self.environments[environment].account, self.registry.account
        return bool(here and registry and here != registry)

    def reader_accounts(self, model: ModelDeclaration) -> tuple[str, ...]:
        """The accounts that read the model's versions in the registry account."""
        return tuple(sorted({self.environments[e].account for e in model.deploy_to
                             if self.crosses_accounts(e)}))


def load_fleet_config(context: Mapping[str, Any], root: Path) -> FleetConfig:
    try:
        fleet = load_fleet(root)
    except FleetError as exc:
        raise ConfigError(str(exc)) from None
    names = fleet.environment_names
    environments = {name: load(context, name) for name in names}
    registry = context.get("registryEnvironment") or names[0]
    if registry not in environments:
        raise ConfigError(f"registryEnvironment {registry!r} is not in promotionOrder "
                          f"({', '.join(names)})")
    accounts = {name: cfg.account for name, cfg in environments.items()}
    if any(accounts.values()) and not all(accounts.values()):
        missing = ", ".join(n for n, a in accounts.items() if not a)
        raise ConfigError(f"stages.<env>.account: give every environment's account or none "
                          f"(missing: {missing}); a fleet across accounts needs them all")
    return FleetConfig(fleet, environments, registry)
