"""Registry operations that read across versions and deployments, for either backend."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Mapping, Sequence

from mlops_kit.core.retention import (ArchiveDecision, RetentionCandidate, RetentionPolicy,
                                      select_for_archive)
from mlops_kit.core.rollback_policy import blocked_versions, champion_spells
from mlops_kit.core.rotation import (DEFAULT_WARM_FALLBACKS, protected_versions, serving_champion,
                                     serving_lineup)
from mlops_kit.core.timestamps import parse_iso
from mlops_kit.endpoints import EndpointAdapter
from mlops_kit.registry.base import ApprovalStatus, DeploymentRecord, ModelRegistry


def prune(registry: ModelRegistry, *, endpoint_name: str | None, policy: RetentionPolicy,
          actor: str, dry_run: bool, now: datetime | None = None,
          warm_fallbacks: int = DEFAULT_WARM_FALLBACKS) -> list[ArchiveDecision]:
    """Archive what the retention policy selects; the champion and its warm fallbacks (N-1,
    N-2) are protected (`core.rotation.protected_versions`)."""
    now = now or datetime.now(timezone.utc)
    protected = protected_versions(registry.deployments(endpoint_name),
                                   warm_fallbacks=warm_fallbacks)
    candidates = [RetentionCandidate(v.version, parse_iso(v.created_at),
                                     registry.ever_approved(v.version), bool(v.archived_at))
                  for v in registry.list_versions()]
    decisions = select_for_archive(candidates, protected, policy, now)
    if not dry_run:
        for decision in decisions:
            registry.archive(decision.version, actor=actor, reason=f"retention: {decision.reason}")
    return decisions


def lineage(registry: ModelRegistry, version: int) -> dict[str, Any]:
    """data → code → run → version → deployments, for one version."""
    found = registry.get(version)
    record = found.lineage
    deployments = [
        {"at": d.at, "endpoint": d.endpoint_name, "kind": d.kind, "actor": d.actor,
         "reason": d.reason,
         "role": ("champion" if d.version == version else "warm fallback"),
         "weight": next(v.weight for v in d.variants if v.version == version)}
        for d in registry.deployments() if any(v.version == version for v in d.variants)
    ]
    return {
        "model_group": found.model_group,
        "version": found.version,
        "data": record.get("data", {}),
        "code": record.get("code", {}),
        "run": {"training_run_id": found.training_run_id,
                "pipeline_run": record.get("pipeline_run", ""),
                "parameters": record.get("parameters", {}),
                "libraries": record.get("libraries", {}),
                "container_image": record.get("container_image", {})},
        "model": {"uri": found.model_uri, "sha256": record.get("model_sha256", ""),
                  "status": str(found.status), "metrics": found.metrics,
                  "gates": found.gates, "owner": found.owner,
                  "transitions": [t.to_dict() for t in registry.transitions(version)]},
        "deployments": deployments,
    }


def status(registry: ModelRegistry, endpoints: EndpointAdapter, endpoint_name: str, *,
           alarms: Sequence[Mapping[str, Any]] = (), cooldown: timedelta | None = None,
           now: datetime | None = None) -> dict[str, Any]:
    """What serves now, since when, each variant's version and weight; and the story on-call
    needs: the kit's alarms and their states, the last change of the traffic with its reason
    and evidence, whether the rollback cooldown holds, and the next step."""
    view = endpoints.describe(endpoint_name)
    history = registry.deployments(endpoint_name)
    latest = history[-1] if history else None
    variants = []
    if view is not None:
        for variant in view.variants:
            try:
                record = registry.get(variant.version)
                approval, aupr = str(record.status), record.metrics.get("aupr")
            except Exception:  # a variant the registry does not know: show it, flagged
                approval, aupr = "unknown to the registry", None
            variants.append({**variant.to_dict(), "approval_status": approval, "aupr": aupr})
    champion = serving_champion(view.variants) if view else None
    since = _champion_since(history, champion.version) if champion is not None else None
    versions = registry.list_versions()
    # What serves now (the records' head when the endpoint is gone), without the versions a
    # rollback moved away from: they stay warm at weight 0 but are no fallback.
    blocked = blocked_versions((v.version for v in versions
                                if v.status == ApprovalStatus.REJECTED), history)
    lineup = serving_lineup(view.variants if view else latest.variants if latest else (),
                            blocked)
    return {
        "endpoint": endpoint_name,
        "exists": view is not None,
        "status": view.status if view else "NotDeployed",
        "config_name": view.config_name if view else "",
        "champion": champion.version if champion else None,
        "champion_since": since,
        "variants": sorted(variants, key=lambda v: -v["weight"] * 1e9 - v["version"]),
        "lineup": list(lineup.versions),
        "last_deployment": latest.to_dict() if latest else None,
        "versions": [{"version": v.version, "status": str(v.status),
                      "archived": bool(v.archived_at)} for v in versions],
        **story(history, alarms, cooldown, now or datetime.now(timezone.utc),
                exists=view is not None),
    }


def _champion_since(history: Sequence[DeploymentRecord], version: int) -> str | None:
    """The `at` of the record that made `version` the champion, when the records' latest
    champion spell is its (`core.rollback_policy.champion_spells`); else None."""
    spells = champion_spells(history)
    if not spells or spells[-1].version != version:
        return None
    return next(r.at for r in history if r.deployment_id == spells[-1].deployment_id)


def story(history: Sequence[DeploymentRecord], alarms: Sequence[Mapping[str, Any]],
          cooldown: timedelta | None, now: datetime, *, exists: bool) -> dict[str, Any]:
    """The last rollback (who or which alarm, why, evidence), the cooldown it started, the
    alarms and what to do next."""
    rollback = next((r for r in reversed(history) if r.kind == "rollback"), None)
    last = {"rollback": None, "cooldown": None}
    steps: list[str] = []
    if rollback is not None:
        alarm = rollback.actor.removeprefix("alarm:") if rollback.actor.startswith("alarm:") else ""
        last["rollback"] = {
            "at": rollback.at, "from_version": rollback.previous_version,
            "to_version": rollback.version, "automatic": bool(alarm), "alarm": alarm,
            "actor": rollback.actor, "reason": rollback.reason,
            "evidence": rollback.evidence, "deployment_id": rollback.deployment_id}
        if cooldown is not None:
            until = parse_iso(rollback.at) + cooldown
            last["cooldown"] = {"until": until.isoformat(timespec="seconds"),
                                "active": now < until, "minutes": cooldown.total_seconds() / 60}
    firing = [a for a in alarms if a.get("state") == "ALARM"]
    if not exists:
        steps.append("not deployed: approve a version (`mlops registry approve N --reason ...`)")
    for alarm in firing:
        steps.append(f"alarm {alarm['name']} is in ALARM since {alarm.get('since') or '?'}"
                     + ("" if alarm.get("rollback", True) else " (operational: notify only)"))
    head = history[-1] if history else None
    if rollback is not None and head is rollback:
        steps.append(f"v{rollback.previous_version} was rolled back ({rollback.reason}): find the "
                     f"cause (`mlops registry lineage {rollback.previous_version}`), then approve "
                     f"a fixed version, or `mlops rollforward --to {rollback.previous_version} "
                     f"--reason ...` once it is fixed")
    cooling = last["cooldown"]
    if cooling and cooling["active"]:
        steps.append(f"automatic rollback is paused until {cooling['until']} (cooldown after "
                     f"the last rollback); `mlops rollback --reason ...` works now")
    return {"alarms": [dict(a) for a in alarms], "last_rollback": last["rollback"],
            "cooldown": cooling, "next_steps": steps}
