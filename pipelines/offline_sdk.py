"""The harness that lets the SageMaker Python SDK build the pipeline definition offline: no
credentials, no network, no machine-specific SDK defaults.

- `offline_sdk(region)`: the environment (region set before the SDK's first import, role
  validation off, no instance metadata), telemetry senders as no-ops and the SDK's own loggers
  quietened, all undone on exit;
- `staging_session(region, staged, refused)`: a PipelineSession on a boto3 session that refuses
  every request, whose uploads land in `staged` (bucket key -> bytes) instead of S3 and which
  ignores the machine's SDK config files (`sagemaker_config={}`);
- `staging_model_trainer_class()`: a ModelTrainer that does not ask IAM where it may stage.

The SDK is imported inside functions only: importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Iterator

from .spec import ARTIFACT_BUCKET

_ENV_FOR_SDK = {
    "AWS_DEFAULT_REGION": None,  # set to the render region
    "AWS_EC2_METADATA_DISABLED": "true",
    "SAGEMAKER_VALIDATE_ROLE": "false",
}


class OfflineError(RuntimeError):
    """The SDK tried to call AWS while rendering the definition."""


@contextlib.contextmanager
def offline_sdk(region: str) -> Iterator[None]:
    """Environment and patches that keep the SDK offline, undone on exit.

    AWS_DEFAULT_REGION must be set when `sagemaker` is first imported (a module creates a boto3
    client at import time); role validation is switched off; telemetry senders become no-ops.
    """
    saved = {name: os.environ.get(name) for name in _ENV_FOR_SDK}
    os.environ.update({name: value or region for name, value in _ENV_FOR_SDK.items()})
    patched: list[tuple[Any, str, Any]] = []
    levels: dict[logging.Logger, int] = {}
    try:
        import sagemaker.mlops.workflow  # noqa: F401  (the bulk of the SDK, with the region set)
        from sagemaker.core.telemetry import telemetry_logging

        for name in ("_send_telemetry_request", "_send_telemetry_request_sync"):
            patched.append((telemetry_logging, name, getattr(telemetry_logging, name)))
            setattr(telemetry_logging, name, _no_telemetry)
        levels = _quieten_sdk_loggers()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Running within a PipelineSession")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="sagemaker")
            yield
    finally:
        for logger, level in levels.items():
            logger.setLevel(level)
        for module, name, original in reversed(patched):
            setattr(module, name, original)
        _restore_environment(saved)


def _quieten_sdk_loggers() -> dict[logging.Logger, int]:
    """The SDK narrates every default it fills in, at INFO and DEBUG on loggers it sets up
    itself; none of it is news here. Errors still show. Returns the levels to restore."""
    levels: dict[logging.Logger, int] = {}
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name.split(".")[0] == "sagemaker" and isinstance(logger, logging.Logger):
            levels[logger] = logger.level
            logger.setLevel(logging.ERROR)
    return levels


def _restore_environment(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _no_telemetry(*_args: Any, **_kwargs: Any) -> None:
    return None


def offline_boto_session(region: str, refused: list[str]):
    """A boto3 session that cannot reach AWS: static stand-in credentials (so nothing searches
    the credential chain) and a hook that fails every request before it is sent, recording it
    in `refused` (the SDK swallows some failures; the render fails on any)."""
    import boto3
    import botocore.session

    core = botocore.session.Session()
    core.set_credentials("offline-render", "offline-render")

    def refuse(request, **_kwargs):
        refused.append(f"{request.method} {request.url}")
        raise OfflineError(f"refusing to send {request.method} {request.url} while rendering "
                           "the pipeline definition offline")

    core.register("before-send", refuse)
    return boto3.Session(botocore_session=core, region_name=region)


def _upload_files(root: Path) -> dict[str, bytes]:
    """What `upload_data` sends for `root`: the file itself, or every file below the folder
    (bytecode caches left out), by name relative to it."""
    if root.is_file():
        return {root.name: root.read_bytes()}
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def _files_digest(files: dict[str, bytes]) -> str:
    """Content address of a set of files: names and each file's SHA-256, in name order."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\0{hashlib.sha256(files[name]).hexdigest()}\n".encode())
    return digest.hexdigest()


def staging_session(region: str, staged: dict[str, bytes], refused: list[str]):
    """A PipelineSession whose uploads land in `staged` (key -> bytes) instead of S3."""
    from sagemaker.core.workflow.pipeline_context import PipelineSession

    def stage(bucket: str, key: str, data: bytes) -> None:
        if bucket != ARTIFACT_BUCKET or not key.startswith("pipeline-code/"):
            raise OfflineError(f"unexpected upload to s3://{bucket}/{key}")
        if staged.get(key, data) != data:
            raise OfflineError(f"two different objects staged at s3://{bucket}/{key}")
        staged[key] = data

    class StagingPipelineSession(PipelineSession):
        def default_bucket(self) -> str:
            return ARTIFACT_BUCKET

        def upload_data(self, path, bucket=None, key_prefix="data", callback=None,
                        extra_args=None):
            """Stage a file or directory under `pipeline-code/<digest>/<last prefix part>`."""
            bucket = bucket or ARTIFACT_BUCKET
            root = Path(path)
            files = _upload_files(root)
            label = key_prefix.rstrip("/").rsplit("/", 1)[-1]
            prefix = f"pipeline-code/{_files_digest(files)}/{label}"
            for name, data in files.items():
                stage(bucket, f"{prefix}/{name}", data)
            if root.is_file():
                return f"s3://{bucket}/{prefix}/{root.name}"
            return f"s3://{bucket}/{prefix}"

        def upload_string_as_file_body(self, body, bucket, key, kms_key=None):
            stage(bucket, key, body.encode() if isinstance(body, str) else bytes(body))
            return f"s3://{bucket}/{key}"

    session = StagingPipelineSession(boto_session=offline_boto_session(region, refused),
                                     sagemaker_config={}, default_bucket=ARTIFACT_BUCKET)
    # An empty config is falsy, so the session loaded the machine's SDK defaults files (if
    # any: /etc/xdg/sagemaker, ~/.config/sagemaker); they must not shape the definition.
    session.sagemaker_config = {}
    return session


def staging_model_trainer_class():
    """ModelTrainer that stages code in the session's default bucket without first asking IAM
    (iam:SimulatePrincipalPolicy) whether the role may write there: the CDK grants it."""
    from sagemaker.train.model_trainer import ModelTrainer

    class StagingModelTrainer(ModelTrainer):
        def _resolve_staging_bucket(self) -> tuple[str, None]:
            return self.sagemaker_session.default_bucket(), None

    return StagingModelTrainer
