"""A version as a SageMaker model package: the CreateModelPackage request of a registration,
and a version read back from a described package (with the ledger's record where there is one).

Packages registered by the SageMaker pipeline (not through `register`) have no ledger record:
they are read from the package itself, with metrics and lineage as the metadata carries them.
No calls here: `SageMakerRegistry` describes and sends.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Mapping

from mlops_kit.core.timestamps import iso_millis

from .base import ApprovalStatus, ModelVersion, RegistrationRequest
from .sagemaker_metadata import KEY_OWNER, KEY_RUN, KEY_USE_CASE, PREFIX, customer_metadata, \
    package_facts

if TYPE_CHECKING:
    from .sagemaker import SageMakerRegistry


def package_request(registry: "SageMakerRegistry", request: RegistrationRequest,
                    now: str) -> dict[str, Any]:
    """CreateModelPackage's arguments for `request`, registered at `now`, in `registry`'s group
    with its inference image, content types, instance types and environment."""
    lineage = request.lineage
    generated_by = str(lineage.get("pipeline_execution_arn") or lineage.get("pipeline_run")
                       or request.training_run_id)
    metadata = {"GeneratedBy": generated_by[:1024]}
    code = lineage.get("code")
    if isinstance(code, Mapping):
        if code.get("version"):
            metadata["CommitId"] = str(code["version"])[:1024]
        if code.get("repository"):
            metadata["Repository"] = str(code["repository"])[:1024]
    body: dict[str, Any] = {
        "ModelPackageGroupName": registry.model_group,
        "ModelPackageDescription": (request.description or
                                    f"training run {request.training_run_id}")[:1024],
        "InferenceSpecification": _inference_specification(registry, request),
        "ModelApprovalStatus": str(ApprovalStatus.PENDING),
        "MetadataProperties": metadata,
        "CustomerMetadataProperties": customer_metadata(
            request, registered_at=now,
            record_store=f"dynamodb:{registry.ledger.table_name}"),
        "Domain": registry.domain, "Task": registry.task,
    }
    evaluation = _s3_uri(lineage.get("evaluation_uri"))
    baseline = _s3_uri(lineage.get("baseline_uri") or lineage.get("drift_baseline"))
    if evaluation:
        body["ModelMetrics"] = {"ModelQuality": {"Statistics": _json_source(evaluation)}}
    drift: dict[str, Any] = {}
    if evaluation:
        drift["ModelQuality"] = {"Statistics": _json_source(evaluation)}
    if baseline:
        drift["ModelDataQuality"] = {"Statistics": _json_source(baseline)}
    if drift:
        body["DriftCheckBaselines"] = drift
    return body


def _inference_specification(registry: "SageMakerRegistry",
                             request: RegistrationRequest) -> dict[str, Any]:
    container: dict[str, Any] = {"Image": registry.image_uri,
                                 "ModelDataUrl": request.model_artifact,
                                 "Framework": "XGBOOST", "FrameworkVersion": "3.0-5"}
    if registry.container_environment:
        container["Environment"] = dict(registry.container_environment)
    spec: dict[str, Any] = {"Containers": [container],
                            "SupportedContentTypes": registry.content_types,
                            "SupportedResponseMIMETypes": registry.response_types}
    if registry.inference_instance_types:
        spec["SupportedRealtimeInferenceInstanceTypes"] = registry.inference_instance_types
    if registry.transform_instance_types:
        spec["SupportedTransformInstanceTypes"] = registry.transform_instance_types
    return spec


def version_of(model_group: str, described: dict[str, Any],
               item: dict[str, Any] | None) -> ModelVersion:
    """A version from its package, with the ledger's record where there is one."""
    status = described.get("ModelApprovalStatus") or str(ApprovalStatus.PENDING)
    if item and item.get("record"):
        if item.get("status") == status:
            return version_from_ledger(item, status)
        # Changed outside the kit (console, CLI): SageMaker's word on who, when and why.
        base = version_from_ledger(item, status)
        return replace(base, status_changed_at=_iso(described.get("LastModifiedTime"))
                       or base.status_changed_at,
                       status_changed_by=_modified_by(described),
                       status_reason=described.get("ApprovalDescription") or "")
    return version_from_package(model_group, described, item)


