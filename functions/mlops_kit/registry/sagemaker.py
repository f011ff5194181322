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

CustomerMetadataProperties limits (botocore's model): at most 50 entries, keys 1-128 and values
1-256 characters, both only letters, numbers, spaces and `_ . : / = + - @`. Registration writes
at most `REGISTER_METADATA_LIMIT` entries, most important first (owner, run, status, metrics,
gates, latency, then lineage breadth-first), and skips what does not fit or uses other
characters; `mlops:omitted` counts what was skipped. The ledger always has the whole record.

`UpdateModelPackage` on real AWS leaves fields it is not sent alone (and merges
CustomerMetadataProperties); moto replaces approval status, description and metadata with
what is sent. Every update here therefore sends the status, the description and the complete
metadata map, which gives the same result on both.

Packages registered by the SageMaker pipeline (not through `register`) have no ledger record:
they are read from the package itself, with metrics and lineage as the metadata carries them.

IAM: sagemaker:DescribeModelPackageGroup, sagemaker:CreateModelPackageGroup, sagemaker:AddTags,
sagemaker:CreateModelPackage, sagemaker:DescribeModelPackage, sagemaker:ListModelPackages,
sagemaker:UpdateModelPackage; dynamodb:GetItem, dynamodb:PutItem, dynamodb:UpdateItem,
dynamodb:Query on the ledger table.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping

from botocore.exceptions import ClientError

from mlops_kit import retry
from mlops_kit.aws.clients import Backoff, LazyClient, error_code, error_message
from mlops_kit.aws.ledger import IAM_ACTIONS as LEDGER_IAM_ACTIONS
from mlops_kit.aws.ledger import (DEPLOYMENT_PREFIX, TRANSITION_PREFIX, VERSION_PREFIX, Ledger,
                                  iso_milli, version_key)
from mlops_kit.endpoints import ModelSource

from .base import (
    ApprovalStatus,
    DeploymentRecord,
    InvalidRegistrationError,
    ModelRegistry,
    ModelVersion,
    RegistrationRequest,
    RegistryError,
    RollbackClaim,
    Transition,
    UnknownVersionError,
)

MAX_METADATA_ENTRIES = 50
MAX_METADATA_KEY = 128
MAX_METADATA_VALUE = 256
RESERVED_METADATA_ENTRIES = 6
"""Left free at registration for later writes (deployment write-back, annotations)."""
REGISTER_METADATA_LIMIT = MAX_METADATA_ENTRIES - RESERVED_METADATA_ENTRIES
PREFIX = "mlops:"
KEY_OWNER = PREFIX + "owner"
KEY_USE_CASE = PREFIX + "use_case"
KEY_RUN = PREFIX + "training_run_id"
KEY_CHANGED_BY = PREFIX + "status_changed_by"
KEY_CHANGED_AT = PREFIX + "status_changed_at"
KEY_RECORD_STORE = PREFIX + "record_store"
KEY_OMITTED = PREFIX + "omitted"
KEY_ARCHIVED_AT = PREFIX + "archived_at"
_SUMMARY_KEYS = frozenset({KEY_OWNER, KEY_USE_CASE, KEY_RUN, KEY_CHANGED_BY, KEY_CHANGED_AT,
                           KEY_RECORD_STORE, KEY_OMITTED, KEY_ARCHIVED_AT})
METRIC, LATENCY, GATE, LINEAGE = (PREFIX + "metric:", PREFIX + "latency:", PREFIX + "gate:",
                                  PREFIX + "lineage:")
_ALLOWED_PUNCTUATION = set("_.:/=+-@")
_ARN_GROUP = re.compile(r"^(arn:[^:]+:sagemaker:[^:]*:\d{12}):model-package-group/(.+)$")
_ARN_VERSION = re.compile(r"/(\d+)$")

IAM_ACTIONS = ("sagemaker:DescribeModelPackageGroup", "sagemaker:CreateModelPackageGroup",
               "sagemaker:AddTags", "sagemaker:CreateModelPackage",
               "sagemaker:DescribeModelPackage", "sagemaker:ListModelPackages",
               "sagemaker:UpdateModelPackage", *LEDGER_IAM_ACTIONS)
"""What SageMakerRegistry calls (AddTags: CreateModelPackageGroup is sent with Tags)."""


def utc_now() -> str:
    return iso_milli(datetime.now(timezone.utc))


def metadata_safe(text: str, limit: int) -> bool:
    """True when SageMaker accepts `text` as a CustomerMetadataProperties key or value."""
    if not 1 <= len(text) <= limit:
        return False
    return all(unicodedata.category(c)[0] in "LZN" or c in _ALLOWED_PUNCTUATION for c in text)


def metadata_clean(text: str, limit: int = MAX_METADATA_VALUE) -> str:
    """Replace what the metadata character set refuses with '_' (for names and actors)."""
    cleaned = "".join(c if unicodedata.category(c)[0] in "LZN" or c in _ALLOWED_PUNCTUATION
                      else "_" for c in str(text))
    return cleaned[:limit] or "_"


def _scalar(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list, tuple)):
        return None
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    return str(value)


