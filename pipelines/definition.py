"""The SageMaker Pipeline definition, generated offline and byte-identical on every run.

    PreprocessData (Processing) -> TrainModel (Training, script mode) -> EvaluateModel
    (Processing, PropertyFile evaluation.json) -> CheckQualityGates (Condition, every gate of
    mlops_kit.core.gates.GATES) -> RegisterModel (ModelStep: ModelBuilder.register)
                                 \\-> FailQualityGates (Fail, names the failed gates)

Built with the SageMaker Python SDK v3 (one builder per step: `sagemaker_steps.py`) under a
PipelineSession that never leaves this process: no credentials, no network (the harness:
`offline_sdk.py`). Values only known at deployment appear as the placeholders of
`PLACEHOLDERS` (CloudFormation `Fn::Sub` syntax), which the CDK app substitutes. Everything the
definition points at in the artifact bucket (code bundles, the SDK's helper scripts) is staged
under content-addressed keys `pipeline-code/<sha256>/...` by `stage_assets`, as a directory tree
that mirrors the bucket, for the CDK app to upload as an asset.

Public API (the `mlops pipeline definition` command calls these):
    render_definition(region) -> str        the JSON text
    write_definition(path, region) -> Path  written atomically
    stage_assets(out_dir, region) -> list   every staged object, at its bucket key
    build_code_bundle(out_dir) -> (Path, sha256)
and the names of `spec.py` (step names, placeholders, AWS_PARAMETERS...), re-exported here.

The SageMaker SDK is imported inside functions only: importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from . import bundle
from .offline_sdk import OfflineError, offline_sdk
from .sagemaker_steps import build_pipeline
from .spec import (ARTIFACT_BUCKET, AWS_PARAMETERS, DEFAULT_REGION,
                   EVALUATE_MAX_RUNTIME_S, EVALUATION_FILE, EVALUATION_OUTPUT,
                   EVALUATION_PROPERTY_FILE, FAIL_MESSAGE_PREFIX, FAILED_GATES_JSON_PATH,
                   INFERENCE_INSTANCE_TYPES, MODEL_PACKAGE_GROUP, PAYLOAD_TYPES, PIPELINE_NAME,
                   PLACEHOLDERS, PREPROCESS_MAX_RUNTIME_S, PREPROCESS_OUTPUTS,
                   REGISTERED_METRICS, STEP_EVALUATE, STEP_FAIL, STEP_GATES, STEP_PREPROCESS,
                   STEP_REGISTER, STEP_TRAIN, TEXT_SUBSTITUTIONS, TRAIN_MAX_RUNTIME_S,
                   TRANSFORM_INSTANCE_TYPES, VOLUME_SIZE_GB, XGBOOST_FRAMEWORK_VERSION,
                   AwsParameter)

__all__ = [
    "render_definition", "write_definition", "stage_assets", "build_code_bundle", "main",
    "OfflineError", "DEFINITION_PATH", "BUILD_DIR", "ASSETS_DIR",
    # from spec.py, importable from here as they always were
    "ARTIFACT_BUCKET", "AWS_PARAMETERS", "AwsParameter", "DEFAULT_REGION",
    "EVALUATE_MAX_RUNTIME_S", "EVALUATION_FILE", "EVALUATION_OUTPUT", "EVALUATION_PROPERTY_FILE",
    "FAIL_MESSAGE_PREFIX", "FAILED_GATES_JSON_PATH", "INFERENCE_INSTANCE_TYPES",
    "MODEL_PACKAGE_GROUP", "PAYLOAD_TYPES", "PIPELINE_NAME", "PLACEHOLDERS",
    "PREPROCESS_MAX_RUNTIME_S", "PREPROCESS_OUTPUTS", "REGISTERED_METRICS", "STEP_EVALUATE",
    "STEP_FAIL", "STEP_GATES", "STEP_PREPROCESS", "STEP_REGISTER", "STEP_TRAIN",
    "TRAIN_MAX_RUNTIME_S", "TRANSFORM_INSTANCE_TYPES", "VOLUME_SIZE_GB",
    "XGBOOST_FRAMEWORK_VERSION",
]

DEFINITION_PATH = Path(__file__).resolve().with_name("definition.json")
BUILD_DIR = Path(__file__).resolve().with_name("build")
ASSETS_DIR = BUILD_DIR / "artifact-bucket"
"""Default `stage_assets` target: its tree mirrors the artifact bucket (keys = relative paths)."""


# ----------------------------------------------------------------------------------------------
# Public API


def render_definition(region: str = DEFAULT_REGION) -> str:
    """The pipeline definition as JSON text: sorted keys, two-space indent, trailing newline."""
    return _render(region).text


def write_definition(path: str | os.PathLike = DEFINITION_PATH,
                     region: str = DEFAULT_REGION) -> Path:
    """Write the definition atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    _write_atomic(path, render_definition(region).encode())
    return path


