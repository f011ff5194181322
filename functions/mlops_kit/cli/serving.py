"""`mlops serve`, `mlops batch-score`, `mlops stream`: the local endpoint and its two siblings.

All three score through `mlops_kit.serving.router.ScoringRouter`, which follows the endpoint's
state file, so a rollback moves REST, batch and streaming traffic together.

    from mlops_kit.cli import serving
    serving.register(app)   # adds the three top-level commands to the `mlops` Typer app
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from mlops_kit.cli.common import EnvOption, ModelOption

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

EndpointOption = typer.Option(
    None, "--endpoint", help="Endpoint name; default $MLOPS_ENDPOINT or fraud-scorer-local.")


def _settings(model: str | None = None, environment: str | None = None):
    from mlops_kit.cli.common import local_settings

    return local_settings(model, environment)


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def serve(
    endpoint: Optional[str] = EndpointOption,
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8080, "--port", help="TCP port; 0 picks a free one."),
    workers: Optional[int] = typer.Option(
        None, "--workers", min=1, help="Worker processes; default: one per CPU core."),
    capture_percent: float = typer.Option(
        100.0, "--capture-percent", min=0.0, max=100.0,
        help="Share of requests captured under $MLOPS_HOME/capture (SageMaker's format)."),
    drain_seconds: float = typer.Option(
        10.0, "--drain-seconds", min=0.0, help="On SIGTERM/SIGINT, time allowed to finish."),
    model: Optional[str] = ModelOption,
    environment: Optional[str] = EnvOption,
) -> None:
    """Serve the endpoint locally with the SageMaker runtime contract.

    POST /endpoints/NAME/invocations (text/csv or application/json, one or many rows; Accept
    honoured; X-Amzn-SageMaker-Target-Variant pins a variant; the response names the variant
    in X-Amzn-Invoked-Production-Variant) and GET /ping. Follows the endpoint's state file:
    weight changes apply on the next request, new variants load before they take traffic.
    """
    from mlops_kit.serving.server import ServeConfig, configure_logging, default_workers
    from mlops_kit.serving.server import serve as run_server

    settings = _settings(model, environment)
    try:
        config = ServeConfig(home=str(settings.home), endpoint=endpoint or settings.endpoint_name,
                             host=host, port=port, workers=workers or default_workers(),
                             capture_percent=capture_percent, drain_seconds=drain_seconds)
    except ValueError as exc:
        _fail(str(exc))
    configure_logging()
    try:
        code = run_server(config)
    except OSError as exc:  # e.g. the port is taken
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pass another --port "
              f"(--port 0 picks a free one)", EXIT_FAILED)
    raise typer.Exit(code)


def batch_score(
    input: Path = typer.Option(..., "--input", help="CSV or Parquet file to score."),
    output: Path = typer.Option(..., "--output", help="Output file: .csv or .parquet."),
    endpoint: Optional[str] = EndpointOption,
    chunk_rows: int = typer.Option(100_000, "--chunk-rows", min=1,
                                   help="Rows per chunk (bounds memory)."),
    variant: Optional[str] = typer.Option(
        None, "--variant", help="Score with this variant; default: the champion."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    model: Optional[str] = ModelOption,
    environment: Optional[str] = EnvOption,
) -> None:
    """Score a file with the endpoint's champion: adds score, variant and version columns.

    Chunked (bounded memory), vectorised, written atomically (nothing is left behind on error).
    """
    from mlops_kit.serving.batch import BatchInputError, score_file
    from mlops_kit.serving.router import ScoringRouter, ServingError

    settings = _settings(model, environment)
    router = ScoringRouter(settings.home, endpoint or settings.endpoint_name)
    try:
        summary = score_file(router, input, output, chunk_rows=chunk_rows, variant=variant)
    except (BatchInputError, ServingError) as exc:
        _fail(str(exc))
    finally:
        router.close()
    if as_json:
        sys.stdout.write(json.dumps(summary.to_dict(), indent=2, sort_keys=True) + "\n")
    else:
        versions = ", ".join(f"{name} (version {version})"
                             for name, version in summary.variants.items())
        typer.echo(f"scored {summary.rows:,} rows with {versions} → {output} "
                   f"({summary.rows_per_second:,.0f} rows/s)")


def stream(
    input: str = typer.Option("-", "--input", help="JSON lines file, or - for stdin."),
    output: str = typer.Option("-", "--output", help="JSON lines file, or - for stdout."),
    endpoint: Optional[str] = EndpointOption,
    capture_percent: float = typer.Option(
        0.0, "--capture-percent", min=0.0, max=100.0,
        help="Share of records captured as the endpoint would capture them."),
    model: Optional[str] = ModelOption,
    environment: Optional[str] = EnvOption,
) -> None:
    """Score JSON lines ({feature: value, ..., "inferenceId": optional}) as they arrive.

    Writes one JSON line per input line: score, variant and version, or an error record naming
    the problem (the stream goes on). Follows the state file like the endpoint does.
    Exit 0: every record scored; 2: some records could not be scored (their error records
    say why; the count is on stderr); 1: another failure.
    """
    from mlops_kit.serving.router import ScoringRouter
    from mlops_kit.serving.stream import score_stream

    settings = _settings(model, environment)
    name = endpoint or settings.endpoint_name
    router = ScoringRouter(settings.home, name)
    capture = None
    if capture_percent > 0:
        from mlops_kit.serving.capture import CaptureWriter

        capture = CaptureWriter(settings.home, name, percent=capture_percent,
                                writer_id=f"stream-{os.getpid()}")
    try:
        source = sys.stdin.buffer if input == "-" else open(input, "rb")
    except OSError as exc:
        router.close()
        _fail(f"cannot read {input}: {exc.strerror or exc}")
    try:
        sink = sys.stdout if output == "-" else open(output, "w", encoding="utf-8")
    except OSError as exc:
        router.close()
        _fail(f"cannot write {output}: {exc.strerror or exc}")
    try:
        summary = score_stream(router, source, sink, capture=capture, flush_each=input == "-")
    except KeyboardInterrupt:  # Ctrl+C ends an interactive stream: not an error worth a trace
        raise typer.Exit(130)
    finally:
        if source is not sys.stdin.buffer:
            source.close()
        if sink is not sys.stdout:
            sink.close()
        if capture is not None:
            capture.close()
        router.close()
    typer.echo(f"stream: {summary.scored:,} scored, {summary.errors:,} error record(s)"
               + (" (each names its line and the problem)" if summary.errors else ""), err=True)
    if summary.errors:
        raise typer.Exit(EXIT_BAD_INPUT)


def register(app: typer.Typer) -> None:
    """Add `serve`, `batch-score` and `stream` as top-level commands of the `mlops` app."""
    app.command("serve")(serve)
    app.command("batch-score")(batch_score)
    app.command("stream")(stream)


def _standalone() -> typer.Typer:
    app = typer.Typer(help="Local endpoint, batch and streaming scoring.", no_args_is_help=True,
                      pretty_exceptions_enable=False, add_completion=False)
    register(app)
    return app


if __name__ == "__main__":  # python -m mlops_kit.cli.serving serve ... (tests, before wiring)
    _standalone()()