def _flatten_breadth_first(tree: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(dotted path, scalar) pairs, shallow ones first: the top of the lineage fits first."""
    out: list[tuple[str, Any]] = []
    level: list[tuple[str, Any]] = [(str(k), v) for k, v in tree.items()]
    while level:
        deeper: list[tuple[str, Any]] = []
        for path, value in level:
            if isinstance(value, Mapping):
                deeper.extend((f"{path}.{k}", v) for k, v in value.items())
            else:
                out.append((path, value))
        level = deeper
    return out


def customer_metadata(request: RegistrationRequest, *, registered_at: str,
                      record_store: str) -> dict[str, str]:
    """The registration summary that fits SageMaker's limits, most important entries first."""
    fixed = [(KEY_OWNER, request.owner), (KEY_USE_CASE, request.use_case),
             (KEY_RUN, request.training_run_id), (KEY_CHANGED_BY, request.owner),
             (KEY_CHANGED_AT, registered_at), (KEY_RECORD_STORE, record_store)]
    optional: list[tuple[str, Any]] = []
    optional += [(METRIC + k, v) for k, v in request.metrics.items()]
    for gate in request.gates:
        verdict = "passed" if gate.get("passed") else "failed"
        details = " ".join(f"{k}={_scalar(gate[k])}" for k in ("value", "threshold")
                           if _scalar(gate.get(k)) is not None)
        optional.append((GATE + str(gate.get("gate", "")), f"{verdict} {details}".strip()))
    optional += [(LATENCY + k, v) for k, v in request.latency.items()]
    optional += [(LINEAGE + path, value) for path, value in _flatten_breadth_first(request.lineage)]

    properties: dict[str, str] = {}
    for key, raw in fixed:
        value = _scalar(raw)
        if value:
            properties[key] = value if metadata_safe(value, MAX_METADATA_VALUE) else \
                metadata_clean(value)
    budget = REGISTER_METADATA_LIMIT - 1  # one left for mlops:omitted
    omitted = 0
    for key, raw in optional:
        value = _scalar(raw)
        if (value is None or key in properties or len(properties) >= budget
                or not metadata_safe(key, MAX_METADATA_KEY)
                or not metadata_safe(value, MAX_METADATA_VALUE)):
            omitted += 1
            continue
        properties[key] = value
    if omitted:
        properties[KEY_OMITTED] = str(omitted)
    return properties


class SageMakerRegistry(ModelRegistry):
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
                 page_size: int = 100, backoff: Backoff | None = None):
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
        return ModelSource(version=int(version), model_uri=_model_data_url(described),
                           model_package_arn=described["ModelPackageArn"])

    # -- register ------------------------------------------------------------------------

    def register(self, request: RegistrationRequest) -> ModelVersion:
        if request.model_group != self.model_group:
            raise InvalidRegistrationError(
                f"request is for model group '{request.model_group}', registry holds "
                f"'{self.model_group}'")
        request.validate()
        if not request.model_artifact.startswith("s3://"):
            raise InvalidRegistrationError(
                f"model artifact must be an s3:// URI of model.tar.gz for SageMaker, got "
                f"'{request.model_artifact}'")
        if not self.image_uri:
            raise InvalidRegistrationError(
                "no inference image URI configured (the SageMaker XGBoost 3.0-5 image)")
        self._ensure_group(request)
        now = utc_now()
        reason = "registered: all gates passed"
        arn = self._call("create_model_package", **self._package_request(request, now))[
            "ModelPackageArn"]
        version_match = _ARN_VERSION.search(arn)
        number = (int(version_match.group(1)) if version_match
                  else int(self._describe(0, arn)["ModelPackageVersion"]))
        version = ModelVersion(
            model_group=self.model_group, version=number, status=ApprovalStatus.PENDING,
            created_at=now, model_uri=request.model_artifact,
            training_run_id=request.training_run_id, metrics=dict(request.metrics),
            latency=dict(request.latency), gates=list(request.gates),
            lineage={**request.lineage, "model_package_arn": arn}, owner=request.owner,
            use_case=request.use_case,
            description=request.description, status_changed_at=now,
            status_changed_by=request.owner, status_reason=reason)
        self.ledger.put_version(number, version.to_dict(), arn, {
            "from_status": "", "to_status": str(version.status), "actor": request.owner,
            "reason": reason, "at": now, "details": {"model_package_arn": arn}})
        return version

    def _package_request(self, request: RegistrationRequest, now: str) -> dict[str, Any]:
        container: dict[str, Any] = {"Image": self.image_uri,
                                     "ModelDataUrl": request.model_artifact,
                                     "Framework": "XGBOOST", "FrameworkVersion": "3.0-5"}
        if self.container_environment:
            container["Environment"] = dict(self.container_environment)
        spec: dict[str, Any] = {"Containers": [container],
                                "SupportedContentTypes": self.content_types,
                                "SupportedResponseMIMETypes": self.response_types}
        if self.inference_instance_types:
            spec["SupportedRealtimeInferenceInstanceTypes"] = self.inference_instance_types
        if self.transform_instance_types:
            spec["SupportedTransformInstanceTypes"] = self.transform_instance_types
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
            "ModelPackageGroupName": self.model_group,
            "ModelPackageDescription": (request.description or
                                        f"training run {request.training_run_id}")[:1024],
            "InferenceSpecification": spec,
            "ModelApprovalStatus": str(ApprovalStatus.PENDING),
            "MetadataProperties": metadata,
            "CustomerMetadataProperties": customer_metadata(
                request, registered_at=now,
                record_store=f"dynamodb:{self.ledger.table_name}"),
            "Domain": self.domain, "Task": self.task,
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
                versions.append(self._from_ledger(item, summary["ModelApprovalStatus"]))
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

    def _from_ledger(self, item: dict[str, Any], status: str) -> ModelVersion:
        data = json.loads(item["record"])
        data.update(status=ApprovalStatus(status),
                    status_changed_at=item.get("status_changed_at", data["status_changed_at"]),
                    status_changed_by=item.get("status_changed_by", data["status_changed_by"]),
                    status_reason=item.get("status_reason", data["status_reason"]),
                    archived_at=item.get("archived_at", data.get("archived_at", "")))
        return ModelVersion(**data)

    def _version(self, described: dict[str, Any], item: dict[str, Any] | None) -> ModelVersion:
        """A version from its package, with the ledger's record where there is one."""
        status = described.get("ModelApprovalStatus") or str(ApprovalStatus.PENDING)
        if item and item.get("record"):
            if item.get("status") == status:
                return self._from_ledger(item, status)
            # Changed outside the kit (console, CLI): SageMaker's word on who, when and why.
            base = self._from_ledger(item, status)
            return replace(base, status_changed_at=_iso(described.get("LastModifiedTime"))
                           or base.status_changed_at,
                           status_changed_by=_modified_by(described),
                           status_reason=described.get("ApprovalDescription") or "")
        return self._from_package(described, item)

    def _from_package(self, described: dict[str, Any], item: dict[str, Any] | None
                      ) -> ModelVersion:
        """A version registered outside `register` (the pipeline's RegisterModel step)."""
        props = dict(described.get("CustomerMetadataProperties") or {})
        metrics = _numbers(props, METRIC)
        latency = _numbers(props, LATENCY)
        gates = [_gate(name[len(GATE):], text) for name, text in sorted(props.items())
                 if name.startswith(GATE)]
        lineage: dict[str, Any] = {}
        for key, value in sorted(props.items()):
            if key.startswith(LINEAGE):
                _unflatten(lineage, key[len(LINEAGE):], value)
            elif (key.startswith(PREFIX) and not key.startswith((METRIC, LATENCY, GATE))
                  and key not in _SUMMARY_KEYS):
                lineage[key[len(PREFIX):]] = value
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
            model_group=self.model_group, version=int(described["ModelPackageVersion"]),
            status=ApprovalStatus(status), created_at=created,
            model_uri=_model_data_url(described),
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

    def transitions(self, version: int | None = None) -> list[Transition]:
        trail = []
        for item in self.ledger.query_prefix(TRANSITION_PREFIX):
            if version is not None and int(item["version"]) != int(version):
                continue
            trail.append(Transition(
                model_group=self.model_group, version=int(item["version"]),
                from_status=item["from_status"], to_status=item["to_status"],
                actor=item["actor"], reason=item["reason"], at=item["at"],
                details=json.loads(item.get("details") or "{}")))
        return trail

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

    def _record_behind(self, version: int, status: ApprovalStatus, *, actor: str, reason: str,
                       at: str, arn: str, attempts: int = 3) -> bool:
        """Append our transition after whatever the ledger holds now, but only while SageMaker
        holds our status (ours was the last package update): the trail then ends where
        SageMaker is. A writer whose update SageMaker already superseded records nothing."""
        def append_once() -> bool:
            item = self.ledger.get(version_key(version)) or {}
            if item.get("status") == str(status):
                return False
            if self._describe(version, arn).get("ModelApprovalStatus") != str(status):
                return False
            if not self.ledger.change_status(version, item.get("status"), {
                    "from_status": item.get("status") or "", "to_status": str(status),
                    "actor": actor, "reason": reason, "at": at,
                    "details": {"model_package_arn": arn}}, arn):
                raise _LedgerMoved(version)  # another writer's change landed: read again
            return True

        try:
            return retry.Backoff(attempts, base_delay=0.0, max_delay=0.0,
                                 retry_if=_is_ledger_moved).call(append_once)
        except _LedgerMoved:
            return False

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
                        description: str | None, properties: dict[str, str]) -> None:
        """UpdateModelPackage resending what must survive (moto drops what it is not sent)."""
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
        self._call("update_model_package", **request)

    # -- deployments ---------------------------------------------------------------------

    def record_deployment(self, record: DeploymentRecord) -> tuple[DeploymentRecord, bool]:
        existing = self.ledger.put_deployment(record.deployment_id, record.endpoint_name,
                                              record.to_dict())
        if existing is not None:
            return DeploymentRecord.from_dict(existing), False
        return record, True

    def deployments(self, endpoint_name: str | None = None) -> list[DeploymentRecord]:
        history = []
        for item in self.ledger.query_prefix(DEPLOYMENT_PREFIX):
            if endpoint_name is not None and item.get("endpoint_name") != endpoint_name:
                continue
            history.append(DeploymentRecord.from_dict(json.loads(item["record"])))
        return history

    def claim_rollback(self, endpoint_name: str, rolled_back_from: str, deployment_id: str, *,
                       from_version: int | None = None, to_version: int | None = None,
                       stale_after: timedelta | None = None) -> RollbackClaim:
        return _rollback_claim(self.ledger.claim_rollback(
            endpoint_name, rolled_back_from, deployment_id, from_version=from_version,
            to_version=to_version, stale_after=stale_after))

    def release_rollback(self, endpoint_name: str, rolled_back_from: str,
                         deployment_id: str) -> bool:
        return self.ledger.release_rollback(endpoint_name, rolled_back_from, deployment_id)

    def rollback_claim(self, endpoint_name: str, rolled_back_from: str) -> RollbackClaim | None:
        item = self.ledger.rollback_claim(endpoint_name, rolled_back_from)
        return _rollback_claim(item) if item is not None else None


