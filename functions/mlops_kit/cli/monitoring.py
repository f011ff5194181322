"""`mlops drift`, `mlops monitor`, `mlops demo`: drift reports, the local monitoring loop, the lifecycle demo."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from mlops_kit.cli import render
from mlops_kit.cli.common import (EXIT_OK, EnvOption, JsonOption, ModelOption, _emit_json,
                                  _emit_or_render, _fail_bad_input, console, err)


def drift_command(reference: Path = typer.Option(..., "--reference", help="CSV or Parquet."),
                  current: Path = typer.Option(..., "--current", help="CSV or Parquet."),
                  bins: int = typer.Option(10, "--bins", min=2),
                  score_column: str = typer.Option("score", "--score-column"),
                  schema: Optional[Path] = typer.Option(
                      None, "--schema", help="The data contract (as for `pipeline run`): its "
                                             "label and id columns are not features. Default: "
                                             "the sample data's."),
                  as_json: bool = JsonOption) -> None:
    """Per-feature PSI and KS between two files (and score PSI when a score column exists).
    The schema's label and id columns are left out, as every scoring path leaves them out."""
    from mlops_kit.monitoring.adhoc import DriftInputError, compare_files
    from mlops_pipelines.steps.schema import FRAUD_SAMPLE_SCHEMA, DatasetSchema

    try:
        contract = DatasetSchema.load(schema) if schema else FRAUD_SAMPLE_SCHEMA
    except ValueError as exc:
        _fail_bad_input(str(exc))
    try:
        report = compare_files(reference, current, bins=bins, score_column=score_column,
                               label_columns=(contract.target,),
                               id_columns=tuple(contract.id_columns))
    except DriftInputError as exc:
        _fail_bad_input(str(exc))
    _emit_or_render(report, as_json, render.drift_table)


def monitor_command(interval: float = typer.Option(60.0, "--interval", min=0.5,
                                                   help="Seconds between two runs."),
                    once: bool = typer.Option(False, "--once", help="Run once and exit."),
                    period: float = typer.Option(300.0, "--period", min=0.5,
                                                 help="Seconds one alarm period lasts locally "
                                                      "(300 as in CloudWatch; less to rehearse)."),
                    probe: bool = typer.Option(True, "--probe/--no-probe",
                                               help="Probe every variant first."),
                    as_json: bool = JsonOption, model: Optional[str] = ModelOption,
                    environment: Optional[str] = EnvOption) -> None:
    """The drift monitor, probes and alarms on a timer, against the local endpoint's capture:
    what the scheduled Lambdas and CloudWatch do in AWS. An alarm goes to the rollback
    controller."""
    import time
    from datetime import datetime, timezone

    from mlops_kit.cli.common import local_settings
    from mlops_kit.local.monitor import LocalMonitor
    from mlops_kit.monitoring.run import BaselineMissing
    from mlops_kit.serving.router import ScoringRouter

    settings = local_settings(model, environment)
    # One tick is `interval` real seconds = interval * 300 / period virtual seconds: the local
    # alarms are fitted to that schedule, as the stage's alarms are to the Lambda's.
    schedule = max(1, round(interval * 300.0 / period / 60))
    monitor = LocalMonitor(settings, time_scale=period / 300.0, schedule_minutes=schedule)
    router = ScoringRouter(settings.home, settings.endpoint_name)
    invoke = _variant_invoker(router)
    try:
        _warm_variants(router, monitor, invoke)
        while True:
            now = datetime.now(timezone.utc)
            probes = monitor.probe(invoke, now) if probe else []
            result = monitor.tick(now)
            _report_tick(_tick_summary(now, probes, result), result, as_json)
            if once:
                return
            time.sleep(interval)
    except BaselineMissing as exc:
        _fail_bad_input(str(exc))


def _variant_invoker(router):
    """`(variant, csv body) -> (status, body)` on the local endpoint, as the probes call it."""
    from mlops_kit.serving.router import ServingError
    from mlops_pipelines.steps.inference import PayloadError

    def invoke(variant: str, body: str) -> tuple[int, str]:
        try:
            return 200, router.invoke(body.encode(), "text/csv", "text/csv",
                                      target_variant=variant).body.decode()
        except PayloadError as exc:
            return 400, str(exc)
        except ServingError as exc:
            return exc.status, str(exc)

    return invoke


