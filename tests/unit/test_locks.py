"""`make run` installs the runtime lock only; `make test` the dev lock. The two must agree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)", re.M)


def pins(name: str) -> dict[str, str]:
    text = (ROOT / name).read_text()
    return {m.group(1).lower().split("[")[0]: m.group(2) for m in PIN.finditer(text)}


def test_the_runtime_lock_is_the_dev_lock_without_the_tools():
    runtime, dev = pins("requirements-runtime.lock"), pins("requirements.lock")
    assert {name: version for name, version in runtime.items() if dev.get(name) != version} == {}
    for tool in ("pytest", "moto", "aws-cdk-lib", "cfn-lint", "hypothesis", "cdk-nag"):
        assert tool not in runtime and tool in dev, tool


def test_every_runtime_dependency_is_pinned_in_the_runtime_lock():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = pins("requirements-runtime.lock")
    for requirement in project["dependencies"]:
        name = re.split(r"[<>=!\[ ;]", requirement, maxsplit=1)[0].lower()
        assert name in runtime, f"{name} (pyproject) is not in requirements-runtime.lock"
