"""`mlops registry`: versions, approvals, lineage, retention, integrity."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mlops_kit.cli import render
from mlops_kit.cli.common import (EXIT_BUSY, EXIT_DAMAGED_STATE, EXIT_OK,
                                  BackendOption, EndpointOption, EnvOption, JsonOption,
                                  ModelOption, _backend,
                                  _emit_json, _emit_or_render, _fail_bad_input, console,
                                  err)


registry_app = typer.Typer(help="The model registry of record.", no_args_is_help=True)


@registry_app.command("list")
def registry_list(as_json: bool = JsonOption, backend: str = BackendOption,
                  include_archived: bool = typer.Option(False, "--all",
                                                        help="Include archived versions."),
                  model: Optional[str] = ModelOption,
                  environment: Optional[str] = EnvOption) -> None:
    """Versions with status, metrics and lineage."""
    registry = _backend(backend, model, environment).registry
    versions = [v for v in registry.list_versions() if include_archived or not v.archived_at]
    if as_json:
        _emit_json({"model_group": registry.model_group,
                    "versions": [v.to_dict() for v in versions]})
    else:
        console.print(render.versions_table(registry.model_group, versions))


@registry_app.command("show")
def registry_show(version: int = typer.Argument(..., help="Version number."),
                  as_json: bool = JsonOption, backend: str = BackendOption,
                  model: Optional[str] = ModelOption,
                  environment: Optional[str] = EnvOption) -> None:
    """One version in full, with its audit trail."""
    from mlops_kit.registry.base import UnknownVersionError

    registry = _backend(backend, model, environment).registry
    try:
        found = registry.get(version)
    except UnknownVersionError as exc:
        _fail_bad_input(str(exc))
    trail = registry.transitions(version)
    if as_json:
        _emit_json({**found.to_dict(), "transitions": [t.to_dict() for t in trail]})
    else:
        console.print(render.version_detail(found, trail, registry.list_versions()))


@registry_app.command("lineage")
def registry_lineage(version: int = typer.Argument(..., help="Version number."),
                     as_json: bool = JsonOption, backend: str = BackendOption,
                     model: Optional[str] = ModelOption,
                     environment: Optional[str] = EnvOption) -> None:
    """Walk data → code → run → version → deployments."""
    from mlops_kit.registry.base import UnknownVersionError
    from mlops_kit.registry.service import lineage

    try:
        walk = lineage(_backend(backend, model, environment).registry, version)
    except UnknownVersionError as exc:
        _fail_bad_input(str(exc))
    _emit_or_render(walk, as_json, render.lineage_tree)


def _change_status(version: int, status: str, reason: str, actor: str | None, backend: str,
                   as_json: bool, unarchive: bool = False, model: str | None = None,
                   environment: str | None = None) -> None:
    from mlops_kit.endpoints import EndpointBusyError
    from mlops_kit.registry.base import ApprovalStatus, RegistryError

    opened = _backend(backend, model, environment)
    if not reason.strip():
        _fail_bad_input("--reason must say why")
    who = actor or opened.actor
    try:
        current = opened.registry.get(version)
        if current.archived_at and status == "Approved":
            if not unarchive:
                _fail_bad_input(f"version {version} was archived at {current.archived_at} "
                                f"(retention): approving it would deploy a version taken out "
                                f"of use; pass --unarchive to bring it back and approve it")
            opened.registry.unarchive(version, actor=who, reason=f"unarchived to approve: "
                                                                 f"{reason}")
        updated, changed = opened.registry.set_status(
            version, ApprovalStatus(status), actor=who, reason=reason)
    except RegistryError as exc:
        _fail_bad_input(str(exc))
    try:
        if changed:
            outcomes = opened.emit_status_change(updated, reason)
        elif opened.resend_status_change is not None:
            outcomes = opened.resend_status_change(updated)
        else:
            outcomes = []
    except EndpointBusyError as exc:
        err.print(f"version {version} is {updated.status}; its deployment waits: {exc}. It is "
                  f"kept and delivered by the next `mlops` command (or run `mlops status`)",
                  highlight=False)
        raise typer.Exit(EXIT_BUSY)
    result = {"version": version, "status": str(updated.status), "changed": changed,
              "deployments": [o.to_dict() for o in outcomes]}
    if as_json:
        _emit_json(result)
        return
    if not changed and outcomes:
        console.print(f"version {version} is already {updated.status} but never deployed: "
                      f"its approval is delivered again")
    elif not changed:
        console.print(f"version {version} is already {updated.status}: nothing to do")
    else:
        console.print(f"version {version} is now [bold]{updated.status}[/] ({reason})")
    for outcome in outcomes:
        console.print(render.deployment_outcome(outcome))


@registry_app.command("approve")
def registry_approve(version: int = typer.Argument(..., help="Version number."),
                     reason: str = typer.Option(..., "--reason", help="Why (kept in the audit)."),
                     actor: Optional[str] = typer.Option(None, "--actor",
                                                         help="Who; default $MLOPS_OWNER."),
                     unarchive: bool = typer.Option(False, "--unarchive",
                                                    help="Approve a version retention archived "
                                                         "(brought back first, recorded)."),
                     as_json: bool = JsonOption, backend: str = BackendOption,
                     model: Optional[str] = ModelOption,
                     environment: Optional[str] = EnvOption) -> None:
    """Approve a version; the deployment controller promotes it (champion + warm N-1, N-2).

    Re-approving an approved version that never deployed delivers its approval again.
    Exit 0: done; 2: bad input (unknown or archived version); 5: endpoint busy (the
    deployment is kept and delivered later); 6: registry damaged; 7: cannot write."""
    _change_status(version, "Approved", reason, actor, backend, as_json, unarchive, model,
                   environment)


@registry_app.command("reject")
def registry_reject(version: int = typer.Argument(..., help="Version number."),
                    reason: str = typer.Option(..., "--reason", help="Why (kept in the audit)."),
                    actor: Optional[str] = typer.Option(None, "--actor",
                                                        help="Who; default $MLOPS_OWNER."),
                    as_json: bool = JsonOption, backend: str = BackendOption,
                    model: Optional[str] = ModelOption,
                    environment: Optional[str] = EnvOption) -> None:
    """Reject a version: it never deploys and leaves the warm fallbacks."""
    _change_status(version, "Rejected", reason, actor, backend, as_json, model=model,
                   environment=environment)


@registry_app.command("prune")
def registry_prune(dry_run: bool = typer.Option(False, "--dry-run", help="Only list."),
                   max_age_days: float = typer.Option(30.0, "--max-age-days", min=0),
                   keep: int = typer.Option(10, "--keep", min=0,
                                            help="Never-approved versions kept regardless of age."),
                   endpoint: Optional[str] = EndpointOption,
                   as_json: bool = JsonOption, backend: str = BackendOption,
                   model: Optional[str] = ModelOption,
                   environment: Optional[str] = EnvOption) -> None:
    """Archive never-approved versions past the age or beyond the K newest; never the
    champion, N-1 or N-2."""
    from mlops_kit.core.retention import RetentionPolicy
    from mlops_kit.registry.service import prune

    opened = _backend(backend, model, environment)
    decisions = prune(opened.registry, endpoint_name=endpoint or opened.endpoint_name,
                      policy=RetentionPolicy(max_age_days, keep), actor=opened.actor,
                      dry_run=dry_run)
    if as_json:
        _emit_json({"dry_run": dry_run,
                    "archived": [{"version": d.version, "reason": d.reason} for d in decisions]})
        return
    verb = "would archive" if dry_run else "archived"
    if not decisions:
        console.print("nothing to archive")
    for decision in decisions:
        console.print(f"{verb} version {decision.version}: {decision.reason}")


@registry_app.command("check")
def registry_check(as_json: bool = JsonOption) -> None:
    """Check the local registry: SQLite's integrity check, its identity, backups, pending events.

    Exit 0: healthy (or no registry yet); 6: damaged (the message says how to restore)."""
    from mlops_kit.homes.local import local_registry_only

    report = local_registry_only().check()
    if as_json:
        _emit_json(report)
    elif report["ok"]:
        state = (f"{report['versions']} version(s), {report['pending_events']} pending event(s)"
                 if report["exists"] else "no registry yet")
        console.print(f"[bold green]ok[/]: {report['database']}: {state}; "
                      f"{len(report['backups'])} backup(s)", highlight=False)
    else:
        err.print(f"[bold red]damaged:[/] {report['problem']}", highlight=False)
    raise typer.Exit(EXIT_OK if report["ok"] else EXIT_DAMAGED_STATE)


@registry_app.command("restore")
def registry_restore(source: Optional[Path] = typer.Option(None, "--from",
                                                           help="A backup file; default: the "
                                                                "newest that passes the check."),
                     force: bool = typer.Option(False, "--force",
                                                help="Replace a registry that is not damaged."),
                     as_json: bool = JsonOption) -> None:
    """Put the registry's last good backup back (taken after every change); the damaged file
    is kept beside it. Exit 0: restored; 2: the registry is healthy (use --force) or the
    backup is unusable; 6: no usable backup."""
    from mlops_kit.homes.local import local_registry_only
    from mlops_kit.ports import DamagedStateError

    registry = local_registry_only()
    if registry.check()["ok"] and not force:
        _fail_bad_input(f"{registry.db_path} passes its check: nothing to restore (--force "
                        f"replaces it anyway)")
    if source is not None and not source.is_file():
        _fail_bad_input(f"--from {source}: no such file")
    try:
        result = registry.restore(source)
    except DamagedStateError as exc:
        err.print(f"[bold red]cannot restore:[/] {exc}", highlight=False)
        raise typer.Exit(EXIT_DAMAGED_STATE)
    after = registry.check()
    result["versions"] = after.get("versions")
    if as_json:
        _emit_json(result)
    else:
        console.print(f"[bold green]restored[/] {registry.db_path} from {result['restored_from']}"
                      f" ({result['versions']} version(s))"
                      + (f"; the damaged file is kept as {result['moved_aside']}"
                         if result["moved_aside"] else ""), highlight=False)
    raise typer.Exit(EXIT_OK)
