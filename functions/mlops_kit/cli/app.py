"""`mlops`: the kit's command line. Heavy libraries load inside the commands that need them."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from mlops_kit.cli import render

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_GATE_FAILED = 3
EXIT_NO_CHANGE = 4
EXIT_BUSY = 5
EXIT_DAMAGED_STATE = 6
"""State the kit wrote before is missing or unreadable (e.g. a truncated registry.db)."""
EXIT_CANNOT_WRITE = 7
"""The kit cannot write its state (disk full, read-only): nothing was half-written."""

app = typer.Typer(help="MLOps kit: pipelines, quality gates and a model registry of record.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Sample data.", no_args_is_help=True)
pipeline_app = typer.Typer(help="The data → training → evaluation pipeline.", no_args_is_help=True)
registry_app = typer.Typer(help="The model registry of record.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(registry_app, name="registry")

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


@data_app.command("generate")
def data_generate(
    out: Path = typer.Option(..., "--out", help="Output file: .csv or .parquet."),
    rows: int = typer.Option(100_000, "--rows", min=1, help="Number of rows."),
    seed: int = typer.Option(42, "--seed", help="Random seed; same seed, same file."),
    positive_rate: float = typer.Option(0.03, "--positive-rate", help="Share of fraud rows."),
    drift: str = typer.Option("none", "--drift",
                              help="Drift to inject: none, covariate, prior or concept."),
    drift_strength: float = typer.Option(1.0, "--drift-strength", help="0 none … 1 full."),
    as_json: bool = JsonOption,
) -> None:
    """Write deterministic fraud-like sample data (2–5% positives, missing values, drift)."""
    from mlops_kit.data.synthetic import DRIFT_KINDS, DriftSpec, generate
    from mlops_pipelines.steps._io import BadInputError, write_table

    if drift not in DRIFT_KINDS:
        _fail_bad_input(f"unknown drift '{drift}'", [f"use one of {', '.join(DRIFT_KINDS)}"])
    try:
        frame = generate(rows, seed=seed, positive_rate=positive_rate,
                         drift=DriftSpec(drift, drift_strength))  # type: ignore[arg-type]
        write_table(frame, out)
    except (ValueError, BadInputError) as exc:
        _fail_bad_input(str(exc).splitlines()[0])
    summary = {"path": str(out), "rows": int(len(frame)),
               "positive_rate": float(frame["is_fraud"].mean()),
               "columns": list(frame.columns), "drift": drift, "drift_strength": drift_strength,
               "seed": seed}
    if as_json:
        _emit_json(summary)
    else:
        console.print(f"wrote {summary['rows']:,} rows to {out} "
                      f"({summary['positive_rate']:.2%} fraud, drift: {drift})")


@pipeline_app.command("run")
def pipeline_run(
    data: Optional[Path] = typer.Option(None, "--data",
                                        help="CSV or Parquet input; default: sample data."),
    param: list[str] = typer.Option([], "--param", help="NAME=VALUE, repeatable."),
    schema: Optional[Path] = typer.Option(None, "--schema",
                                          help="Data contract JSON for your own data."),
    as_json: bool = JsonOption,
) -> None:
    """Run preprocess → train → evaluate → gate → register on this machine.

    Exit 0: a version was registered; 2: bad input (nothing registered, nothing left behind);
    3: a quality gate failed (nothing registered).
    """
    from mlops_kit.config import LocalSettings
    from mlops_kit.local.pipeline_runner import run_pipeline
    from mlops_kit.registry.local import LocalRegistry
    from mlops_pipelines.steps._io import BadInputError

    overrides = _parse_params(param)
    settings = LocalSettings.from_env()
    registry = LocalRegistry(settings.home, settings.model_group)
    try:
        with render.StepProgress(err, enabled=not as_json) as progress:
            result = run_pipeline(settings, registry, data=data, overrides=overrides,
                                  schema_path=schema, reporter=progress)
    except BadInputError as exc:
        _fail_bad_input(exc.cause, exc.details)
    if as_json:
        _emit_json(result.to_dict())
    else:
        console.print(render.gate_table(result.verdicts))
        console.print(render.metrics_line(result.evaluation))
        console.print(f"report: {result.run_dir / 'evaluation' / 'report.html'}")
        if result.version:
            console.print(f"[bold green]registered[/] {result.version.model_group} "
                          f"version {result.version.version} as {result.version.status}")
        else:
            failed = ", ".join(v.gate for v in result.verdicts if not v.passed)
            console.print(f"[bold red]not registered:[/] gate(s) failed: {failed}")
    raise typer.Exit(EXIT_OK if result.version else EXIT_GATE_FAILED)


@pipeline_app.command("definition")
def pipeline_definition(
    out: Optional[Path] = typer.Option(None, "--out", help="Write here instead of stdout."),
    region: str = typer.Option("us-east-1", "--region", help="Region of the container images."),
    assets: Optional[Path] = typer.Option(
        None, "--assets", help="Also stage the code the definition points at (a folder that "
                               "mirrors the artifact bucket, for the CDK app to upload)."),
) -> None:
    """Print (or write) the SageMaker pipeline definition, generated offline and byte-stable."""
    from mlops_pipelines import definition

    if out:
        definition.write_definition(out, region=region)
        err.print(f"wrote {out}")
    else:
        sys.stdout.write(definition.render_definition(region=region))
    if assets:
        staged = definition.stage_assets(assets, region=region)
        err.print(f"staged {len(staged)} code object(s) under {assets}")


BackendOption = typer.Option("local", "--backend",
                             help="local ($MLOPS_HOME) or aws (boto3, standard credential chain).")
EndpointOption = typer.Option(None, "--endpoint", help="Endpoint name; default $MLOPS_ENDPOINT.")


def _backend(name: str):
    from mlops_kit.cli.backends import BackendError, open_backend

    try:
        return open_backend(name)
    except BackendError as exc:
        _fail_bad_input(str(exc))


@pipeline_app.command("start")
def pipeline_start(
    param: list[str] = typer.Option([], "--param", help="NAME=VALUE, repeatable."),
    backend: str = typer.Option("aws", "--backend", help="aws (the deployed pipeline)."),
    pipeline_name: Optional[str] = typer.Option(None, "--pipeline-name",
                                                help="Default: $MLOPS_PIPELINE_NAME."),
    follow: bool = typer.Option(True, "--follow/--no-follow", help="Follow the steps."),
    interval: float = typer.Option(15.0, "--interval", min=1.0, help="Seconds between polls."),
    as_json: bool = JsonOption,
) -> None:
    """Start an execution of the deployed SageMaker pipeline and follow its steps.

    Exit 0: succeeded (a version was registered); 3: a quality gate failed; 1: another failure;
    2: bad input. Locally, `mlops pipeline run` is the same pipeline.
    """
    from mlops_kit.aws.pipeline_executions import PipelineExecutions
    from mlops_pipelines import parameters
    from mlops_pipelines.definition import AWS_PARAMETERS

    if backend != "aws":
        _fail_bad_input("`pipeline start` runs the deployed pipeline (--backend aws); "
                        "run it on this machine with `mlops pipeline run`")
    name = pipeline_name or os.environ.get("MLOPS_PIPELINE_NAME", "")
    if not name:
        _fail_bad_input("no pipeline: pass --pipeline-name or set MLOPS_PIPELINE_NAME "
                        "(the Pipeline stack's PipelineName output)")
    overrides = _parse_params(param)
    aws_names = {p.name for p in AWS_PARAMETERS}
    try:
        typed = parameters.resolve({k: v for k, v in overrides.items() if k not in aws_names})
    except ValueError as exc:
        _fail_bad_input(str(exc))
    values = {k: typed[k] for k in overrides if k not in aws_names}
    values.update({k: v for k, v in overrides.items() if k in aws_names})
    if "ChampionModelUri" not in values:
        # The regression gate compares with the serving champion, as the local run does.
        opened = _backend("aws")
        champion = opened.registry.champion(opened.endpoint_name)
        if champion is not None and champion.model_uri.startswith("s3://"):
            values["ChampionModelUri"] = champion.model_uri
    executions = PipelineExecutions(name)
    arn = executions.start(values, display_name=f"mlops-cli-{opened_actor()}")
    if not follow:
        _emit_json({"execution_arn": arn}) if as_json else console.print(f"started {arn}")
        raise typer.Exit(EXIT_OK)

    def show(report) -> None:
        if not as_json:
            steps = ", ".join(f"{k}: {v['status']}" for k, v in report.steps.items())
            err.print(f"{report.status}: {steps or 'starting'}", highlight=False)

    report = executions.follow(arn, on_change=show, interval=interval)
    if as_json:
        _emit_json(report.to_dict())
    elif report.status == "Succeeded":
        console.print(f"[bold green]succeeded[/]: {arn}")
    else:
        console.print(f"[bold red]{report.status}[/]: {report.failure_reason or ''}")
    if report.status == "Succeeded":
        raise typer.Exit(EXIT_OK)
    raise typer.Exit(EXIT_GATE_FAILED if report.gate_failed else 1)


def opened_actor() -> str:
    from mlops_kit.config import LocalSettings

    return "".join(c if c.isalnum() or c == "-" else "-" for c in LocalSettings.from_env().owner)


@registry_app.command("list")
def registry_list(as_json: bool = JsonOption, backend: str = BackendOption,
                  include_archived: bool = typer.Option(False, "--all",
                                                        help="Include archived versions.")) -> None:
    """Versions with status, metrics and lineage."""
    registry = _backend(backend).registry
    versions = [v for v in registry.list_versions() if include_archived or not v.archived_at]
    if as_json:
        _emit_json({"model_group": registry.model_group,
                    "versions": [v.to_dict() for v in versions]})
    else:
        console.print(render.versions_table(registry.model_group, versions))


@registry_app.command("show")
def registry_show(version: int = typer.Argument(..., help="Version number."),
                  as_json: bool = JsonOption, backend: str = BackendOption) -> None:
    """One version in full, with its audit trail."""
    from mlops_kit.registry.base import UnknownVersionError

    registry = _backend(backend).registry
    try:
        found = registry.get(version)
    except UnknownVersionError as exc:
        _fail_bad_input(str(exc))
    trail = registry.transitions(version)
    if as_json:
        _emit_json({**found.to_dict(), "transitions": [t.to_dict() for t in trail]})
    else:
        console.print(render.version_detail(found, trail))


@registry_app.command("lineage")
def registry_lineage(version: int = typer.Argument(..., help="Version number."),
                     as_json: bool = JsonOption, backend: str = BackendOption) -> None:
    """Walk data → code → run → version → deployments."""
    from mlops_kit.registry.base import UnknownVersionError
    from mlops_kit.registry.service import lineage

    try:
        walk = lineage(_backend(backend).registry, version)
    except UnknownVersionError as exc:
        _fail_bad_input(str(exc))
    if as_json:
        _emit_json(walk)
    else:
        console.print(render.lineage_tree(walk))


def _change_status(version: int, status: str, reason: str, actor: str | None, backend: str,
                   as_json: bool, unarchive: bool = False) -> None:
    from mlops_kit.deploy.endpoints import EndpointBusyError
    from mlops_kit.registry.base import ApprovalStatus, RegistryError

    opened = _backend(backend)
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
                     as_json: bool = JsonOption, backend: str = BackendOption) -> None:
    """Approve a version; the deployment controller promotes it (champion + warm N-1, N-2).

    Re-approving an approved version that never deployed delivers its approval again.
    Exit 0: done; 2: bad input (unknown or archived version); 5: endpoint busy (the
    deployment is kept and delivered later); 6: registry damaged; 7: cannot write."""
    _change_status(version, "Approved", reason, actor, backend, as_json, unarchive)


@registry_app.command("reject")
def registry_reject(version: int = typer.Argument(..., help="Version number."),
                    reason: str = typer.Option(..., "--reason", help="Why (kept in the audit)."),
                    actor: Optional[str] = typer.Option(None, "--actor",
                                                        help="Who; default $MLOPS_OWNER."),
                    as_json: bool = JsonOption, backend: str = BackendOption) -> None:
    """Reject a version: it never deploys and leaves the warm fallbacks."""
    _change_status(version, "Rejected", reason, actor, backend, as_json)


@registry_app.command("prune")
def registry_prune(dry_run: bool = typer.Option(False, "--dry-run", help="Only list."),
                   max_age_days: float = typer.Option(30.0, "--max-age-days", min=0),
                   keep: int = typer.Option(10, "--keep", min=0,
                                            help="Never-approved versions kept regardless of age."),
                   endpoint: Optional[str] = EndpointOption,
                   as_json: bool = JsonOption, backend: str = BackendOption) -> None:
    """Archive never-approved versions past the age or beyond the K newest; never the
    champion, N-1 or N-2."""
    from mlops_kit.core.retention import RetentionPolicy
    from mlops_kit.registry.service import prune

    opened = _backend(backend)
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


@app.command("status")
def status_command(endpoint: Optional[str] = EndpointOption, as_json: bool = JsonOption,
                   backend: str = BackendOption) -> None:
    """The endpoint: variants, versions, weights, health; and the champion's lineup."""
    from mlops_kit.registry.service import status

    opened = _backend(backend)
    name = endpoint or opened.endpoint_name
    report = status(opened.registry, opened.endpoints, name,
                    alarms=opened.alarm_states(name), cooldown=opened.cooldown)
    if as_json:
        _emit_json(report)
    else:
        console.print(render.status_panel(report))