# -- helpers ---------------------------------------------------------------------------------

def _rollback_claim(item: Mapping[str, Any]) -> RollbackClaim:
    return RollbackClaim(item["endpoint_name"], item["rolled_back_from"], item["claimed_by"],
                         item["claimed_at"], item.get("from_version"), item.get("to_version"))


class _LedgerMoved(Exception):
    """The ledger's status changed between our read and our compare-and-swap."""


def _is_ledger_moved(exc: BaseException) -> bool:
    return isinstance(exc, _LedgerMoved)


def _missing(exc: ClientError) -> bool:
    message = error_message(exc).lower()
    return error_code(exc) in ("ValidationException", "ResourceNotFound") and any(
        phrase in message for phrase in ("does not exist", "not found", "could not find"))


def _s3_uri(value: Any) -> str:
    text = value if isinstance(value, str) else ""
    return text if text.startswith(("s3://", "https://")) else ""


def _json_source(uri: str) -> dict[str, str]:
    return {"ContentType": "application/json", "S3Uri": uri}


def _model_data_url(described: Mapping[str, Any]) -> str:
    containers = (described.get("InferenceSpecification") or {}).get("Containers") or [{}]
    return containers[0].get("ModelDataUrl", "")


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return iso_milli(value.astimezone(timezone.utc))
    return str(value or "")


def _modified_by(described: Mapping[str, Any]) -> str:
    """Who last changed a package outside the kit, as SageMaker recorded it."""
    user = described.get("LastModifiedBy") or {}
    return user.get("UserProfileName") or (user.get("IamIdentity") or {}).get("Arn", "")


def _numbers(props: Mapping[str, str], prefix: str) -> dict[str, float]:
    out = {}
    for key, value in props.items():
        if key.startswith(prefix):
            try:
                out[key[len(prefix):]] = float(value)
            except ValueError:
                continue
    return out


def _gate(name: str, text: str) -> dict[str, Any]:
    words = text.split()
    gate: dict[str, Any] = {"gate": name, "passed": bool(words) and words[0] == "passed"}
    for word in words[1:]:
        key, _, value = word.partition("=")
        try:
            gate[key] = json.loads(value)
        except ValueError:
            gate[key] = value
    return gate


def _unflatten(tree: dict[str, Any], path: str, value: str) -> None:
    """Undo the breadth-first flattening; a path that collides stays whole at the top."""
    *parents, leaf = path.split(".")
    node = tree
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            tree[path] = value
            return
        node = child
    node[leaf] = value
