"""`mlops pipeline`: run it here, build its SageMaker definition, start the deployed one."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from mlops_kit.cli import render
from mlops_kit.cli.common import (EXIT_GATE_FAILED, EXIT_OK,
                                  JsonOption, ModelOption, _backend,
                                  _emit_json, _fail_bad_input, _parse_params, console, err,
                                  local_settings, opened_actor)


pipeline_app = typer.Typer(help="The data → training → evaluation pipeline.",
                            no_args_is_help=True)


@pipeline_app.command("run")
def pipeline_run(
    data: Optional[Path] = typer.Option(None, "--data",
                                        help="CSV or Parquet input; default: sample data."),
    param: list[str] = typer.Option([], "--param", help="NAME=VALUE, repeatable."),
    schema: Optional[Path] = typer.Option(None, "--schema",
                                          help="Data contract JSON for your own data."),
    as_json: bool = JsonOption,
    model: Optional[str] = ModelOption,
) -> None:
    """Run preprocess → train → evaluate → gate → register on this machine.

    With `--model`, the declared model's pipeline: registered in its group, with its label
    column, gate thresholds and training parameters (each `--param` still wins), as its own
    pipeline on AWS defaults to them.

    Exit 0: a version was registered; 2: bad input (nothing registered, nothing left behind);
    3: a quality gate failed (nothing registered).
    """
    from mlops_kit.local.pipeline_runner import declared_overrides, run_pipeline
    from mlops_kit.registry.local import LocalRegistry
    from mlops_pipelines.steps._io import BadInputError

    overrides = _parse_params(param)
    settings = local_settings(model, None)
    if model is not None:
        from mlops_kit.fleet.loader import load_fleet

        overrides = {**declared_overrides(load_fleet().model(model)), **overrides}
    registry = LocalRegistry(settings.registry_root, settings.model_group)
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