def _traffic_shift(kind: str, endpoint: str | None, to: int | None, reason: str,
                   actor: str | None, backend: str, as_json: bool) -> None:
    from mlops_kit.deploy.endpoints import EndpointBusyError

    opened = _backend(backend)
    if not reason.strip():
        _fail_bad_input("--reason must say why")
    controller = opened.rollback_controller()
    name = endpoint or opened.endpoint_name
    try:
        with opened.serialized():
            if kind == "rollback":
                outcome = controller.rollback(name, actor=actor or opened.actor, reason=reason,
                                              to_version=to)
            else:
                outcome = controller.rollforward(name, to, actor=actor or opened.actor,
                                                 reason=reason)
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


@app.command("rollback")
def rollback_command(reason: str = typer.Option(..., "--reason", help="Why (kept in the record)."),
                     to: Optional[int] = typer.Option(None, "--to",
                                                      help="A warm version; default: the newest "
                                                           "healthy fallback."),
                     endpoint: Optional[str] = EndpointOption,
                     actor: Optional[str] = typer.Option(None, "--actor"),
                     as_json: bool = JsonOption, backend: str = BackendOption) -> None:
    """Shift traffic to a warm fallback now (weights only, no new fleet).

    Exit 0: shifted; 4: nothing changed (the reason says why); 5: endpoint busy.
    """
    _traffic_shift("rollback", endpoint, to, reason, actor, backend, as_json)


