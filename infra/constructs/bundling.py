"""Lambda bundling without Docker: each function gets its handler.py plus exactly the modules of
the pure `mlops_kit` package its handler imports (transitively, read with `ast`: infra never
imports runtime code), plus the package's JSON data files in those folders; pinned third-party
wheels (only the drift monitor needs one: numpy) are installed with `pip --platform`."""

from __future__ import annotations

import ast
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

RUNTIME_PYTHON = "3.12"
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")


def _imports(path: Path, root: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    package = list(path.parent.relative_to(root).parts)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def module_closure(functions_dir: Path, function: str, package: str = "mlops_kit") -> list[Path]:
    """Files (relative to `functions_dir`) the function needs: handler.py first, then every
    module of `package` reachable from it, their packages' __init__.py and JSON data."""
    root = functions_dir
    start = root / function / "handler.py"
    seen: set[Path] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        parts = path.relative_to(root).parts
        for depth in range(1, len(parts)):
            init = root.joinpath(*parts[:depth], "__init__.py")
            if init.exists():
                todo.append(init)
        for name in _imports(path, root if path != start else root):
            if not name.split(".")[0] == package:
                continue
            candidate = root / name.replace(".", "/")
            for found in (candidate / "__init__.py", candidate.with_suffix(".py")):
                if found.exists():
                    todo.append(found)
                    break
    modules = sorted(p for p in seen if p != start)
    data = sorted({json for p in modules for json in p.parent.glob("*.json")})
    return [start.relative_to(root)] + [p.relative_to(root) for p in modules + data]


@jsii.implements(ILocalBundling)
class _LocalBundler:
    def __init__(self, functions_dir: Path, files: list[Path], requirements: Path | None):
        self.functions_dir = functions_dir
        self.files = files
        self.requirements = requirements

    def try_bundle(self, output_dir: str, *args, **kwargs) -> bool:  # noqa: ARG002
        out = Path(output_dir)
        for rel in self.files:
            target = out / ("handler.py" if rel.name == "handler.py" and
                            rel.parts[0] != "mlops_kit" else rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.functions_dir / rel, target)
        if self.requirements is not None:
            command = [sys.executable, "-m", "pip", "install", "--quiet",
                       "--disable-pip-version-check", "--no-compile", "--only-binary=:all:",
                       "--implementation", "cp", "--python-version", RUNTIME_PYTHON,
                       "--target", str(out), "-r", str(self.requirements)]
            for platform in PLATFORMS:
                command[4:4] = ["--platform", platform]
            subprocess.run(command, check=True)
            for junk in list(out.glob("*.dist-info")) + list(out.glob("**/tests")):
                if junk.is_dir():
                    shutil.rmtree(junk)
        return True


def function_code(functions_dir: Path, function: str,
                  requirements: Path | None = None) -> lambda_.Code:
    files = module_closure(functions_dir, function)
    digest = hashlib.sha256(f"{function}|{RUNTIME_PYTHON}".encode())
    for rel in files:
        digest.update(str(rel).encode() + b"\0" + (functions_dir / rel).read_bytes())
    if requirements is not None:
        digest.update(requirements.read_bytes())
    return lambda_.Code.from_asset(
        str(functions_dir / function),
        asset_hash=digest.hexdigest(), asset_hash_type=AssetHashType.CUSTOM,
        bundling=BundlingOptions(
            image=DockerImage.from_registry("local-bundling-only"),  # never pulled
            local=_LocalBundler(functions_dir, files, requirements)))
