"""The SageMaker registry's promotions: a version's promotion to an environment is its
`ModelLifeCycle` update (stage = the environment, stage status Approved), which SageMaker emits
as a "SageMaker Model Package State Change" event that the environment's bus receives, and an
item in the registry account's ledger (who, when, why; SageMaker keeps only the latest stage).

The package is updated first, the ledger item written second: killed in between, the version
is deployed (the event went out) but not recorded, so the promotion is not yet counted and
promoting again completes it (the environment's controller finds its endpoint already serving
it). The other order could record a promotion that never deployed.
"""

from __future__ import annotations

from typing import Any, Callable

from mlops_kit.aws.ledger import PROMOTION_PREFIX, Ledger
from mlops_kit.clock import utc_now_iso
from mlops_kit.core.promotion import Promotion

from .base import ApprovalStatus, InvalidRegistrationError, ModelVersion

PROMOTED = "Approved"


def promotion_key(version: int, environment: str) -> str:
    return f"{PROMOTION_PREFIX}{int(version):010d}#{environment}"


class PromotionPort:
    """Mixed into `SageMakerRegistry` (which provides `ledger`, `model_group`, `get`,
    `set_status`, `model_package_arn`, `_describe` and `_update_package`)."""

    ledger: Ledger
    model_group: str
    get: Callable[[int], ModelVersion]

    def promotions(self, version: int | None = None) -> list[Promotion]:
        found = [_promotion(self.model_group, item)
                 for item in self.ledger.query_prefix(PROMOTION_PREFIX)]
        found = [p for p in found if version is None or p.version == int(version)]
        return sorted(found, key=lambda p: (p.at, p.environment))

    def record_promotion(self, version: int, environment: str, *, actor: str, reason: str,
                         approve: bool = False) -> tuple[Promotion, bool]:
        if not actor.strip() or not reason.strip():
            raise InvalidRegistrationError("a promotion needs who (actor) and why (reason)")
        existing = self.ledger.get(promotion_key(version, environment))
        if existing is not None:
            return _promotion(self.model_group, existing), False
        current = self.get(version)
        if current.status != ApprovalStatus.APPROVED:
            if not approve:
                raise InvalidRegistrationError(
                    f"{self.model_group} v{version} is {current.status}: approve it (or "
                    f"promote it to its first environment) before {environment}")
            self.set_status(version, ApprovalStatus.APPROVED, actor=actor,  # type: ignore
                            reason=f"promoted to {environment}: {reason}")
        arn = self.model_package_arn(version)  # type: ignore[attr-defined]
        described = self._describe(version, arn)  # type: ignore[attr-defined]
        self._update_package(  # type: ignore[attr-defined]
            described, status=described.get("ModelApprovalStatus"),
            description=described.get("ApprovalDescription"),
            properties=dict(described.get("CustomerMetadataProperties") or {}),
            lifecycle={"Stage": environment, "StageStatus": PROMOTED,
                       "StageDescription": " ".join(reason.split())[:1024]})
        promotion = Promotion(self.model_group, int(version), environment, actor, reason,
                              utc_now_iso())
        stored = self.ledger.put_once(promotion_key(version, environment), {
            "version": promotion.version, "environment": environment, "actor": actor,
            "reason": reason, "at": promotion.at, "model_package_arn": arn})
        if stored is not None:  # another promoter's landed first: theirs is the record
            return _promotion(self.model_group, stored), False
        return promotion, True


def _promotion(group: str, item: dict[str, Any]) -> Promotion:
    return Promotion(group, int(item["version"]), item["environment"], item["actor"],
                     item["reason"], item["at"])