@app.command("rollforward")
def rollforward_command(to: int = typer.Option(..., "--to", help="The warm version to serve."),
                        reason: str = typer.Option(..., "--reason"),
                        endpoint: Optional[str] = EndpointOption,
                        actor: Optional[str] = typer.Option(None, "--actor"),
                        as_json: bool = JsonOption, backend: str = BackendOption) -> None:
    """Send traffic back to a warm version (e.g. after a rollback), and unblock it."""
    _traffic_shift("rollforward", endpoint, to, reason, actor, backend, as_json)


@app.command("drift")
def drift_command(reference: Path = typer.Option(..., "--reference", help="CSV or Parquet."),
                  current: Path = typer.Option(..., "--current", help="CSV or Parquet."),
                  bins: int = typer.Option(10, "--bins", min=2),
                  score_column: str = typer.Option("score", "--score-column"),
                  as_json: bool = JsonOption) -> None:
    """Per-feature PSI and KS between two files (and score PSI when a score column exists)."""
    from mlops_kit.monitoring.adhoc import DriftInputError, compare_files

    try:
        report = compare_files(reference, current, bins=bins, score_column=score_column)
    except DriftInputError as exc:
        _fail_bad_input(str(exc))
    if as_json:
        _emit_json(report)
    else:
        console.print(render.drift_table(report))


