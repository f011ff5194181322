"""`mlops`: the kit's command line, one module per group of commands. Heavy libraries load
inside the commands that need them."""

from __future__ import annotations

import os

import typer

from mlops_kit.cli import monitoring, operations, serving, tracking, traffic
from mlops_kit.cli.common import (EXIT_BAD_INPUT, EXIT_BUSY, EXIT_CANNOT_WRITE,  # noqa: F401
                                  EXIT_DAMAGED_STATE, EXIT_GATE_FAILED, EXIT_NO_CHANGE, EXIT_OK,
                                  err)
from mlops_kit.cli.data import data_app
from mlops_kit.cli.pipeline import pipeline_app
from mlops_kit.cli.registry import registry_app

app = typer.Typer(help="MLOps kit: pipelines, quality gates and a model registry of record.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.add_typer(data_app, name="data")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(registry_app, name="registry")
traffic.register(app)
monitoring.register(app)
operations.register(app)
serving.register(app)
tracking.register(app)


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
