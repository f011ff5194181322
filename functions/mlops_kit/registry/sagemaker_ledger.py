"""The SageMaker registry's ledger port: the audit trail of transitions, the deployment
history and the rollback claims live in the DynamoDB ledger only (SageMaker keeps none of
them)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, Callable, Mapping

from mlops_kit import retry
from mlops_kit.aws.ledger import DEPLOYMENT_PREFIX, TRANSITION_PREFIX, Ledger, version_key

from .base import ApprovalStatus, DeploymentRecord, RollbackClaim, Transition


class LedgerPort:
    """The ledger-only reads and writes of `SageMakerRegistry` (which provides `ledger`,
    `deployment_ledger` and `model_group`, and `_describe` of a package).

    The versions' records and transitions are in the registry's ledger (the registry
    account's); what an endpoint served and the rollback claims are in the deployment ledger,
    the endpoint's environment's own (the same table in a one-account deployment)."""

    ledger: Ledger
    deployment_ledger: Ledger
    model_group: str
    _describe: Callable[[int, str], dict[str, Any]]

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

    def record_deployment(self, record: DeploymentRecord) -> tuple[DeploymentRecord, bool]:
        existing = self.deployment_ledger.put_deployment(record.deployment_id, record.endpoint_name,
                                              record.to_dict())
        if existing is not None:
            return DeploymentRecord.from_dict(existing), False
        return record, True

    def deployments(self, endpoint_name: str | None = None) -> list[DeploymentRecord]:
        history = []
        for item in self.deployment_ledger.query_prefix(DEPLOYMENT_PREFIX):
            if endpoint_name is not None and item.get("endpoint_name") != endpoint_name:
                continue
            history.append(DeploymentRecord.from_dict(json.loads(item["record"])))
        return history

    def claim_rollback(self, endpoint_name: str, rolled_back_from: str, deployment_id: str, *,
                       from_version: int | None = None, to_version: int | None = None,
                       stale_after: timedelta | None = None) -> RollbackClaim:
        return _rollback_claim(self.deployment_ledger.claim_rollback(
            endpoint_name, rolled_back_from, deployment_id, from_version=from_version,
            to_version=to_version, stale_after=stale_after))

    def release_rollback(self, endpoint_name: str, rolled_back_from: str,
                         deployment_id: str) -> bool:
        return self.deployment_ledger.release_rollback(endpoint_name, rolled_back_from, deployment_id)

    def rollback_claim(self, endpoint_name: str, rolled_back_from: str) -> RollbackClaim | None:
        item = self.deployment_ledger.rollback_claim(endpoint_name, rolled_back_from)
        return _rollback_claim(item) if item is not None else None


def _rollback_claim(item: Mapping[str, Any]) -> RollbackClaim:
    return RollbackClaim(item["endpoint_name"], item["rolled_back_from"], item["claimed_by"],
                         item["claimed_at"], item.get("from_version"), item.get("to_version"))


class _LedgerMoved(Exception):
    """The ledger's status changed between our read and our compare-and-swap."""


def _is_ledger_moved(exc: BaseException) -> bool:
    return isinstance(exc, _LedgerMoved)
