"""What a version is made of: code version, step-script digests, library versions."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

import mlops_kit

LIBRARIES = ("xgboost-cpu", "numpy", "pandas", "pyarrow", "scikit-learn", "pandera", "mlflow",
             "mlops-kit")
SAGEMAKER_XGBOOST_FRAMEWORK = "xgboost:3.0-5"


def step_script_digests() -> dict[str, str]:
    """sha256 of every file in the code bundle the pipeline's containers run."""
    import hashlib

    from mlops_pipelines.bundle import inference_files, steps_files

    files = {**steps_files(), **inference_files()}
    return {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())}


def code_version() -> str:
    """The git commit of the checkout, marked dirty when files differ; else the package version."""
    root = Path(mlops_kit.__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"], check=True, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"mlops-kit {mlops_kit.__version__}"
    return f"git:{commit}{'-dirty' if dirty else ''}"


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def container_image() -> dict[str, str]:
    return {
        "local": f"python {platform.python_version()} on {platform.machine()} "
                 f"(xgboost {library_versions().get('xgboost-cpu', '?')})",
        "sagemaker_framework": SAGEMAKER_XGBOOST_FRAMEWORK,
    }