def _warm_variants(router, monitor, invoke) -> None:
    """Load every variant once before the first probe, so the probe measures serving, not
    the model load (the endpoint's own variants are warm the same way)."""
    table = router.refresh()
    baseline = monitor.champion_baseline()
    if table is not None and baseline is not None:
        from mlops_kit.monitoring.probe import baseline_rows

        warm_body = baseline_rows(baseline.features, baseline.feature_order)
        for name in table.variants:
            invoke(name, warm_body)


def _tick_summary(now, probes, result) -> dict:
    """One tick as `--json` prints it: the run, the probes, the alarms' changes, the actions."""
    from mlops_kit.core.metric_catalogue import FEATURE_PSI_MAX

    return {"at": now.isoformat(), "records": result.records, "skipped": result.skipped,
            "feature_psi_max": result.value(FEATURE_PSI_MAX.name),
            "probes": {r.variant_name: r.ok for r in probes},
            "alarms": [e["detail"]["alarmName"] + " → " + e["detail"]["state"]["value"]
                       for e in result.events],
            "actions": [o.to_dict() for o in result.outcomes]}


def _report_tick(summary: dict, result, as_json: bool) -> None:
    """One JSON line a tick (flushed: a reader follows the loop live), or one console line
    and the controller's actions."""
    if as_json:
        sys.stdout.write(json.dumps(summary, sort_keys=True, default=str) + "\n")
        sys.stdout.flush()
    else:
        console.print(f"{summary['at']}: records {summary['records'] or '{}'}, "
                      f"max feature PSI {summary['feature_psi_max']}, probes "
                      f"{summary['probes']}, alarms {summary['alarms'] or 'no change'}")
        for outcome in result.outcomes:
            console.print(f"  → {outcome.action}: {outcome.reason}")


def demo_command(rows: int = typer.Option(50_000, "--rows", min=20_000,
                                          help="Rows per month of training data."),
                 period: float = typer.Option(2.0, "--period", min=0.5,
                                              help="Seconds one 300 s alarm period takes."),
                 as_json: bool = JsonOption) -> None:
    """The fleet's lifecycle on this machine: pipeline v1 of every declared model (models/,
    cdk.json, read from $MLOPS_FLEET or here), promoted dev → staging → prod, fraud-detector's
    v2 promoted after it (each environment keeps v1 warm), live traffic on its prod endpoint,
    drift, alarm, automatic rollback in prod only, verified; with a timeline, the fleet table
    and a picture. State goes to $MLOPS_HOME/demo (replaced on each run)."""
    from mlops_kit.config import LocalSettings
    from mlops_kit.fleet.loader import FleetError, load_fleet
    from mlops_kit.local.demo import LIVE_ENVIRONMENT, LIVE_MODEL, Demo, demo_settings

    settings = demo_settings(LocalSettings.from_env())
    report = ((lambda line: None) if as_json else
              (lambda line: err.print(line, highlight=False, markup=False)))
    try:
        demo = Demo(settings, fleet=load_fleet(), rows=rows, period_seconds=period,
                    report=report)
        result = demo.run()
    except FleetError as exc:
        _fail_bad_input(str(exc))
    if as_json:
        _emit_json(result.to_dict())
    else:
        console.print(render.demo_summary(result))
        console.print(render.fleet_table(result.fleet))
        # The demo keeps its state apart from the user's; say how to walk the runbooks on it.
        console.print(f"explore it: export MLOPS_HOME={result.home}; then mlops status --all, "
                      f"mlops registry lineage 2, mlops rollforward --model {LIVE_MODEL} "
                      f"--env {LIVE_ENVIRONMENT} --to 2 --reason drill (docs/runbooks.md)",
                      highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(EXIT_OK if result.succeeded else 1)


def register(app: typer.Typer) -> None:
    app.command("drift")(drift_command)
    app.command("monitor")(monitor_command)
    app.command("demo")(demo_command)
