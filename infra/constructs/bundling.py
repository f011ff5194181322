"""Lambda bundling without Docker: each function gets its handler.py plus exactly the modules of
the `mlops_kit` package its handler imports (transitively, read with `ast` by
`mlops_pipelines.closure`, the one bundler the pipeline code bundles use too: infra never imports
runtime code), plus the package's JSON data files in those folders; pinned third-party wheels
(only the drift monitor needs one: numpy) are installed with `pip --platform`."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from mlops_pipelines.closure import KIT_PACKAGE, package_closure

RUNTIME_PYTHON = "3.12"
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")


def module_closure(functions_dir: Path, function: str, package: str = KIT_PACKAGE) -> list[Path]:
    """Files (relative to `functions_dir`) the function needs: handler.py first, then every
    module of `package` reachable from it (`mlops_pipelines.closure`, the bundler the pipeline
    code bundles use too), their packages' __init__.py and JSON data."""
    start = functions_dir / function / "handler.py"
    modules = package_closure([start], root=functions_dir, package=package)
    data = sorted({json.relative_to(functions_dir) for rel in modules
                   for json in (functions_dir / rel).parent.glob("*.json")})
    return [start.relative_to(functions_dir)] + modules + data


@jsii.implements(ILocalBundling)
class _LocalBundler:
    def __init__(self, functions_dir: Path, files: list[Path], requirements: Path | None,
                 extra_files: dict[str, bytes] | None = None):
        self.functions_dir = functions_dir
        self.files = files
        self.requirements = requirements
        self.extra_files = extra_files or {}

    def try_bundle(self, output_dir: str, *args, **kwargs) -> bool:  # noqa: ARG002
        out = Path(output_dir)
        for rel in self.files:
            target = out / ("handler.py" if rel.name == "handler.py" and
                            rel.parts[0] != "mlops_kit" else rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.functions_dir / rel, target)
        for name, content in self.extra_files.items():
            (out / name).write_bytes(content)
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


def function_code(functions_dir: Path, function: str, requirements: Path | None = None,
                  extra_files: dict[str, bytes] | None = None) -> lambda_.Code:
    """The function's asset; `extra_files` (name → content) are written at its root (a
    fleet's routes file)."""
    files = module_closure(functions_dir, function)
    extra_files = dict(extra_files or {})
    digest = hashlib.sha256(f"{function}|{RUNTIME_PYTHON}".encode())
    for rel in files:
        digest.update(str(rel).encode() + b"\0" + (functions_dir / rel).read_bytes())
    for name, content in sorted(extra_files.items()):
        digest.update(name.encode() + b"\0" + content)
    if requirements is not None:
        digest.update(requirements.read_bytes())
    return lambda_.Code.from_asset(
        str(functions_dir / function),
        asset_hash=digest.hexdigest(), asset_hash_type=AssetHashType.CUSTOM,
        bundling=BundlingOptions(
            image=DockerImage.from_registry("local-bundling-only"),  # never pulled
            local=_LocalBundler(functions_dir, files, requirements, extra_files)))
