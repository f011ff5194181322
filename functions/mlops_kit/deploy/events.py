"""The "SageMaker Model Package State Change" event: parsing, the deploy decision, and the
local emitter that produces the same shape when a version is approved on this machine.

SageMaker emits the same event when a version's `ModelLifeCycle` (stage, stage status) changes:
the kit's promotion of a version to an environment is that change (stage = the environment,
stage status Approved), and the environment's deployment controller deploys on it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent

from mlops_kit.core.timestamps import iso_seconds, parse_iso
from mlops_kit.ports import InvalidEventError

DETAIL_TYPE = "SageMaker Model Package State Change"
SOURCE = "aws.sagemaker"
LOCAL_ACCOUNT = "000000000000"
LOCAL_REGION = "local"


from mlops_kit.core.promotion import PROMOTED  # noqa: E402,F401  (the one definition)


@dataclass(frozen=True)
class LifecycleStage:
    """A version's `ModelLifeCycle`: the environment it is promoted to, and how far."""

    stage: str
    status: str
    description: str = ""


@dataclass(frozen=True)
class ModelPackageStateChange:
    event_id: str
    model_group: str
    version: int
    status: str
    model_package_arn: str
    updated_fields: tuple[str, ...] | None
    """None when the event has no UpdatedModelPackageFields (e.g. created as Approved)."""
    changed_at: datetime
    approval_description: str = ""
    lifecycle: LifecycleStage | None = None

    @property
    def change_key(self) -> str:
        """Identifies the state change itself, so a redelivery under another event id is
        recognised as the same change."""
        what = self.status if self.lifecycle is None else f"{self.lifecycle.stage}"
        return (f"{self.model_group}/{self.version}/{what}/"
                f"{int(self.changed_at.timestamp() * 1000)}")

    @property
    def promotes(self) -> bool:
        """This change promotes the version to its lifecycle stage (an environment)."""
        return (self.lifecycle is not None and self.lifecycle.status == PROMOTED
                and (self.updated_fields is None or "ModelLifeCycle" in self.updated_fields))


def _timestamp(value: Any, field: str) -> datetime:
    """SageMaker sends epoch milliseconds in some events and ISO-8601 strings in others."""
    if isinstance(value, bool):
        raise InvalidEventError(f"{field} is not a time: {value!r}")
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(value / 1000, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):  # NaN, ±inf, beyond year 1..9999
            raise InvalidEventError(f"{field} is not a time: {value!r}") from None
    if isinstance(value, str):
        try:
            return parse_iso(value)
        except ValueError:
            raise InvalidEventError(f"{field} is not a time: {value!r}") from None
    raise InvalidEventError(f"{field} is missing or not a time")


def parse_model_package_event(event: Mapping[str, Any]) -> ModelPackageStateChange:
    if not isinstance(event, Mapping):
        raise InvalidEventError("event is not a JSON object")
    wrapped = EventBridgeEvent(dict(event))
    if event.get("detail-type") != DETAIL_TYPE or event.get("source") != SOURCE:
        raise InvalidEventError(f"not a '{DETAIL_TYPE}' event from {SOURCE}: "
                                f"detail-type={event.get('detail-type')!r}")
    detail = wrapped.get("detail")
    if not isinstance(detail, Mapping):
        raise InvalidEventError("event has no detail object")
    missing = [k for k in ("ModelPackageGroupName", "ModelPackageVersion", "ModelApprovalStatus")
               if k not in detail]
    if missing:
        raise InvalidEventError(f"detail lacks {', '.join(missing)}")
    raw_version = detail["ModelPackageVersion"]
    try:
        # int() would also take True, 1.5 (as 1) and fail with OverflowError on inf.
        if isinstance(raw_version, bool) or (isinstance(raw_version, float)
                                             and not raw_version.is_integer()):
            raise ValueError
        version = int(raw_version)
    except (TypeError, ValueError, OverflowError):
        raise InvalidEventError(
            f"ModelPackageVersion is not a number: {raw_version!r}") from None
    if version < 1:
        raise InvalidEventError(f"ModelPackageVersion must be positive, got {version}")
    fields = detail.get("UpdatedModelPackageFields")
    if fields is not None and not (isinstance(fields, list)
                                   and all(isinstance(f, str) for f in fields)):
        raise InvalidEventError("UpdatedModelPackageFields is not a list of names")
    changed = detail.get("LastModifiedTime", detail.get("CreationTime"))
    return ModelPackageStateChange(
        event_id=str(event.get("id") or ""),
        model_group=str(detail["ModelPackageGroupName"]),
        version=version,
        status=str(detail["ModelApprovalStatus"]),
        model_package_arn=str(detail.get("ModelPackageArn", "")),
        updated_fields=tuple(fields) if fields is not None else None,
        changed_at=_timestamp(changed, "LastModifiedTime/CreationTime"),
        approval_description=str(detail.get("ApprovalDescription", "")),
        lifecycle=_lifecycle(detail.get("ModelLifeCycle")),
    )


def _lifecycle(raw: Any) -> LifecycleStage | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not all(isinstance(raw.get(k), str)
                                               for k in ("Stage", "StageStatus")):
        raise InvalidEventError("ModelLifeCycle needs Stage and StageStatus strings")
    return LifecycleStage(raw["Stage"], raw["StageStatus"], str(raw.get("StageDescription", "")))


def model_package_event(model_group: str, version: int, status: str, *, reason: str = "",
                        changed_at: datetime | None = None,
                        updated_fields: tuple[str, ...] = ("ModelApprovalStatus",),
                        region: str = LOCAL_REGION, account: str = LOCAL_ACCOUNT,
                        lifecycle: LifecycleStage | None = None) -> dict:
    """The event SageMaker would emit for this change; the local registry emits it too."""
    changed_at = changed_at or datetime.now(timezone.utc)
    arn = f"arn:aws:sagemaker:{region}:{account}:model-package/{model_group}/{version}"
    millis = int(changed_at.timestamp() * 1000)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": DETAIL_TYPE,
        "source": SOURCE,
        "account": account,
        "time": iso_seconds(changed_at),
        "region": region,
        "resources": [arn],
        "detail": {
            "ModelPackageGroupName": model_group,
            "ModelPackageVersion": int(version),
            "ModelPackageArn": arn,
            "CreationTime": millis,
            "ModelPackageStatus": "Completed",
            "ModelApprovalStatus": status,
            "ApprovalDescription": reason,
            "UpdatedModelPackageFields": list(updated_fields),
            "LastModifiedTime": millis,
            **({"ModelLifeCycle": {"Stage": lifecycle.stage, "StageStatus": lifecycle.status,
                                   "StageDescription": lifecycle.description}}
               if lifecycle is not None else {}),
        },
    }
