"""The one bundler's core: which `mlops_kit` modules a piece of shipped code needs.

Every bundle the kit builds (each Lambda's asset in infra/constructs/bundling.py, the steps and
inference tarballs in pipelines/bundle.py) ships its entry files plus the import closure of the
kit's package over them, read with `ast` (nothing is imported: infra never imports runtime code).
Every import form counts, at any depth (a lazy import inside a function too), and each module
brings the `__init__.py` of every package above it.

Standard library only: the CDK app and the `mlops` CLI both import it cheaply.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterable

FUNCTIONS_DIR = Path(__file__).resolve().parents[1] / "functions"
"""Where the kit's package lives (`functions/mlops_kit`)."""
KIT_PACKAGE = "mlops_kit"


def imported_names(source: bytes | str, package: list[str] | None) -> set[str]:
    """Dotted names a module imports. `from a import b` gives `a` and `a.b` (b may be a
    module). Relative imports resolve against `package` (the module's package as path parts);
    with None (a file outside the searched root) they are left out."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level and package is None:
                continue
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def package_closure(sources: Iterable[Path], *, root: Path = FUNCTIONS_DIR,
                    package: str = KIT_PACKAGE) -> list[Path]:
    """Files of `package` (under `root`) that `sources` import, directly or through each
    other, with their packages' `__init__.py`; sorted, relative to `root`. A source inside
    `root` is itself part of the answer only when it belongs to `package`."""
    root = root.resolve()
    seen: set[Path] = set()
    todo = [Path(source).resolve() for source in sources]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        parts = _parts_under(path, root)
        if parts is not None:
            for depth in range(1, len(parts)):
                init = root.joinpath(*parts[:depth], "__init__.py")
                if init.exists():
                    todo.append(init)
        for name in imported_names(path.read_bytes(), parts and list(parts[:-1])):
            if name.split(".")[0] != package:
                continue
            candidate = root / name.replace(".", "/")
            for found in (candidate / "__init__.py", candidate.with_suffix(".py")):
                if found.exists():
                    todo.append(found)
                    break
    return sorted(path.relative_to(root) for path in seen
                  if (_parts_under(path, root) or ("",))[0] == package)


def _parts_under(path: Path, root: Path) -> tuple[str, ...] | None:
    try:
        return path.relative_to(root).parts
    except ValueError:
        return None
