"""Run `mlops` (or deliver one alarm) in a process that SIGKILLs itself at a named point.

    python killpoint.py MODULE:QUALNAME before|after[:N] cli ARGS...
    python killpoint.py MODULE:QUALNAME before|after[:N] alarm

The target function is wrapped so the process dies (SIGKILL: no cleanup, no finally, no atexit)
right before it runs or right after it returns (on its Nth call; default the first): the faults a power cut or the OOM killer cause
between two writes. Test-only: nothing in the kit knows about it."""

from __future__ import annotations

import importlib
import os
import signal
import sys


def arm(target: str, when: str) -> None:
    module_name, _, qualname = target.partition(":")
    owner = importlib.import_module(module_name)
    *path, name = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    moment, _, nth = when.partition(":")
    calls = [0]

    def die(*args, **kwargs):
        calls[0] += 1
        armed = calls[0] == int(nth or 1)
        if armed and moment == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if armed:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, name, die)


def main() -> None:
    target, when, mode, *args = sys.argv[1:]
    arm(target, when)
    if mode == "cli":
        from mlops_kit.cli.app import main as cli

        sys.argv = ["mlops", *args]
        cli()
    elif mode == "alarm":
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from builders import alarm_event
        from mlops_kit.config import LocalSettings
        from mlops_kit.local.control_plane import publish

        publish(LocalSettings.from_env(), alarm_event())
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
