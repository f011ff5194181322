"""Registry of record on AWS: SageMaker Model Registry plus the DynamoDB ledger.

Where each fact lives:
- SageMaker model package group `<model_group>`: one model package per version (SageMaker
  numbers them from 1), approval status (the source of truth: a console approval counts),
  ApprovalDescription (the reason of the last change), InferenceSpecification (the XGBoost
  image and the model.tar.gz), ModelMetrics / DriftCheckBaselines (evaluation.json and the
  drift baseline in S3), MetadataProperties.GeneratedBy, and CustomerMetadataProperties: a
  flattened summary of owner, use case, training run, metrics, gates and lineage under `mlops:`
  keys (the pipeline's RegisterModel step uses the same prefix).
- The ledger table (`mlops_kit.aws.ledger`, key schema there): the full registration record as
  JSON, every status transition (who, when, why) and the deployment history. SageMaker keeps
  none of these.

The metadata map is `sagemaker_metadata`'s codec, the package request and the reading of a
version back `sagemaker_package`'s; the reads of the audit trail, the deployment
history and the rollback claims (`sagemaker_ledger`) go to the ledger only.

Packages registered by the SageMaker pipeline (not through `register`) have no ledger record:
they are read from the package itself, with metrics and lineage as the metadata carries them.

IAM: sagemaker:DescribeModelPackageGroup, sagemaker:CreateModelPackageGroup, sagemaker:AddTags,
sagemaker:CreateModelPackage, sagemaker:DescribeModelPackage, sagemaker:ListModelPackages,
sagemaker:UpdateModelPackage; dynamodb:GetItem, dynamodb:PutItem, dynamodb:UpdateItem,
dynamodb:Query on the ledger table.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from botocore.exceptions import ClientError

from mlops_kit.aws.clients import Backoff, LazyClient, error_code, error_message
from mlops_kit.aws.ledger import IAM_ACTIONS as LEDGER_IAM_ACTIONS
from mlops_kit.aws.ledger import VERSION_PREFIX, Ledger, version_key
from mlops_kit.core.timestamps import iso_millis
from mlops_kit.endpoints import ModelSource

from .base import (ApprovalStatus, InvalidRegistrationError, ModelRegistry, ModelVersion,
                   RegistrationRequest, RegistryError, UnknownVersionError)
from .sagemaker_ledger import LedgerPort
from .sagemaker_metadata import (GATE, KEY_ARCHIVED_AT, KEY_CHANGED_AT, KEY_CHANGED_BY,
                                 KEY_OMITTED, KEY_OWNER, KEY_RECORD_STORE, KEY_RUN, KEY_USE_CASE,
                                 LATENCY, LINEAGE, MAX_METADATA_ENTRIES, MAX_METADATA_KEY,
                                 MAX_METADATA_VALUE, METRIC, PREFIX, REGISTER_METADATA_LIMIT,
                                 RESERVED_METADATA_ENTRIES, customer_metadata, metadata_clean,
                                 metadata_safe)
from .sagemaker_package import (model_data_url, package_request, version_from_ledger,
                               version_of)
from .sagemaker_promotions import PromotionPort

__all__ = ["GATE", "IAM_ACTIONS", "KEY_ARCHIVED_AT", "KEY_CHANGED_AT", "KEY_CHANGED_BY",
           "KEY_OMITTED", "KEY_OWNER", "KEY_RECORD_STORE", "KEY_RUN", "KEY_USE_CASE", "LATENCY",
           "LINEAGE", "MAX_METADATA_ENTRIES", "MAX_METADATA_KEY", "MAX_METADATA_VALUE", "METRIC",
           "PREFIX", "REGISTER_METADATA_LIMIT", "RESERVED_METADATA_ENTRIES", "SageMakerRegistry",
           "customer_metadata", "metadata_clean", "metadata_safe", "utc_now"]

_ARN_GROUP = re.compile(r"^(arn:[^:]+:sagemaker:[^:]*:\d{12}):model-package-group/(.+)$")
_ARN_VERSION = re.compile(r"/(\d+)$")

IAM_ACTIONS = ("sagemaker:DescribeModelPackageGroup", "sagemaker:CreateModelPackageGroup",
               "sagemaker:AddTags", "sagemaker:CreateModelPackage",
               "sagemaker:DescribeModelPackage", "sagemaker:ListModelPackages",
               "sagemaker:UpdateModelPackage", *LEDGER_IAM_ACTIONS)
"""What SageMakerRegistry calls (AddTags: CreateModelPackageGroup is sent with Tags)."""


def utc_now() -> str:
    return iso_millis(datetime.now(timezone.utc))


class SageMakerRegistry(LedgerPort, PromotionPort, ModelRegistry):
    """`ModelRegistry` over one SageMaker model package group and the ledger table.

    Clients are injected (tests) or created on first use with the standard credential and
    region chain. `image_uri` (the SageMaker XGBoost 3.0-5 image of the region) is needed to
    register only; reading, approving and recording deployments work without it.
    """

    def __init__(self, model_group: str, *, ledger_table: str, image_uri: str = "",
                 sagemaker_client: Any = None, dynamodb_client: Any = None,
                 content_types: Iterable[str] = ("text/csv",),
                 response_types: Iterable[str] = ("text/csv",),
                 inference_instance_types: Iterable[str] = (),
                 transform_instance_types: Iterable[str] = (),
                 container_environment: Mapping[str, str] | None = None,
                 domain: str = "MACHINE_LEARNING", task: str = "CLASSIFICATION",
                 page_size: int = 100, backoff: Backoff | None = None,
                 deployment_ledger_table: str | None = None,
                 deployment_dynamodb_client: Any = None):
        self.model_group = model_group
        self.image_uri = image_uri
        self.content_types = list(content_types)
        self.response_types = list(response_types)
        self.inference_instance_types = list(inference_instance_types)
        self.transform_instance_types = list(transform_instance_types)
        self.container_environment = dict(container_environment or {})
        self.domain, self.task = domain, task
        if not 1 <= page_size <= 100:
            raise ValueError("page_size must be between 1 and 100 (ListModelPackages' limit)")
        self.page_size = page_size
        self._backoff = backoff or Backoff()
        self._sagemaker = LazyClient("sagemaker", sagemaker_client)
        self.ledger = Ledger(ledger_table, model_group, dynamodb_client, backoff=self._backoff)
        # An environment of a fleet reads the registry account's packages and ledger and keeps
        # its endpoints' history and rollback claims in its own table.
        self.deployment_ledger = self.ledger if deployment_ledger_table is None else Ledger(
            deployment_ledger_table, model_group, deployment_dynamodb_client or dynamodb_client,
            backoff=self._backoff)
        self._group_arn: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any
                 ) -> "SageMakerRegistry":
        """MLOPS_MODEL_GROUP and LEDGER_TABLE_NAME (required), INFERENCE_IMAGE_URI (to
        register)."""
        env = os.environ if environ is None else environ
        missing = [name for name in ("MLOPS_MODEL_GROUP", "LEDGER_TABLE_NAME") if not env.get(name)]
        if missing:
            raise RegistryError(f"missing environment variable(s): {', '.join(missing)}")
        return cls(env["MLOPS_MODEL_GROUP"], ledger_table=env["LEDGER_TABLE_NAME"],
                   image_uri=env.get("INFERENCE_IMAGE_URI", ""), **kwargs)

    @property
    def sagemaker(self) -> Any:
        return self._sagemaker()

    def _call(self, operation: str, **kwargs: Any) -> Any:
        return self._backoff.call(getattr(self.sagemaker, operation), **kwargs)

    # -- the group ---------------------------------------------------------------------

    def _describe_group(self) -> str | None:
        if self._group_arn is None:
            try:
                response = self._call("describe_model_package_group",
                                      ModelPackageGroupName=self.model_group)
            except ClientError as exc:
                if _missing(exc):
                    return None
                raise
            self._group_arn = response["ModelPackageGroupArn"]
        return self._group_arn

    def _ensure_group(self, request: RegistrationRequest) -> None:
        if self._describe_group() is not None:
            return
        description = (f"Model group of record. Owner: {request.owner}. "
                       f"Use case: {request.use_case}.")
        tags = [{"Key": "mlops:owner", "Value": metadata_clean(request.owner)},
                {"Key": "mlops:use-case", "Value": metadata_clean(request.use_case)},
                {"Key": "mlops:managed-by", "Value": "mlops-kit"}]
        try:
            response = self._call("create_model_package_group",
                                  ModelPackageGroupName=self.model_group,
                                  ModelPackageGroupDescription=description[:1024], Tags=tags)
            self._group_arn = response["ModelPackageGroupArn"]
        except ClientError as exc:
            if "already exist" not in error_message(exc).lower():
                raise
            self._group_arn = None
            self._describe_group()

    def model_package_arn(self, version: int) -> str:
        """The ARN of a version's package (recorded at registration, else derived from the
        group's ARN: SageMaker lower-cases names in package ARNs)."""
        item = self.ledger.get(version_key(version))
        if item and item.get("model_package_arn"):
            return item["model_package_arn"]
        group_arn = self._describe_group()
        match = _ARN_GROUP.match(group_arn or "")
        if not match:
            raise UnknownVersionError(f"model group '{self.model_group}' has no version {version}")
        return f"{match.group(1)}:model-package/{self.model_group.lower()}/{int(version)}"

    def model_source(self, version: int) -> ModelSource:
        """What the endpoint adapter and the batch launcher deploy for a version."""
        described = self._describe(version, self.model_package_arn(version))
        return ModelSource(version=int(version), model_uri=model_data_url(described),
                           model_package_arn=described["ModelPackageArn"])

    # -- register ------------------------------------------------------------------------

    def register(self, request: RegistrationRequest) -> ModelVersion:
        request.validate_for(self.model_group)
        if not request.model_artifact.startswith("s3://"):
            raise InvalidRegistrationError(
                f"model artifact must be an s3:// URI of model.tar.gz for SageMaker, got "
                f"'{request.model_artifact}'")
        if not self.image_uri:
            raise InvalidRegistrationError(
                "no inference image URI configured (the SageMaker XGBoost 3.0-5 image)")
        self._ensure_group(request)
        now = utc_now()
        arn = self._call("create_model_package", **package_request(self, request, now))[
            "ModelPackageArn"]
        version_match = _ARN_VERSION.search(arn)
        number = (int(version_match.group(1)) if version_match
                  else int(self._describe(0, arn)["ModelPackageVersion"]))
        version = ModelVersion.registered(request, version=number, at=now,
                                          model_uri=request.model_artifact,
                                          lineage={**request.lineage, "model_package_arn": arn})
        self.ledger.put_version(number, version.to_dict(), arn, {
            "from_status": "", "to_status": str(version.status), "actor": request.owner,
            "reason": version.status_reason, "at": now, "details": {"model_package_arn": arn}})
        return version

    # -- read ----------------------------------------------------------------------------

    def _describe(self, version: int, arn: str) -> dict[str, Any]:
        try:
            return self._call("describe_model_package", ModelPackageName=arn)
        except ClientError as exc:
            if _missing(exc):
                raise UnknownVersionError(
                    f"model group '{self.model_group}' has no version {version}") from exc
            raise

    def get(self, version: int) -> ModelVersion:
        item = self.ledger.get(version_key(version))
        arn = (item or {}).get("model_package_arn") or self.model_package_arn(version)
        return self._version(self._describe(version, arn), item)

    def list_versions(self, status: ApprovalStatus | None = None) -> list[ModelVersion]:
        if self._describe_group() is None:
            return []
        items = {int(i["sk"][len(VERSION_PREFIX):]): i
                 for i in self.ledger.query_prefix(VERSION_PREFIX)}
        versions = []
        for summary in self._summaries(status):
            number = int(summary["ModelPackageVersion"])
            item = items.get(number)
            if item and item.get("record") and item.get("status") == summary.get(
                    "ModelApprovalStatus"):
                versions.append(version_from_ledger(item, summary["ModelApprovalStatus"]))
            else:
                versions.append(self._version(
                    self._describe(number, summary["ModelPackageArn"]), item))
        return sorted(versions, key=lambda v: v.version)

    def _summaries(self, status: ApprovalStatus | None) -> Iterable[dict[str, Any]]:
        kwargs: dict[str, Any] = dict(ModelPackageGroupName=self.model_group,
                                      ModelPackageType="Versioned", SortBy="CreationTime",
                                      SortOrder="Ascending", MaxResults=self.page_size)
        if status is not None:
            kwargs["ModelApprovalStatus"] = str(ApprovalStatus(status))
        while True:
            page = self._call("list_model_packages", **kwargs)
            yield from page.get("ModelPackageSummaryList", [])
            token = page.get("NextToken")
            if not token:
                return
            kwargs["NextToken"] = token

    def _version(self, described: dict[str, Any], item: dict[str, Any] | None) -> ModelVersion:
        """A version from its package, with the ledger's record where there is one."""
        return version_of(self.model_group, described, item)

    # -- change --------------------------------------------------------------------------

    def set_status(self, version: int, status: ApprovalStatus, *, actor: str,
                   reason: str) -> tuple[ModelVersion, bool]:
        status = ApprovalStatus(status)
        if not actor.strip() or not reason.strip():
            raise InvalidRegistrationError("a status change needs who (actor) and why (reason)")
        item = self.ledger.get(version_key(version))
        arn = (item or {}).get("model_package_arn") or self.model_package_arn(version)
        described = self._describe(version, arn)
        current = self._version(described, item)
        if current.status == status:
            props = described.get("CustomerMetadataProperties") or {}
            if (item and item.get("status") and item["status"] != str(status)
                    and props.get(KEY_CHANGED_AT)
                    and props[KEY_CHANGED_AT] != item.get("status_changed_at")):
                # The kit changed the package (its mlops:status_changed_at moved) but the
                # ledger did not follow: that call failed between the two writes. Complete the
                # trail with that change's own who, when and why. (A change made in Studio
                # leaves the kit's timestamp alone and stays SageMaker's word only.)
                self._record_behind(version, status,
                                    actor=props.get(KEY_CHANGED_BY) or actor,
                                    reason=described.get("ApprovalDescription") or reason,
                                    at=props[KEY_CHANGED_AT], arn=arn)
                return self.get(version), False
            return current, False
        now = utc_now()
        props = dict(described.get("CustomerMetadataProperties") or {})
        props.update({KEY_CHANGED_BY: metadata_clean(actor), KEY_CHANGED_AT: now})
        self._update_package(described, status=str(status), description=reason,
                             properties=props)
        recorded = self.ledger.change_status(version, (item or {}).get("status"), {
            "from_status": str(current.status), "to_status": str(status), "actor": actor,
            "reason": reason, "at": now, "details": {"model_package_arn": arn}}, arn)
        if not recorded:
            # Another writer changed the status between our read and our write.
            recorded = self._record_behind(version, status, actor=actor, reason=reason,
                                           at=now, arn=arn)
            return self.get(version), recorded
        updated = replace(current, status=status, status_changed_at=now,
                          status_changed_by=actor, status_reason=reason)
        return updated, recorded

    def archive(self, version: int, *, actor: str, reason: str) -> tuple[ModelVersion, bool]:
        """Archive for the retention policy: recorded in the ledger (with a transition to
        "Archived", as the local registry does) and shown as `mlops:archived_at` on the package.
        The package itself stays: SageMaker has no archive, and deleting would lose lineage."""
        current = self.get(version)
        if current.archived_at:
            return current, False
        now = utc_now()
        arn = current.lineage.get("model_package_arn") or self.model_package_arn(version)
        recorded = self.ledger.archive(version, {
            "from_status": str(current.status), "to_status": "Archived", "actor": actor,
            "reason": reason, "at": now, "details": {"model_package_arn": arn}}, arn)
        if not recorded:
            return self.get(version), False
        described = self._describe(version, arn)
        props = {**(described.get("CustomerMetadataProperties") or {}), KEY_ARCHIVED_AT: now}
        if len(props) <= MAX_METADATA_ENTRIES:
            self._update_package(described, status=described.get("ModelApprovalStatus"),
                                 description=described.get("ApprovalDescription"),
                                 properties=props)
        return replace(current, archived_at=now), True

    def unarchive(self, version: int, *, actor: str, reason: str) -> tuple[ModelVersion, bool]:
        """Undo `archive` (ledger first, it is the record; then the package's metadata)."""
        current = self.get(version)
        if not current.archived_at:
            return current, False
        arn = current.lineage.get("model_package_arn") or self.model_package_arn(version)
        if not self.ledger.unarchive(version, {
                "from_status": "Archived", "to_status": str(current.status), "actor": actor,
                "reason": reason, "at": utc_now(), "details": {"model_package_arn": arn}}):
            return self.get(version), False
        self._call("update_model_package", ModelPackageArn=arn,
                   CustomerMetadataPropertiesToRemove=[KEY_ARCHIVED_AT])
        return replace(current, archived_at=""), True

    def ever_approved(self, version: int) -> bool:
        """Approved at some point: by the audit trail, or now (an approval made outside the
        kit is not in the trail)."""
        return super().ever_approved(version) or self.get(version).status is \
            ApprovalStatus.APPROVED

    def annotate(self, version: int, properties: Mapping[str, str]) -> dict[str, str]:
        """Write metadata back to a version (e.g. `deployed_at`, `endpoint` after a
        deployment), keeping its status, description and every other entry. Returns the
        metadata as stored. Keys and values must fit the metadata character set."""
        for key, value in properties.items():
            if not (metadata_safe(key, MAX_METADATA_KEY) and metadata_safe(str(value),
                                                                            MAX_METADATA_VALUE)):
                raise ValueError(f"metadata '{key}={value}' does not fit SageMaker's limits "
                                 f"(letters, digits, spaces and _ . : / = + - @)")
        described = self._describe(version, self.model_package_arn(version))
        props = dict(described.get("CustomerMetadataProperties") or {})
        props.update({k: str(v) for k, v in properties.items()})
        if len(props) > MAX_METADATA_ENTRIES:
            raise ValueError(f"version {version} would carry {len(props)} metadata entries; "
                             f"SageMaker allows {MAX_METADATA_ENTRIES}")
        self._update_package(described, status=described.get("ModelApprovalStatus"),
                             description=described.get("ApprovalDescription"), properties=props)
        return props

    def _update_package(self, described: dict[str, Any], *, status: str | None,
                        description: str | None, properties: dict[str, str],
                        lifecycle: dict[str, str] | None = None) -> None:
        """UpdateModelPackage resending what must survive: on real AWS it leaves fields it is
        not sent alone (and merges CustomerMetadataProperties); moto replaces approval status,
        description and metadata with what is sent. Sending the status, the description and
        the complete metadata map gives the same result on both."""
        request: dict[str, Any] = {"ModelPackageArn": described["ModelPackageArn"]}
        if status:
            request["ModelApprovalStatus"] = status
        if description is not None:
            request["ApprovalDescription"] = " ".join(str(description).split())[:1024]
        if properties:
            if len(properties) > MAX_METADATA_ENTRIES:
                # A package registered elsewhere with a full map: keep its entries as they are.
                properties = dict(described.get("CustomerMetadataProperties") or {})
            request["CustomerMetadataProperties"] = properties
        if lifecycle is not None:
            request["ModelLifeCycle"] = lifecycle
        self._call("update_model_package", **request)


def _missing(exc: ClientError) -> bool:
    message = error_message(exc).lower()
    return error_code(exc) in ("ValidationException", "ResourceNotFound") and any(
        phrase in message for phrase in ("does not exist", "not found", "could not find"))

