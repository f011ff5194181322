"""`mlops promote MODEL VERSION --to ENV --reason ...`: a version trained once, promoted through
the fleet's environments in their declared order (an approval per environment, recorded with
who, when and why), deployed by that environment's controller with its own warm fallbacks."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

import typer

from mlops_kit.cli.common import (EXIT_GATE_FAILED, EXIT_NO_CHANGE, EXIT_OK,
                                  JsonOption, _emit_json, _fail_bad_input, console,
                                  opened_actor)
from mlops_kit.cli.models import open_fleet

EXIT_REFUSED = EXIT_GATE_FAILED
"""The environments' order or checks refuse the promotion (the reason says which)."""


def promote_command(model: str = typer.Argument(..., help="A declared model (models/<name>.toml)."),
                    version: int = typer.Argument(..., help="The registry version to promote."),
                    to: str = typer.Option(..., "--to", help="The environment to promote to."),
                    reason: str = typer.Option(..., "--reason", help="Why (kept in the record)."),
                    override: bool = typer.Option(False, "--override",
                                                  help="Skip the previous environment, where the "
                                                       "target declares skipAllowed."),
                    actor: Optional[str] = typer.Option(None, "--actor"),
                    as_json: bool = JsonOption) -> None:
    """Promote a version to an environment and deploy it there.

    Exit 0: promoted (and deployed); 4: already promoted there; 3: refused (order, soak,
    alarms, rolled back there); 2: bad input (unknown model, environment or version).
    """
    from mlops_kit.config import LocalSettings
    from mlops_kit.deploy.promotion import promote
    from mlops_kit.homes.local_fleet import LocalFleetHome
    from mlops_kit.fleet.loader import FleetError
    from mlops_kit.registry.base import InvalidRegistrationError, UnknownVersionError

    if not reason.strip():
        _fail_bad_input("--reason must say why")
    fleet = open_fleet()
    if to not in fleet.environment_names:
        _fail_bad_input(f"unknown environment {to!r} (cdk.json's promotionOrder: "
                        f"{', '.join(fleet.environment_names)})")
    try:
        result = promote(fleet, LocalFleetHome(LocalSettings.from_env()), model, version, to,
                         actor=actor or opened_actor(), reason=reason,
                         now=datetime.now(timezone.utc), override=override)
    except (FleetError, UnknownVersionError, InvalidRegistrationError) as exc:
        _fail_bad_input(str(exc))
    if as_json:
        _emit_json(result.to_dict())
    elif result.promoted:
        deployed = result.deployment or {}
        console.print(f"[bold green]promoted[/]: {result.model} v{version} → {to} "
                      f"({deployed.get('action', 'pending')}: {deployed.get('reason', '')})")
    else:
        label = "no change" if result.decision.already else "[bold red]refused[/]"
        console.print(f"{label}: {result.decision.reason}")
    if result.promoted:
        raise typer.Exit(EXIT_OK)
    if result.decision.allowed:
        raise typer.Exit(EXIT_NO_CHANGE)
    raise typer.Exit(EXIT_REFUSED)


def register(app: typer.Typer) -> None:
    app.command("promote")(promote_command)