@app.command("batch-transform")
def batch_transform_command(
        input_uri: str = typer.Option(..., "--input", help="s3:// prefix or object to score."),
        output_uri: str = typer.Option(..., "--output", help="s3:// prefix for the scores."),
        endpoint: Optional[str] = EndpointOption,
        instance_type: str = typer.Option("ml.m5.xlarge", "--instance-type"),
        as_json: bool = JsonOption) -> None:
    """AWS twin of `mlops batch-score`: a SageMaker Batch Transform job from the model package
    of the version serving the endpoint (needs SAGEMAKER_EXECUTION_ROLE_ARN)."""
    from mlops_kit.aws.batch_transform import BatchTransformLauncher, NoChampionError

    for name, uri in (("--input", input_uri), ("--output", output_uri)):
        if not uri.startswith("s3://"):
            _fail_bad_input(f"{name} must be an s3:// URI, got '{uri}'")
    opened = _backend("aws")
    role = os.environ.get("SAGEMAKER_EXECUTION_ROLE_ARN", "")
    if not role:
        _fail_bad_input("SAGEMAKER_EXECUTION_ROLE_ARN is required to create the transform job")
    launcher = BatchTransformLauncher(execution_role_arn=role, instance_type=instance_type)
    try:
        job = launcher.start_for_champion(opened.registry, endpoint or opened.endpoint_name,
                                          input_s3_uri=input_uri, output_s3_uri=output_uri)
    except NoChampionError as exc:
        _fail_bad_input(str(exc))
    if as_json:
        _emit_json({"transform_job": job, "input": input_uri, "output": output_uri})
    else:
        console.print(f"started Batch Transform job {job}: {input_uri} → {output_uri}")