def version_from_ledger(item: dict[str, Any], status: str) -> ModelVersion:
    """The ledger's registration record, with the status SageMaker holds and the ledger's
    last change and archive."""
    data = json.loads(item["record"])
    data.update(status=ApprovalStatus(status),
                status_changed_at=item.get("status_changed_at", data["status_changed_at"]),
                status_changed_by=item.get("status_changed_by", data["status_changed_by"]),
                status_reason=item.get("status_reason", data["status_reason"]),
                archived_at=item.get("archived_at", data.get("archived_at", "")))
    return ModelVersion(**data)


def version_from_package(model_group: str, described: dict[str, Any],
                         item: dict[str, Any] | None) -> ModelVersion:
    """A version registered outside `register` (the pipeline's RegisterModel step)."""
    props = dict(described.get("CustomerMetadataProperties") or {})
    metrics, latency, gates, lineage = package_facts(props)
    quality = (described.get("ModelMetrics") or {}).get("ModelQuality", {})
    if quality.get("Statistics", {}).get("S3Uri"):
        lineage.setdefault("evaluation_uri", quality["Statistics"]["S3Uri"])
    data_quality = (described.get("DriftCheckBaselines") or {}).get("ModelDataQuality", {})
    if data_quality.get("Statistics", {}).get("S3Uri"):
        lineage.setdefault("drift_baseline", data_quality["Statistics"]["S3Uri"])
    generated_by = (described.get("MetadataProperties") or {}).get("GeneratedBy", "")
    if generated_by:
        lineage.setdefault("generated_by", generated_by)
    lineage["model_package_arn"] = described["ModelPackageArn"]
    created = _iso(described.get("CreationTime"))
    status = described.get("ModelApprovalStatus") or str(ApprovalStatus.PENDING)
    ours = item if item and item.get("status") == status else {}
    return ModelVersion(
        model_group=model_group, version=int(described["ModelPackageVersion"]),
        status=ApprovalStatus(status), created_at=created,
        model_uri=model_data_url(described),
        training_run_id=props.get(KEY_RUN) or props.get(PREFIX + "training_job")
        or generated_by,
        metrics=metrics, latency=latency, gates=gates, lineage=lineage,
        owner=props.get(KEY_OWNER, ""), use_case=props.get(KEY_USE_CASE, ""),
        description=described.get("ModelPackageDescription", ""),
        status_changed_at=ours.get("status_changed_at") or _iso(
            described.get("LastModifiedTime")) or created,
        status_changed_by=ours.get("status_changed_by") or _modified_by(described),
        status_reason=ours.get("status_reason") or described.get("ApprovalDescription", ""),
        archived_at=(item or {}).get("archived_at", ""))


def model_data_url(described: Mapping[str, Any]) -> str:
    """The model.tar.gz of a described package (its first container's)."""
    containers = (described.get("InferenceSpecification") or {}).get("Containers") or [{}]
    return containers[0].get("ModelDataUrl", "")


def _s3_uri(value: Any) -> str:
    text = value if isinstance(value, str) else ""
    return text if text.startswith(("s3://", "https://")) else ""


def _json_source(uri: str) -> dict[str, str]:
    return {"ContentType": "application/json", "S3Uri": uri}


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return iso_millis(value.astimezone(timezone.utc))
    return str(value or "")


def _modified_by(described: Mapping[str, Any]) -> str:
    """Who last changed a package outside the kit, as SageMaker recorded it."""
    user = described.get("LastModifiedBy") or {}
    return user.get("UserProfileName") or (user.get("IamIdentity") or {}).get("Arn", "")
