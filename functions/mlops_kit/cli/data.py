"""`mlops data`: sample data."""

from __future__ import annotations

from pathlib import Path

import typer

from mlops_kit.cli.common import (JsonOption, _emit_json, _fail_bad_input, console)


data_app = typer.Typer(help="Sample data.", no_args_is_help=True)


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
