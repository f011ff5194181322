"""`mlops ui`: the MLflow UI on this home's tracking store, the scientist's view of the runs."""

from __future__ import annotations

import os
import sys

import typer

from mlops_kit.cli.common import _fail_bad_input, err


def ui_command(port: int = typer.Option(5000, "--port", min=1, max=65535),
               host: str = typer.Option("127.0.0.1", "--host",
                                        help="Interface to listen on (0.0.0.0: every one).")
               ) -> None:
    """The MLflow UI on $MLOPS_HOME's store: every pipeline run with its parameters, training
    curves, evaluation metrics, gate verdicts and report, and the registry's versions with
    their champion, n-1 and n-2 aliases. After `make run`:
    `MLOPS_HOME=.mlops/demo mlops ui`."""
    from mlops_kit.config import LocalSettings

    settings = LocalSettings.from_env()
    store = settings.home / "mlflow.db"
    if not store.is_file():
        # `mlflow ui` would create an empty store here and show nothing.
        _fail_bad_input(f"no MLflow store in {settings.home} (MLOPS_HOME): run `mlops pipeline "
                        f"run` there first, or point MLOPS_HOME at a home that has runs "
                        f"(after `make run`: MLOPS_HOME=.mlops/demo)")
    err.print(f"MLflow UI on http://{host}:{port} for {store} (Ctrl+C stops it)",
              highlight=False)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", settings.mlflow_uri,
               "--default-artifact-root", settings.mlflow_artifact_root,
               "--host", host, "--port", str(port),
               # One scientist's view: one worker starts in a quarter of the time of MLflow's
               # default four (each imports MLflow) and answers the UI's requests well.
               "--workers", "1"]
    sys.stdout.flush()
    os.execv(sys.executable, command)


def register(app: typer.Typer) -> None:
    app.command("ui")(ui_command)
