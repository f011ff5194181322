"""`mlops status`, `mlops rollback`, `mlops rollforward`: what serves, and moving its traffic by hand."""

from __future__ import annotations

from typing import Optional

import typer

from mlops_kit.cli import render
from mlops_kit.cli.common import (EXIT_BUSY, EXIT_NO_CHANGE, EXIT_OK,
                                  BackendOption, EndpointOption, EnvOption, JsonOption,
                                  ModelOption, _backend,
                                  _emit_json, _fail_bad_input, console, err)


def status_command(endpoint: Optional[str] = EndpointOption, as_json: bool = JsonOption,
                   backend: str = BackendOption, model: Optional[str] = ModelOption,
                   environment: Optional[str] = EnvOption,
                   every: bool = typer.Option(False, "--all", help="The fleet: every declared "
                                              "model in every environment it deploys to.")) -> None:
    """The endpoint: variants, versions, weights, health; and the champion's lineup.

    With --all: one row per model and environment (champion, since, warm, health, last alarm).
    """
    from mlops_kit.registry.service import status

    if every:
        _fleet_status(as_json)
        return
    opened = _backend(backend, model, environment)
    name = endpoint or opened.endpoint_name
    report = status(opened.registry, opened.endpoints, name,
                    alarms=opened.alarm_states(name), cooldown=opened.cooldown)
    if as_json:
        _emit_json(report)
    else:
        console.print(render.status_panel(report))


def _fleet_status(as_json: bool) -> None:
    from mlops_kit.cli.models import open_fleet
    from mlops_kit.config import LocalSettings
    from mlops_kit.homes.local_fleet import LocalFleetHome

    fleet = open_fleet()
    rows = LocalFleetHome(LocalSettings.from_env()).fleet_status(fleet)
    if as_json:
        _emit_json({"fleet": rows, "environments": list(fleet.environment_names)})
    else:
        console.print(render.fleet_table(rows))


def _traffic_shift(kind: str, endpoint: str | None, to: int | None, reason: str,
                   actor: str | None, backend: str, as_json: bool, model: str | None = None,
                   environment: str | None = None) -> None:
    from mlops_kit.endpoints import EndpointBusyError

    opened = _backend(backend, model, environment)
    if not reason.strip():
        _fail_bad_input("--reason must say why")
    name = endpoint or opened.endpoint_name
    try:
        if opened.manual_shift is not None:
            # Durable first (the local outbox), delivered under the event lock.
            outcome = opened.manual_shift(kind, name, to, actor=actor or opened.actor,
                                          reason=reason)
        else:
            controller = opened.rollback_controller()
            with opened.serialized():
                outcome = _shift_now(controller, kind, name, to, actor or opened.actor, reason)
    except EndpointBusyError as exc:
        err.print(f"[bold red]endpoint busy:[/] {exc}; try again once it is InService")
        raise typer.Exit(EXIT_BUSY)
    if as_json:
        _emit_json(outcome.to_dict())
    elif outcome.action in ("rolled_back", "rolled_forward"):
        console.print(f"[bold green]{outcome.action.replace('_', ' ')}[/]: "
                      f"v{outcome.from_version} → v{outcome.to_version} on {name}")
    else:
        console.print(f"no change: {outcome.reason}")
    raise typer.Exit(EXIT_OK if outcome.action in ("rolled_back", "rolled_forward")
                     else EXIT_NO_CHANGE)


def rollback_command(reason: str = typer.Option(..., "--reason", help="Why (kept in the record)."),
                     to: Optional[int] = typer.Option(None, "--to",
                                                      help="A warm version; default: the newest "
                                                           "healthy fallback."),
                     endpoint: Optional[str] = EndpointOption,
                     actor: Optional[str] = typer.Option(None, "--actor"),
                     as_json: bool = JsonOption, backend: str = BackendOption,
                     model: Optional[str] = ModelOption,
                     environment: Optional[str] = EnvOption) -> None:
    """Shift traffic to a warm fallback now (weights only, no new fleet).

    Exit 0: shifted; 4: nothing changed (the reason says why); 5: endpoint busy.
    """
    _traffic_shift("rollback", endpoint, to, reason, actor, backend, as_json, model,
                   environment)


def rollforward_command(to: int = typer.Option(..., "--to", help="The warm version to serve."),
                        reason: str = typer.Option(..., "--reason"),
                        endpoint: Optional[str] = EndpointOption,
                        actor: Optional[str] = typer.Option(None, "--actor"),
                        as_json: bool = JsonOption, backend: str = BackendOption,
                        model: Optional[str] = ModelOption,
                        environment: Optional[str] = EnvOption) -> None:
    """Send traffic back to a warm version (e.g. after a rollback), and unblock it."""
    _traffic_shift("rollforward", endpoint, to, reason, actor, backend, as_json, model,
                   environment)


def _shift_now(controller, kind: str, name: str, to: int | None, actor: str, reason: str):
    if kind == "rollback":
        return controller.rollback(name, actor=actor, reason=reason, to_version=to)
    return controller.rollforward(name, to, actor=actor, reason=reason)


def register(app: typer.Typer) -> None:
    app.command("status")(status_command)
    app.command("rollback")(rollback_command)
    app.command("rollforward")(rollforward_command)
