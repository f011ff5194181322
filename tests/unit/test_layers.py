"""Layers run one way (issue [G]): core < ports < adapters and services < homes < CLI and
handlers. A module imports only its own layer or lower ones — at the top of the file or inside
a function alike (a function-level import is still a dependency).

Within "adapters and services" the order is the order they build on each other: the AWS
clients and data helpers, the registry, the monitoring, the AWS side of monitoring, the
deployment controllers, the serving runtime and the local control plane. `local.demo` drives a
whole home, like a CLI command, and ranks with the CLI.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"

LAYERS: tuple[tuple[str, int], ...] = (
    ("mlops_kit.core", 0),
    ("mlops_kit.ports", 1), ("mlops_kit.clock", 1), ("mlops_kit.config", 1),
    ("mlops_kit.contract", 1), ("mlops_kit.contract_model", 1),
    ("mlops_kit.function_settings", 1), ("mlops_kit.retry", 1), ("mlops_kit.endpoints", 1),
    ("mlops_kit.endpoint_state", 1), ("mlops_pipelines", 1), ("mlops_kit.typed_config", 1),
    ("mlops_kit.fleet", 1),
    ("mlops_kit.data", 2), ("mlops_kit.aws", 2),
    ("mlops_kit.registry", 3),
    ("mlops_kit.tracking", 4),
    ("mlops_kit.monitoring", 5),
    ("mlops_kit.aws.monitoring", 6), ("mlops_kit.aws.ground_truth", 6),
    ("mlops_kit.aws.health", 6), ("mlops_kit.aws.probe_run", 6),
    ("mlops_kit.deploy", 7),
    ("mlops_kit.serving", 8), ("mlops_kit.local", 8), ("mlops_kit.aws.stream_scoring", 8),
    ("mlops_kit.homes", 9),
    ("mlops_kit.cli", 10), ("mlops_kit.local.demo", 10), ("mlops_kit.aws.lambda_runtime", 10),
)
HANDLERS = 11
"""functions/<name>/handler.py: the top."""


def layer(module: str) -> int | None:
    """The layer of the longest matching prefix; None for modules outside the kit."""
    matches = [(len(prefix), rank) for prefix, rank in LAYERS
               if module == prefix or module.startswith(prefix + ".")]
    return max(matches)[1] if matches else None


def module_name(path: Path) -> str:
    parts = path.relative_to(FUNCTIONS).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, module: str) -> list[tuple[str, int]]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, node.lineno))
            # `from package import submodule` depends on the submodule
            found += [(f"{target}.{alias.name}", node.lineno) for alias in node.names]
    return found


def upward_imports() -> list[str]:
    wrong = []
    for path in sorted(FUNCTIONS.rglob("*.py")):
        module = module_name(path)
        own = HANDLERS if path.name == "handler.py" and layer(module) is None else layer(module)
        if own is None:
            continue
        seen = set()
        for target, line in imported(path, module):
            rank = layer(target)
            if rank is not None and rank > own and line not in seen:
                seen.add(line)
                wrong.append(f"{path.relative_to(FUNCTIONS)}:{line} {module} (layer {own}) "
                             f"imports {target} (layer {rank})")
    return wrong


def test_no_module_imports_a_higher_layer():
    assert upward_imports() == []


@pytest.mark.parametrize("module,expected", [
    ("mlops_kit.core.gates", 0), ("mlops_kit.ports", 1), ("mlops_kit.aws.ledger", 2),
    ("mlops_kit.aws.monitoring", 6), ("mlops_kit.local.demo", 10), ("boto3", None),
])
def test_layers_are_read_by_the_longest_prefix(module, expected):
    assert layer(module) == expected


def test_the_check_sees_an_upward_import_in_a_function(tmp_path, monkeypatch):
    package = tmp_path / "mlops_kit" / "core"
    package.mkdir(parents=True)
    (tmp_path / "mlops_kit" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "bad.py").write_text("def f():\n    from mlops_kit.cli import app\n")
    import sys

    monkeypatch.setattr(sys.modules[__name__], "FUNCTIONS", tmp_path)
    assert [w.split(" ")[0] for w in upward_imports()] == ["mlops_kit/core/bad.py:2"]


def test_every_module_of_the_kit_has_a_layer():
    """A module the table does not rank would escape the check above."""
    unranked = [module_name(path) for path in sorted((FUNCTIONS / "mlops_kit").rglob("*.py"))
                if layer(module_name(path)) is None and module_name(path) != "mlops_kit"]
    assert unranked == []
