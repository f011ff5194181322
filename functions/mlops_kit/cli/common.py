"""What every `mlops` command shares: exit codes, consoles, options, the backend opener."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

import typer
from rich.console import Console

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_GATE_FAILED = 3
EXIT_NO_CHANGE = 4
EXIT_BUSY = 5
EXIT_DAMAGED_STATE = 6
"""State the kit wrote before is missing or unreadable (e.g. a truncated registry.db)."""
EXIT_CANNOT_WRITE = 7
"""The kit cannot write its state (disk full, read-only): nothing was half-written."""

# Tables are wide; when output goes to a file or pipe, do not squeeze them into 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

JsonOption = typer.Option(False, "--json", help="Print the result as JSON on stdout.")


def _fail_bad_input(cause: str, details: list[str] | None = None) -> None:
    err.print(f"[bold red]error:[/] {cause}", highlight=False)
    for detail in details or []:
        err.print(f"  - {detail}", highlight=False, markup=False)
    raise typer.Exit(EXIT_BAD_INPUT)


def _parse_params(items: list[str]) -> dict[str, str]:
    """Repeated --param NAME=VALUE options; exit 2 naming a malformed one."""
    overrides: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            _fail_bad_input(f"--param expects NAME=VALUE, got '{item}'")
        overrides[name.strip()] = value.strip()
    return overrides


def _emit_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")


def _emit_or_render(document: Any, as_json: bool, renderer: Callable[[Any], Any]) -> None:
    """`--json`: the document on stdout; otherwise what `renderer` makes of it, on the console."""
    if as_json:
        _emit_json(document)
    else:
        console.print(renderer(document))


BackendOption = typer.Option("local", "--backend",
                             help="local ($MLOPS_HOME) or aws (boto3, standard credential chain).")
EndpointOption = typer.Option(None, "--endpoint", help="Endpoint name; default $MLOPS_ENDPOINT.")


ModelOption = typer.Option(None, "--model",
                           help="A declared model (models/<name>.toml); default: the only one, "
                                "or the single-model home ($MLOPS_MODEL_GROUP).")
EnvOption = typer.Option(None, "--env", help="An environment of the fleet (cdk.json's "
                                             "promotionOrder): its endpoint of the model.")


def _backend(name: str, model: str | None = None, environment: str | None = None):
    from mlops_kit.cli.backends import BackendError, open_backend

    try:
        return open_backend(name, model=model, environment=environment)
    except BackendError as exc:
        _fail_bad_input(str(exc))


def opened_actor() -> str:
    from mlops_kit.config import LocalSettings

    return "".join(c if c.isalnum() or c == "-" else "-" for c in LocalSettings.from_env().owner)


def local_settings(model: str | None = None, environment: str | None = None):
    """The local home's settings, of one declared model in one environment when named."""
    from mlops_kit.config import LocalSettings
    from mlops_kit.fleet.loader import FleetError
    from mlops_kit.homes.local_fleet import fleet_settings

    try:
        return fleet_settings(LocalSettings.from_env(), model, environment)
    except FleetError as exc:
        _fail_bad_input(str(exc))
