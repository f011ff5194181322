"""SageMaker Model resources for a version: created once from its model package, reused.

The name is derived from the package ARN and the model's environment (`<group>-v<N>-<digest>`),
so the same version always maps to the same model, retries do not multiply models, and a name
says which version it is. A model is immutable: a model created with another environment (before
`SERVING_ENVIRONMENT` existed, or with a different one) has another digest and is not reused.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Callable

from botocore.exceptions import ClientError

from mlops_kit.endpoints import ModelSource

from .clients import error_code, error_message

MAX_NAME = 63
_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9-]+")

SERVING_ENVIRONMENT: dict[str, str] = {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"}
"""Environment of every model the kit creates, on top of the model package's own.

The XGBoost container's inference toolkit answers a request without an Accept header (or with
`*/*`) in this type, and in application/json without it; the local endpoint answers
`inference.DEFAULT_ACCEPT` (text/csv), which clients such as `float(body)` rely on. Endpoints and
batch transform share a version's model, so the two always agree too. tests/serving/
test_conformance.py runs the handlers through the toolkit with this environment."""


def _environment_key() -> str:
    return json.dumps(SERVING_ENVIRONMENT, sort_keys=True, separators=(",", ":"))


def resource_name(prefix: str, digest_source: str, *, digest_chars: int = 10) -> str:
    """A SageMaker resource name (1-63 letters, digits, hyphens; no leading/trailing hyphen)
    made of a readable prefix and a digest of what the resource holds."""
    digest = hashlib.sha256(digest_source.encode()).hexdigest()[:digest_chars]
    head = _NAME_UNSAFE.sub("-", prefix).strip("-")
    head = re.sub(r"-{2,}", "-", head)[:MAX_NAME - digest_chars - 1].strip("-")
    return f"{head}-{digest}" if head else f"m-{digest}"


def model_name(source: ModelSource) -> str:
    environment = _environment_key()
    if source.model_package_arn:
        group = source.model_package_arn.split("model-package/", 1)[-1].rsplit("/", 1)[0]
        return resource_name(f"{group}-v{source.version}",
                             f"{source.model_package_arn}\n{environment}")
    return resource_name(f"model-v{source.version}", f"{source.model_uri}\n{environment}")


def ensure_model(call: Callable[..., Any], source: ModelSource, *, execution_role_arn: str,
                 image_uri: str = "") -> str:
    """CreateModel for the version unless it exists; returns the model name.

    `call(operation, **kwargs)` runs a SageMaker operation (with the caller's retries).
    A package ARN is preferred (Containers=[{"ModelPackageName": arn}]); a bare s3:// model
    needs `image_uri`. Either way the container gets `SERVING_ENVIRONMENT`.
    """
    if not execution_role_arn:
        raise ValueError("CreateModel needs an execution role ARN")
    if source.model_package_arn:
        container: dict[str, Any] = {"ModelPackageName": source.model_package_arn}
    elif source.model_uri.startswith("s3://") and image_uri:
        container = {"Image": image_uri, "ModelDataUrl": source.model_uri}
    else:
        raise ValueError(f"version {source.version} has neither a model package ARN nor an "
                         f"s3:// model with an image URI: it cannot be served by SageMaker")
    container["Environment"] = dict(SERVING_ENVIRONMENT)
    name = model_name(source)
    try:
        call("create_model", ModelName=name, ExecutionRoleArn=execution_role_arn,
             Containers=[container])
    except ClientError as exc:
        if not (error_code(exc) == "ValidationException"
                and "already exist" in error_message(exc).lower()):
            raise
    return name
