"""The registry of record: what every adapter (local SQLite, SageMaker Model Registry) promises.

A version is immutable once registered, except for its approval status, whose every change is
kept as a transition (who, when, why). Nothing is registered that has not passed every gate.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

MODEL_GROUP_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
"""SageMaker's rule for ModelPackageGroupName; the local registry follows it too."""


class ApprovalStatus(StrEnum):
    PENDING = "PendingManualApproval"
    APPROVED = "Approved"
    REJECTED = "Rejected"


class RegistryError(Exception):
    """A registry request that cannot be done; the message says why."""


class UnknownVersionError(RegistryError):
    pass


class InvalidRegistrationError(RegistryError):
    pass


@dataclass(frozen=True)
class RegistrationRequest:
    model_group: str
    model_artifact: str
    """Local model directory, or an s3:// URI of model.tar.gz."""
    training_run_id: str
    metrics: dict[str, float]
    latency: dict[str, float]
    gates: list[dict[str, Any]]
    lineage: dict[str, Any]
    owner: str
    use_case: str
    description: str = ""

    def validate(self) -> None:
        problems = []
        if not MODEL_GROUP_PATTERN.match(self.model_group or ""):
            problems.append(f"model group '{self.model_group}' must be 1-63 letters, digits or "
                            f"hyphens, starting and ending with a letter or digit")
        if not self.owner.strip():
            problems.append("owner is required")
        if not self.use_case.strip():
            problems.append("use case is required")
        if not self.gates:
            problems.append("gate verdicts are required")
        elif not all(g.get("passed") for g in self.gates):
            failed = ", ".join(g["gate"] for g in self.gates if not g.get("passed"))
            problems.append(f"gates failed ({failed}): only passing candidates are registered")
        for key in ("data", "code", "parameters", "libraries"):
            if key not in self.lineage:
                problems.append(f"lineage.{key} is required")
        if problems:
            raise InvalidRegistrationError("; ".join(problems))


@dataclass(frozen=True)
class ModelVersion:
    model_group: str
    version: int
    status: ApprovalStatus
    created_at: str
    model_uri: str
    training_run_id: str
    metrics: dict[str, float]
    latency: dict[str, float]
    gates: list[dict[str, Any]]
    lineage: dict[str, Any]
    owner: str
    use_case: str
    description: str = ""
    status_changed_at: str = ""
    status_changed_by: str = ""
    status_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = str(self.status)
        return data


@dataclass(frozen=True)
class Transition:
    model_group: str
    version: int
    from_status: str
    to_status: str
    actor: str
    reason: str
    at: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ModelRegistry(ABC):
    """One model group's versions, approvals and audit trail."""

    model_group: str

    @abstractmethod
    def register(self, request: RegistrationRequest) -> ModelVersion:
        """Store a new version as PendingManualApproval; versions count up from 1."""

    @abstractmethod
    def get(self, version: int) -> ModelVersion:
        """The version, or UnknownVersionError."""

    @abstractmethod
    def list_versions(self, status: ApprovalStatus | None = None) -> list[ModelVersion]:
        """Versions in ascending order, optionally of one status."""

    @abstractmethod
    def transitions(self, version: int | None = None) -> list[Transition]:
        """The audit trail, oldest first."""

    def champion(self) -> ModelVersion | None:
        """The version serving at full weight, derived from the deployment history.

        No deployment has happened before the serving part of the kit exists, so there is
        no champion; adapters that record deployments override this.
        """
        return None