@app.command("monitor")
def monitor_command(interval: float = typer.Option(60.0, "--interval", min=0.5,
                                                   help="Seconds between two runs."),
                    once: bool = typer.Option(False, "--once", help="Run once and exit."),
                    period: float = typer.Option(300.0, "--period", min=0.5,
                                                 help="Seconds one alarm period lasts locally "
                                                      "(300 as in CloudWatch; less to rehearse)."),
                    probe: bool = typer.Option(True, "--probe/--no-probe",
                                               help="Probe every variant first."),
                    as_json: bool = JsonOption) -> None:
    """The drift monitor, probes and alarms on a timer, against the local endpoint's capture:
    what the scheduled Lambdas and CloudWatch do in AWS. An alarm goes to the rollback
    controller."""
    import time
    from datetime import datetime, timezone

    from mlops_kit.config import LocalSettings
    from mlops_kit.local.monitor import LocalMonitor
    from mlops_kit.serving.router import ScoringRouter, ServingError
    from mlops_pipelines.steps.inference import PayloadError

    settings = LocalSettings.from_env()
    # One tick is `interval` real seconds = interval * 300 / period virtual seconds: the local
    # alarms are fitted to that schedule, as the stage's alarms are to the Lambda's.
    schedule = max(1, round(interval * 300.0 / period / 60))
    monitor = LocalMonitor(settings, time_scale=period / 300.0, schedule_minutes=schedule)
    router = ScoringRouter(settings.home, settings.endpoint_name)

    def invoke(variant: str, body: str) -> tuple[int, str]:
        try:
            return 200, router.invoke(body.encode(), "text/csv", "text/csv",
                                      target_variant=variant).body.decode()
        except PayloadError as exc:
            return 400, str(exc)
        except ServingError as exc:
            return exc.status, str(exc)

    # Load every variant once before the first probe, so the probe measures serving, not
    # the model load (the endpoint's own variants are warm the same way).
    table = router.refresh()
    baseline = monitor.champion_baseline()
    if table is not None and baseline is not None:
        from mlops_kit.monitoring.probe import baseline_rows

        warm_body = baseline_rows(baseline.features, baseline.feature_order)
        for name in table.variants:
            invoke(name, warm_body)

    while True:
        now = datetime.now(timezone.utc)
        probes = monitor.probe(invoke, now) if probe else []
        result = monitor.tick(now)
        summary = {"at": now.isoformat(), "records": result.records, "skipped": result.skipped,
                   "feature_psi_max": result.value("FeaturePSIMax"),
                   "probes": {r.variant_name: r.ok for r in probes},
                   "alarms": [e["detail"]["alarmName"] + " → " + e["detail"]["state"]["value"]
                              for e in result.events],
                   "actions": [o.to_dict() for o in result.outcomes]}
        if as_json:
            sys.stdout.write(json.dumps(summary, sort_keys=True, default=str) + "\n")
            sys.stdout.flush()
        else:
            console.print(f"{summary['at']}: records {summary['records'] or '{}'}, "
                          f"max feature PSI {summary['feature_psi_max']}, probes "
                          f"{summary['probes']}, alarms {summary['alarms'] or 'no change'}")
            for outcome in result.outcomes:
                console.print(f"  → {outcome.action}: {outcome.reason}")
        if once:
            return
        time.sleep(interval)