def stage_assets(out_dir: str | os.PathLike = ASSETS_DIR,
                 region: str = DEFAULT_REGION) -> list[Path]:
    """Write every object the definition references in the artifact bucket under `out_dir`,
    each at its bucket key; returns the written paths, sorted. Keys are content-addressed
    (`pipeline-code/<sha256>/...`), so uploading the tree never replaces what an older
    definition still points at."""
    out_dir = Path(out_dir)
    written = []
    for key, data in sorted(_render(region).staged.items()):
        _write_atomic(out_dir / key, data)
        written.append(out_dir / key)
    return written


def build_code_bundle(out_dir: str | os.PathLike = ASSETS_DIR) -> tuple[Path, str]:
    """Build the steps bundle; returns its path under `out_dir` and its SHA-256."""
    steps = bundle.steps_bundle()
    return steps.write(out_dir), steps.sha256


# ----------------------------------------------------------------------------------------------
# Rendering


@dataclass(frozen=True)
class _Rendered:
    text: str
    staged: dict[str, bytes]


_render_lock = threading.Lock()
_cache: dict[tuple[str, str], _Rendered] = {}


def _render(region: str) -> _Rendered:
    steps_bundle, inference_bundle = bundle.steps_bundle(), bundle.inference_bundle()
    cache_key = (region, hashlib.sha256(steps_bundle.tar + inference_bundle.tar).hexdigest())
    with _render_lock:
        if cache_key not in _cache:
            staged = {steps_bundle.key: steps_bundle.data,
                      inference_bundle.key: inference_bundle.data}
            refused: list[str] = []
            with offline_sdk(region):
                definition = build_pipeline(region, steps_bundle, inference_bundle,
                                            staged, refused).definition()
            if refused:
                raise OfflineError("the SageMaker SDK tried to call AWS while rendering: "
                                   + "; ".join(refused))
            _cache[cache_key] = _Rendered(_canonical_text(definition), staged)
        return _cache[cache_key]


def _canonical_text(definition: str) -> str:
    text = json.dumps(json.loads(definition), indent=2, sort_keys=True, ensure_ascii=False)
    for sentinel, placeholder in TEXT_SUBSTITUTIONS.items():
        text = text.replace(sentinel, placeholder)
    if "mlops-kit-placeholder" in text:
        raise RuntimeError("a placeholder stand-in leaked into the definition")
    return text + "\n"


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """`python -m mlops_pipelines.definition [--out PATH] [--assets DIR] [--region R]`."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", default=str(DEFINITION_PATH))
    parser.add_argument("--assets", default="", help="also stage the referenced objects here")
    parser.add_argument("--region", default=DEFAULT_REGION)
    args = parser.parse_args(argv)
    print(write_definition(args.out, args.region))
    if args.assets:
        print(f"{len(stage_assets(args.assets, args.region))} object(s) staged under "
              f"{args.assets}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
