"""Guards on the paths that move traffic: may this version take the traffic at all?

Pure: the controllers read the registry (approval status, archive mark) and check the model
artifact, and pass the answers here as plain values; the same refusal, with the same reason,
runs in the Lambda and locally. A refusal's reason names the version and what to do about it.
"""

from __future__ import annotations

from dataclasses import dataclass

REJECTED = "Rejected"
"""The registry's approval status (`ApprovalStatus.REJECTED`) as a plain string."""


@dataclass(frozen=True)
class VersionFacts:
    """What the registry (and the artifact check) say about a version that would serve."""
    version: int
    status: str
    """The registry's approval status: Approved, Rejected, PendingManualApproval."""
    archived_at: str = ""
    """Set when retention archived the version."""
    status_reason: str = ""
    model_uri: str = ""
    artifact_available: bool = True
    """Whether the model artifact the endpoint would load exists (see the controllers'
    `artifact_available`: checked for local directories, trusted for s3:// URIs)."""


def archived_reason(facts: VersionFacts) -> str:
    return (f"version {facts.version} was archived by retention at {facts.archived_at}: "
            f"unarchive it first (`mlops registry approve {facts.version} --unarchive "
            f"--reason ...`)")


def missing_artifact_reason(version: int, model_uri: str) -> str:
    return (f"the model artifact of v{version} is missing ({model_uri or 'no model URI'}): "
            f"the endpoint could not load it; restore the model directory (or register the "
            f"model again and approve the new version), or pick another version")


def promotion_refusal(facts: VersionFacts) -> str:
    """Why an approved version must not be deployed ("" when it may).

    An archived version is one retention took out of use; approving it again (the registry
    keeps its status) must not bring it back into service without a word: it is unarchived
    on purpose first. (Rejected and blocked versions are refused by the controller already.)
    """
    if facts.archived_at:
        return archived_reason(facts)
    return ""


def rollforward_refusal(facts: VersionFacts) -> str:
    """Why a roll-forward must not send the traffic to this version ("" when it may).

    A roll-forward unblocks a version that was rolled back, but it never overrides the
    registry: a Rejected version is never served (the automatic and manual rollbacks refuse it
    too), an archived one was taken out of use on purpose, and one whose model artifact is gone
    would leave every request that is not pinned to a variant failing (a local endpoint that
    restarts cannot load it; nothing would roll back).
    """
    if facts.status == REJECTED:
        why = f" ({facts.status_reason})" if facts.status_reason else ""
        return (f"v{facts.version} is Rejected in the registry{why}: a rejected version never "
                f"takes traffic. If the rejection was a mistake, approve it again "
                f"(`mlops registry approve {facts.version} --reason ...`), which deploys it")
    if facts.archived_at:
        return archived_reason(facts)
    if not facts.artifact_available:
        return missing_artifact_reason(facts.version, facts.model_uri)
    return ""