@app.command("demo")
def demo_command(rows: int = typer.Option(50_000, "--rows", min=20_000,
                                          help="Rows per month of training data."),
                 period: float = typer.Option(2.0, "--period", min=0.5,
                                              help="Seconds one 300 s alarm period takes."),
                 as_json: bool = JsonOption) -> None:
    """The whole lifecycle on this machine: pipeline v1 and v2, approvals, deployment with a
    warm fallback, live traffic, drift, alarm, automatic rollback, verified; with a timeline
    and a picture. State goes to $MLOPS_HOME/demo (replaced on each run)."""
    from mlops_kit.config import LocalSettings
    from mlops_kit.local.demo import Demo, demo_settings

    settings = demo_settings(LocalSettings.from_env())
    result = Demo(settings, rows=rows, period_seconds=period,
                  report=(lambda line: None) if as_json else
                  (lambda line: err.print(line, highlight=False, markup=False))).run()
    if as_json:
        _emit_json(result.to_dict())
    else:
        console.print(render.demo_summary(result))
        # The demo keeps its state apart from the user's; say how to walk the runbooks on it.
        console.print(f"explore it: export MLOPS_HOME={result.home}; then mlops status, "
                      "mlops registry lineage 2, mlops rollforward --to 2 --reason drill "
                      "(docs/runbooks.md)", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(EXIT_OK if result.succeeded else 1)



# -- the controllers' failed events and the stage's teardown (mlops_kit.aws.operations) -------

events_app = typer.Typer(help="The controllers' failed events: the stage's on-failure queue.",
                         no_args_is_help=True)
app.add_typer(events_app, name="events")

QueueUrlOption = typer.Option(..., "--queue-url",
                              help="The on-failure queue: the Control stack's "
                                   "FailedEventsQueueUrl output.")
MaxMessagesOption = typer.Option(None, "--max", min=1,
                                 help="Handle at most N messages (default: the whole queue).")


def _failed_event_queue(queue_url: str):
    from mlops_kit.aws.operations import FailedEventQueue, OperationInputError

    try:
        return FailedEventQueue(queue_url)
    except OperationInputError as exc:
        _fail_bad_input(str(exc))


def _queue_operation(run) -> Any:
    from mlops_kit.aws.operations import OperationInputError

    try:
        return run()
    except OperationInputError as exc:
        _fail_bad_input(str(exc))


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _print_queue_report(report, as_json: bool) -> None:
    """Exit 0: everything replayed, discarded or replayable (or an empty queue); 1: some
    message is left for on-call (malformed, refused, failed, or a --message-id not found)."""
    if as_json:
        _emit_json(report.to_dict())
    else:
        from rich.table import Table

        if not report.events:
            console.print(f"{report.queue_url}: no message")
        else:
            table = Table(title=f"{report.queue_url} ({report.mode})")
            # Message ids and function names are what on-call copies: fold, never cut.
            for column in ("message", "status", "function", "event", "condition", "invokes",
                           "age", "why / last error"):
                table.add_column(column, overflow="fold")
            for e in report.events:
                why = e.reason
                if e.error_message and e.status == "would_replay":
                    why = f"{e.function_error or 'error'}: {e.error_message}"
                table.add_row(e.message_id, e.status, e.function, e.subject, e.condition,
                              "" if e.invoke_count is None else str(e.invoke_count),
                              _age(e.age_seconds) if e.function else "", why)
            console.print(table)
        for message_id in report.missing_message_ids:
            err.print(f"[bold red]not found:[/] message {message_id} is not in the queue",
                      highlight=False)
        for problem in report.problems:
            err.print(f"[bold red]problem:[/] {problem}", highlight=False, markup=False)
    raise typer.Exit(EXIT_OK if report.ok else 1)


@events_app.command("list")
def events_list(queue_url: str = QueueUrlOption,
                max_messages: Optional[int] = MaxMessagesOption,
                as_json: bool = JsonOption) -> None:
    """What `events replay` would do with each message (function, event, condition, invoke
    count, age); changes nothing. Exit 0: every message is replayable; 1: some is not; 2: the
    queue cannot be reached."""
    queue = _failed_event_queue(queue_url)
    _print_queue_report(_queue_operation(lambda: queue.list(max_messages=max_messages)),
                        as_json)


@events_app.command("replay")
def events_replay(queue_url: str = QueueUrlOption,
                  dry_run: bool = typer.Option(False, "--dry-run",
                                               help="Only list (= `events list`)."),
                  max_messages: Optional[int] = MaxMessagesOption,
                  message_id: list[str] = typer.Option(
                      [], "--message-id", help="Replay only this message (repeatable)."),
                  as_json: bool = JsonOption) -> None:
    """Invoke each failed event's function again (asynchronously) with the original event,
    then delete its message; a message that is not an invocation record, or whose invoke
    fails, stays in the queue. Exit 0: all replayed (or nothing to do); 1: some not; 2: bad
    input (bad URL, unreachable queue)."""
    queue = _failed_event_queue(queue_url)
    if dry_run:
        report = _queue_operation(lambda: queue.list(max_messages=max_messages))
    else:
        report = _queue_operation(lambda: queue.replay(max_messages=max_messages,
                                                       message_ids=message_id or None))
    _print_queue_report(report, as_json)


@events_app.command("discard")
def events_discard(queue_url: str = QueueUrlOption,
                   message_id: list[str] = typer.Option(
                       ..., "--message-id", help="The message to delete unreplayed "
                                                 "(repeatable; from `events list`)."),
                   as_json: bool = JsonOption) -> None:
    """Delete the named messages without replaying them: an event on-call decided must not
    be applied any more (e.g. an alarm of an incident that is over). Exit 0: all deleted;
    1: some not found or not deleted; 2: bad input."""
    queue = _failed_event_queue(queue_url)
    _print_queue_report(_queue_operation(lambda: queue.discard(message_id)), as_json)


@app.command("teardown")
def teardown_command(
        endpoint: str = typer.Option(..., "--endpoint",
                                     help="The stage's endpoint (cdk.json endpointName)."),
        model_group: str = typer.Option(..., "--model-group",
                                        help="The stage's model group (cdk.json modelGroup)."),
        yes: bool = typer.Option(False, "--yes", help="Delete. Without it: only list."),
        wait: bool = typer.Option(True, "--wait/--no-wait",
                                  help="Wait until the endpoint is gone before deleting its "
                                       "configs and models."),
        backend: str = typer.Option("aws", "--backend", help="aws (what the controller "
                                                             "created in SageMaker)."),
        as_json: bool = JsonOption) -> None:
    """Delete what the deployment controller created, which `cdk destroy` leaves running:
    the endpoint, its endpoint configs and their models (by the kit's naming rules only;
    another endpoint's or team's resources are kept). Run it before `npx cdk destroy`.

    Exit 0: listed, or everything deleted (already gone counts); 1: something was not
    deleted (the list says what and why); 2: bad input (names, credentials, an endpoint the
    kit did not deploy)."""
    from mlops_kit.aws.operations import OperationInputError, StageTeardown

    if backend != "aws":
        _fail_bad_input("`teardown` removes what the deployment controller created in AWS "
                        "(--backend aws); a local home is a folder: remove $MLOPS_HOME")
    try:
        teardown = StageTeardown(endpoint, model_group)
        report = teardown.plan()
    except OperationInputError as exc:
        _fail_bad_input(str(exc))
    if yes and report.to_delete:
        report = teardown.apply(report, wait=wait)
    if as_json:
        _emit_json(report.to_dict())
    else:
        if not report.items:
            console.print(f"nothing of {endpoint} / {model_group} to delete")
        for item in report.items:
            if not item.delete:
                verb = "keep"
            elif not report.applied:
                verb = "would delete"
            else:
                verb = item.status.replace("_", " ")
            line = f"{verb}: {item.kind} {item.name} ({item.reason})"
            if item.error:
                line += f": {item.error}"
            console.print(line, highlight=False, markup=False, soft_wrap=True)
        if report.to_delete and not report.applied:
            console.print("nothing deleted; run again with --yes to delete", highlight=False)
    raise typer.Exit(EXIT_OK if report.ok else 1)

def _register_serving() -> None:
    from mlops_kit.cli import serving

    serving.register(app)


_register_serving()


def main() -> None:
    """Every command's errors end as a message and an exit code, never a raw traceback
    (MLOPS_DEBUG=1 shows it)."""
    import sqlite3

    from mlops_kit.ports import DamagedStateError, StateWriteError, is_write_failure

    try:
        app()
    except DamagedStateError as exc:
        _fatal(str(exc), EXIT_DAMAGED_STATE, exc)
    except StateWriteError as exc:
        _fatal(f"{exc}; nothing was half-written: free space or make it writable, then run "
               f"the command again", EXIT_CANNOT_WRITE, exc)
    except OSError as exc:
        if is_write_failure(exc):
            _fatal(f"cannot write {exc.filename or 'state'}: {exc.strerror}; free space or make "
                   f"it writable, then run the command again", EXIT_CANNOT_WRITE, exc)
        _fatal(f"{type(exc).__name__}: {exc}", 1, exc)
    except sqlite3.DatabaseError as exc:
        _fatal(f"a database of this home cannot be read ({exc}); `mlops registry check` "
               f"checks the registry", EXIT_DAMAGED_STATE, exc)
    except KeyboardInterrupt:
        raise SystemExit(130)
    except Exception as exc:
        _fatal(f"unexpected {type(exc).__name__}: {exc} (MLOPS_DEBUG=1 shows where)", 1, exc)


def _fatal(message: str, code: int, exc: BaseException) -> None:
    if os.environ.get("MLOPS_DEBUG"):
        import traceback

        traceback.print_exception(exc)
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise SystemExit(code)
