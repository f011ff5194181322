"""The registry of record: what every adapter (local SQLite, SageMaker Model Registry) promises.

A version is immutable once registered, except for its approval status, whose every change is
kept as a transition (who, when, why). Nothing is registered that has not passed every gate.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any, Literal

from mlops_kit.core.rollback_policy import blocked_versions
from mlops_kit.core.rotation import Lineup, VariantWeight, promotion_order, serving_champion

MODEL_GROUP_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
"""SageMaker's rule for ModelPackageGroupName; the local registry follows it too."""
REGISTERED_REASON = "registered: all gates passed"
"""The reason of a version's first transition (only passing candidates are registered)."""


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
class CandidateFacts:
    """What a trained candidate brings to the registry: its request carries them, and its
    version keeps them unchanged.

    The classes below put these fields between their own by listing the bases last-first
    (a dataclass takes its bases' fields in reverse MRO order), so that their field order,
    and with it their positional arguments and `asdict` order, stay as they were."""
    training_run_id: str
    metrics: dict[str, float]
    latency: dict[str, float]
    gates: list[dict[str, Any]]
    lineage: dict[str, Any]
    owner: str
    use_case: str
    description: str = ""


@dataclass(frozen=True)
class _RequestHead:
    model_group: str
    model_artifact: str
    """Local model directory, or an s3:// URI of model.tar.gz."""


@dataclass(frozen=True)
class RegistrationRequest(CandidateFacts, _RequestHead):
    """A candidate to register: model_group, model_artifact, then its `CandidateFacts`."""

    def validate_for(self, model_group: str) -> None:
        """`validate`, after checking the request is for the registry's `model_group`."""
        if self.model_group != model_group:
            raise InvalidRegistrationError(
                f"request is for model group '{self.model_group}', registry holds "
                f"'{model_group}'")
        self.validate()

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
class _VersionHead:
    model_group: str
    version: int
    status: ApprovalStatus
    created_at: str
    model_uri: str


@dataclass(frozen=True)
class _VersionStatusChange:
    status_changed_at: str = ""
    status_changed_by: str = ""
    status_reason: str = ""
    archived_at: str = ""
    """Set when the retention policy archived the version; archived versions stay readable."""


@dataclass(frozen=True)
class ModelVersion(_VersionStatusChange, CandidateFacts, _VersionHead):
    """A registered version: its head (group, number, status, creation, model), its
    `CandidateFacts`, then its last status change and archive."""

    @classmethod
    def registered(cls, request: RegistrationRequest, *, version: int, at: str, model_uri: str,
                   lineage: dict[str, Any]) -> "ModelVersion":
        """A new version of `request`, PendingManualApproval since `at`, as `register` stores it."""
        return cls(
            model_group=request.model_group, version=version, status=ApprovalStatus.PENDING,
            created_at=at, model_uri=model_uri, training_run_id=request.training_run_id,
            metrics=dict(request.metrics), latency=dict(request.latency),
            gates=list(request.gates), lineage=lineage, owner=request.owner,
            use_case=request.use_case, description=request.description, status_changed_at=at,
            status_changed_by=request.owner, status_reason=REGISTERED_REASON)

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


DeploymentKind = Literal["promote", "rollback", "rollforward"]


@dataclass(frozen=True)
class DeploymentRecord:
    """One change of what an endpoint serves. `deployment_id` makes recording idempotent."""
    deployment_id: str
    endpoint_name: str
    kind: DeploymentKind
    version: int
    """The version that takes the traffic after this change."""
    variants: tuple[VariantWeight, ...]
    actor: str
    reason: str
    at: str
    previous_version: int | None = None
    """The version that served before (the one rolled back, for a rollback)."""
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["variants"] = [v.to_dict() for v in self.variants]
        return data

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "DeploymentRecord":
        raw = dict(raw)
        raw["variants"] = tuple(VariantWeight.from_dict(v) for v in raw["variants"])
        return cls(**raw)


