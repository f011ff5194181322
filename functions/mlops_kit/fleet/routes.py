"""Which model an event is about, and that model's settings: the routes of a fleet's control
Lambdas.

One deployment, deployment and rollback controller, drift monitor and probe serve every model
of an environment. Their own environment carries what all models share (tables, topic, role,
capture bucket); the CDK app writes the rest, per model (`EnvVar.per_model`: endpoint, group,
instance counts, schedules, ...), into a routes file in each function's bundle and names it in
`MLOPS_FLEET_ROUTES`. Both come from one rendering of the contract (`FunctionContract.environment`
then `split`), so a model's settings here are exactly what its own single-model function would
have parsed — and every model's are parsed at cold start: a bad route fails the deploy's first
invocation naming the model, not the alarm that needed it.

Without `MLOPS_FLEET_ROUTES` (a single stage, `cdk synth -c stage=...`), the function's
environment is its one route.

Standard library only: every Lambda bundle carries it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from mlops_kit.contract_model import FunctionContract, SettingsError
from mlops_kit.core.schedules import NotThisSchedule

ROUTES_ENV = "MLOPS_FLEET_ROUTES"
"""The routes file, relative to the function's code (LAMBDA_TASK_ROOT) unless absolute."""
ROUTES_FILE = "fleet_routes.json"
FORMAT = 1


class NotRouted(NotThisSchedule):
    """A scheduled run for no model of this function's (the message says why)."""


@dataclass(frozen=True)
class Route:
    model: str
    settings: Any
    """The function's typed settings for this model."""


class FleetRoutes:
    """The routes of one function: `by_model`, `by_group`, `by_endpoint`; `only` when there
    is one."""

    def __init__(self, function: str, environment: str, routes: Mapping[str, Route]):
        self.function = function
        self.environment = environment
        self.routes = dict(routes)
        self._groups = {r.settings.model_group: r for r in self.routes.values()
                        if getattr(r.settings, "model_group", None)}
        self._endpoints = {r.settings.endpoint_name: r for r in self.routes.values()}

    def __len__(self) -> int:
        return len(self.routes)

    def by_model(self, model: str) -> Route | None:
        return self.routes.get(model)

    def by_group(self, group: str) -> Route | None:
        return self._groups.get(group)

    def by_endpoint(self, endpoint: str) -> Route | None:
        return self._endpoints.get(endpoint)

    def for_schedule(self, event: Any) -> Route:
        """The model a scheduled run is for: `detail.model`, which the fleet's schedule of
        each model sets; a single-model function's own route when the event names none."""
        detail = event.get("detail") if isinstance(event, dict) else None
        model = detail.get("model") if isinstance(detail, dict) else None
        if model is None:
            if self.only is not None:
                return self.only
            raise NotRouted(f"a scheduled run of a fleet's {self.function} names its model in "
                            f"detail.model ({', '.join(sorted(self.routes))})")
        route = self.by_model(model)
        if route is None:
            raise NotRouted(f"model {model!r} has no {self.function} route here "
                            f"({', '.join(sorted(self.routes))})")
        return route

    @property
    def only(self) -> Route | None:
        """The one route of a single-model function (None in a fleet of several)."""
        return next(iter(self.routes.values())) if len(self.routes) == 1 else None

    @property
    def any(self) -> Route:
        """Some route: for what every model shares (the tables, the topic)."""
        return next(iter(self.routes.values()))


def routes_document(environment: str, function_routes: Mapping[str, Mapping[str, Mapping[str, str]]]
                    ) -> dict[str, Any]:
    """The routes file the CDK app bundles: `{model: {function: per-model variables}}`."""
    return {"format": FORMAT, "environment": environment,
            "models": {model: {fn: dict(env) for fn, env in sorted(by_function.items())}
                       for model, by_function in sorted(function_routes.items())}}


def load_routes(contract: FunctionContract, environ: Mapping[str, str] | None = None
                ) -> FleetRoutes:
    """The function's routes: from the routes file `MLOPS_FLEET_ROUTES` names, every model's
    settings parsed now; without it, the environment's one route."""
    env = os.environ if environ is None else environ
    name = (env.get(ROUTES_ENV) or "").strip()
    if not name:
        settings = contract.settings(env)
        key = getattr(settings, "model_group", None) or settings.endpoint_name
        return FleetRoutes(contract.name, "", {key: Route(key, settings)})
    path = Path(name)
    if not path.is_absolute():
        path = Path(env.get("LAMBDA_TASK_ROOT") or Path.cwd()) / path
    document = _read(path)
    shadowed = sorted(var.name for var in contract.env if var.per_model and env.get(var.name))
    if shadowed:
        raise SettingsError(f"{contract.name}: {', '.join(shadowed)} set in the environment "
                            f"and per model in {path}: the routes file alone says it")
    routes = {}
    for model, by_function in sorted(document["models"].items()):
        own = by_function.get(contract.name)
        if own is None:
            continue
        try:
            settings = contract.settings({**env, **own})
        except SettingsError as exc:
            raise SettingsError(f"{path}: model {model}: {exc}") from None
        routes[model] = Route(model, settings)
    if not routes:
        raise SettingsError(f"{path}: no model has a route for {contract.name}")
    return FleetRoutes(contract.name, document["environment"], routes)


def _read(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        raise SettingsError(f"{ROUTES_ENV}: cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise SettingsError(f"{ROUTES_ENV}: {path} is not JSON: {exc}") from None
    if (not isinstance(document, dict) or document.get("format") != FORMAT
            or not isinstance(document.get("models"), dict)
            or not isinstance(document.get("environment"), str)):
        raise SettingsError(f"{ROUTES_ENV}: {path} is not a routes file of format {FORMAT} "
                            f"(format, environment, models)")
    return document
