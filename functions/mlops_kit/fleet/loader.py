"""Reading the fleet's declarations: `models/<name>.toml` (one model each) and the promotion order
and per-environment policy in cdk.json's context (`promotionOrder`, `stages.<env>.promotion`),
the same file the CDK app reads. Every error names the file and the key.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import StrictBool, StrictInt, ValidationError

from mlops_kit.core.promotion import EnvironmentPolicy
from mlops_kit.fleet.declaration import ModelDeclaration
from mlops_kit.typed_config import CamelDeclared, at_least, problems

FLEET_ENV = "MLOPS_FLEET"
"""The folder holding `models/` and `cdk.json` (default: the current directory)."""


class FleetError(ValueError):
    """A declaration is missing or malformed; the message names the file and the key."""


class PromotionPolicy(CamelDeclared):
    """`stages.<env>.promotion` in cdk.json: what the environment asks before a promotion."""

    soak_minutes: Annotated[StrictInt, at_least(0)] = 0
    """Minutes the version must have been the previous environment's champion, healthy."""
    skip_allowed: StrictBool = False
    """`mlops promote --override` may skip the previous environment."""


@dataclass(frozen=True)
class Fleet:
    models: dict[str, ModelDeclaration]
    environments: tuple[EnvironmentPolicy, ...]
    """Every environment, in promotion order."""
    root: Path

    @property
    def environment_names(self) -> tuple[str, ...]:
        return tuple(policy.name for policy in self.environments)

    def model(self, name: str | None) -> ModelDeclaration:
        """The named model; with no name, the only one (an error names the choices)."""
        if name is None:
            if len(self.models) == 1:
                return next(iter(self.models.values()))
            raise FleetError(f"{len(self.models)} models are declared: name one with --model "
                             f"({', '.join(sorted(self.models))})")
        if name not in self.models:
            raise FleetError(f"no model {name!r} is declared in {self.root / 'models'} "
                             f"(declared: {', '.join(sorted(self.models)) or 'none'})")
        return self.models[name]


def fleet_root(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get(FLEET_ENV) or ".").expanduser().absolute()


def load_fleet(root: Path | None = None) -> Fleet:
    root = root or fleet_root()
    environments = load_environments(root / "cdk.json")
    models = load_models(root / "models")
    names = {policy.name for policy in environments}
    for model in models.values():
        unknown = [env for env in model.deploy_to if env not in names]
        if unknown:
            raise FleetError(f"{root / 'models' / (model.name + '.toml')}: deploy_to names "
                             f"{', '.join(unknown)}, not in cdk.json's promotionOrder "
                             f"({', '.join(sorted(names))})")
        order = [env for env in environments if env.name in model.deploy_to]
        if [env.name for env in order] != list(model.deploy_to):
            raise FleetError(f"{root / 'models' / (model.name + '.toml')}: deploy_to must list "
                             f"environments in promotion order "
                             f"({', '.join(env.name for env in order)})")
    return Fleet(models, environments, root)


def load_models(folder: Path) -> dict[str, ModelDeclaration]:
    if not folder.is_dir():
        raise FleetError(f"{folder} does not exist: declare each model in {folder}/<name>.toml")
    models = {}
    for path in sorted(folder.glob("*.toml")):
        model = load_model(path)
        models[model.name] = model
    if not models:
        raise FleetError(f"{folder} holds no <name>.toml: declare at least one model")
    return models


def load_model(path: Path) -> ModelDeclaration:
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise FleetError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise FleetError(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        model = ModelDeclaration.model_validate(raw)
    except ValidationError as exc:
        raise FleetError(f"{path}: {problems(exc)}") from None
    if model.name != path.stem:
        raise FleetError(f"{path}: name {model.name!r} must be the file's name ({path.stem!r})")
    return model


def load_environments(cdk_json: Path) -> tuple[EnvironmentPolicy, ...]:
    try:
        context = json.loads(cdk_json.read_text())["context"]
    except (OSError, ValueError, KeyError) as exc:
        raise FleetError(f"{cdk_json}: cannot read its context ({exc})") from None
    order = context.get("promotionOrder")
    stages = context.get("stages") or {}
    if not isinstance(order, list) or not order or not all(isinstance(n, str) for n in order):
        raise FleetError(f"{cdk_json}: promotionOrder must list the environments in order")
    policies = []
    for name in order:
        if name not in stages:
            raise FleetError(f"{cdk_json}: promotionOrder names {name!r}, which is not in "
                             f"stages ({', '.join(stages)})")
        try:
            policy = PromotionPolicy.model_validate(stages[name].get("promotion") or {})
        except ValidationError as exc:
            raise FleetError(f"{cdk_json}: "
                             f"{problems(exc, ('stages', name, 'promotion'))}") from None
        policies.append(EnvironmentPolicy(name, policy.soak_minutes, policy.skip_allowed))
    return tuple(policies)