@dataclass(frozen=True)
class RollbackClaim:
    """Who holds the automatic rollback of an endpoint away from its head deployment."""
    endpoint_name: str
    rolled_back_from: str
    claimed_by: str
    """The deployment id of the rollback that holds it."""
    claimed_at: str
    """ISO-8601 UTC, written by the store's own clock in one fixed-width format (SQLite:
    milliseconds, the ledger: microseconds), so that `claimed_at < bound` compares as strings."""
    from_version: int | None = None
    """What the holder decided: the version it moves the traffic away from..."""
    to_version: int | None = None
    """...and the one it gives the traffic to (None in claims written before they were kept)."""


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

    @abstractmethod
    def set_status(self, version: int, status: ApprovalStatus, *, actor: str,
                   reason: str) -> tuple[ModelVersion, bool]:
        """Change the approval status with who and why; returns (version, changed).

        Setting the status a version already has changes nothing and records nothing.
        """

    @abstractmethod
    def record_deployment(self, record: DeploymentRecord) -> tuple[DeploymentRecord, bool]:
        """Append to the deployment history; a record with a known id is not added again."""

    @abstractmethod
    def deployments(self, endpoint_name: str | None = None) -> list[DeploymentRecord]:
        """The deployment history, oldest first."""

    @abstractmethod
    def claim_rollback(self, endpoint_name: str, rolled_back_from: str, deployment_id: str, *,
                       from_version: int | None = None, to_version: int | None = None,
                       stale_after: timedelta | None = None) -> RollbackClaim:
        """Claim, for `deployment_id`, the automatic rollback of `endpoint_name` away from the
        deployment `rolled_back_from` (the head of its history); returns the claim as it
        stands, whose `claimed_by` is the holder.

        Two alarms of one incident can decide the same rollback at the same instant (on AWS
        nothing serialises the rollback Lambda's invocations, and a weight change has no
        compare-and-swap): only the holder may shift and record it, so the incident gets one
        rollback record and one notification. One atomic conditional write decides; it
        succeeds when no live claim exists (none, or released), when the claim is already
        `deployment_id`'s (a redelivery of the holder: the claim is renewed, `claimed_at`
        moves to now), or when the claim was made more than `stale_after` ago (its holder died
        without releasing it: taken over; None: never). `from_version`/`to_version` record
        what the holder decided, so that a redelivery can recognise its own shift. Claims are
        keyed on the head deployment, so once a newer deployment heads the history old claims
        no longer match anything.
        """

    @abstractmethod
    def release_rollback(self, endpoint_name: str, rolled_back_from: str,
                         deployment_id: str) -> bool:
        """Give the claim up, only if `deployment_id` still holds it (a conditional write):
        the holder does so when its shift did not happen, so that the incident's next alarm
        (or its own redelivery) may claim again. False when it held nothing."""

    @abstractmethod
    def rollback_claim(self, endpoint_name: str, rolled_back_from: str) -> RollbackClaim | None:
        """The live claim on that head (None: never claimed, or released)."""

    def archive(self, version: int, *, actor: str, reason: str) -> tuple[ModelVersion, bool]:
        """Mark a version archived (kept for the record, hidden from default listings)."""
        raise NotImplementedError(f"{type(self).__name__} cannot archive versions")

    def unarchive(self, version: int, *, actor: str, reason: str) -> tuple[ModelVersion, bool]:
        """Bring an archived version back (recorded as a transition)."""
        raise NotImplementedError(f"{type(self).__name__} cannot unarchive versions")

    def ever_approved(self, version: int) -> bool:
        return any(t.to_status == ApprovalStatus.APPROVED for t in self.transitions(version))

    def approve(self, version: int, *, actor: str, reason: str) -> tuple[ModelVersion, bool]:
        return self.set_status(version, ApprovalStatus.APPROVED, actor=actor, reason=reason)

    def reject(self, version: int, *, actor: str, reason: str) -> tuple[ModelVersion, bool]:
        return self.set_status(version, ApprovalStatus.REJECTED, actor=actor, reason=reason)

    # Derived views: never stored, always computed from the history.

    def serving(self, endpoint_name: str | None = None) -> DeploymentRecord | None:
        """The latest deployment of the endpoint (of any endpoint when none is named)."""
        history = self.deployments(endpoint_name)
        return history[-1] if history else None

    def champion(self, endpoint_name: str | None = None) -> ModelVersion | None:
        """The version taking the traffic now, derived from the deployment history."""
        latest = self.serving(endpoint_name)
        if latest is None:
            return None
        live = serving_champion(latest.variants)
        return self.get(live.version) if live else None

    def blocked_versions(self, endpoint_name: str | None = None) -> set[int]:
        """Versions rolled back (and not rolled forward since), or rejected: never re-promoted
        automatically (`core.rollback_policy.blocked_versions`)."""
        rejected = (v.version for v in self.list_versions(ApprovalStatus.REJECTED))
        return blocked_versions(rejected, self.deployments(endpoint_name))

    def lineup(self, endpoint_name: str | None = None) -> Lineup:
        """The promotion order: every version that served as a promotion's champion, newest
        first (`core.rotation.promotion_order`). Not what serves now: a rollback does not
        reorder it (`core.rotation.serving_lineup` is the endpoint's lineup)."""
        return Lineup(promotion_order(self.deployments(endpoint_name)))
