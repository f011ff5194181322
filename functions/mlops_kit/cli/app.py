"""`mlops`: the kit's command line, one module per group of commands. Heavy libraries load
inside the commands that need them."""

from __future__ import annotations

import os
import sys
from typing import Any

import typer
# Typer carries its own copy of click: its exceptions, not the click package's, are raised.
from typer._click.exceptions import ClickException, UsageError
from typer.core import TyperGroup

from mlops_kit.cli import monitoring, operations, promote, serving, tracking, traffic
from mlops_kit.cli.common import (EXIT_BAD_INPUT, EXIT_BUSY, EXIT_CANNOT_WRITE,  # noqa: F401
                                  EXIT_DAMAGED_STATE, EXIT_GATE_FAILED, EXIT_NO_CHANGE, EXIT_OK,
                                  err)
from mlops_kit.cli.data import data_app
from mlops_kit.cli.models import models_app
from mlops_kit.cli.pipeline import pipeline_app
from mlops_kit.cli.registry import registry_app

EXIT_USAGE = 64
"""The command line itself is wrong (unknown command or option, missing argument): BSD's
EX_USAGE, so scripts can tell a mistyped call from bad input (2, click's code for both)."""


class _KitGroup(TyperGroup):
    """The root command: click's standalone handling, with usage errors exiting EX_USAGE.

    Click exits 2 on a usage error inside its standalone mode, before any handler of ours
    runs; so the group runs outside it and does the standalone part itself. Every entry
    point (`mlops`, `python -m mlops_kit.cli`, tests' CliRunner) goes through here."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except UsageError as exc:  # also a bad option value, and no command (help shown)
            _show_click_error(exc)
            sys.exit(EXIT_USAGE)
        except ClickException as exc:  # e.g. an unreadable file argument: click's own code
            _show_click_error(exc)
            sys.exit(exc.exit_code)
        except typer.Abort:
            err.print("Aborted!", highlight=False)
            sys.exit(1)
        # Outside standalone mode click returns a `typer.Exit`'s code (and --help's 0) where it
        # would exit; no command returns a value of its own.
        sys.exit(code if isinstance(code, int) else EXIT_OK)


app = typer.Typer(help="MLOps kit: pipelines, quality gates and a model registry of record.",
                  cls=_KitGroup, no_args_is_help=True, pretty_exceptions_enable=False,
                  add_completion=False)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(registry_app, name="registry")
traffic.register(app)
promote.register(app)
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


def _show_click_error(exc) -> None:
    """The message click would print in standalone mode (Typer's panel when rich is there)."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # Typer has printed the help already
        return
    try:
        from typer import rich_utils
    except ImportError:  # typer without rich
        exc.show()
    else:
        rich_utils.rich_format_error(exc)


def _fatal(message: str, code: int, exc: BaseException) -> None:
    if os.environ.get("MLOPS_DEBUG"):
        import traceback

        traceback.print_exception(exc)
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise SystemExit(code)
