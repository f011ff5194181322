"""Rollback controller: an alarm the kit owns moves traffic to the newest healthy warm
fallback with a weight change (no new fleet), exactly once per alarm transition and once per
incident (alarms of one incident race for a claim in the registry), and records why. Manual
rollback and roll-forward go through the same path."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping, Protocol, Sequence

from mlops_kit.core.alarms import AlarmDefinition, load_definitions
from mlops_kit.core.guards import VersionFacts, rollforward_refusal
from mlops_kit.core.rollback_policy import (DEFAULT_COOLDOWN, RollbackDecision, RollbackFacts,
                                            VariantHealth, champion_at, decide_rollback,
                                            last_rollback_time, unfit_reason)
from mlops_kit.core.rotation import VariantWeight, serving_champion
from mlops_kit.deploy.controller import DeploymentSettings, retry_while_busy
from mlops_kit.deploy.endpoints import EndpointAdapter, EndpointBusyError
from mlops_kit.deploy.local_endpoint import model_artifact_available
from mlops_kit.monitoring.alarm_events import AlarmTransition, parse_alarm_event
from mlops_kit.registry.base import (DeploymentRecord, ModelRegistry, RollbackClaim,
                                     UnknownVersionError)
from mlops_kit.serving.state import now as iso_now

logger = logging.getLogger(__name__)


class RollbackDeferred(EndpointBusyError):
    """The endpoint is mid-deployment: the alarm must be handled again later."""


class HealthSource(Protocol):
    def probe_results(self, endpoint_name: str) -> Mapping[str, bool | None]:
        """Last synthetic-probe verdict per variant name (None: never probed)."""


class Notifier(Protocol):
    def notify(self, subject: str, message: Mapping[str, Any]) -> None: ...


class NoProbes:
    def probe_results(self, endpoint_name: str) -> Mapping[str, bool | None]:
        return {}


@dataclass(frozen=True)
class RollbackSettings:
    cooldown: timedelta = DEFAULT_COOLDOWN
    require_probe: bool = True
    """A fallback that was never probed is not trusted (set False only where no probe runs)."""
    retry: DeploymentSettings = field(default_factory=lambda: DeploymentSettings(""))
    claim_stale_after: timedelta = timedelta(minutes=5)
    """How old a rollback claim must be before another alarm may take it over. A holder whose
    shift does not happen releases its claim; this bound is for the one that cannot (the Lambda
    killed at its timeout, out of memory). It must exceed the longest a live holder goes
    without renewing its claim (each busy retry claims again, which renews it): one invocation
    at most, i.e. the retry horizon (6 tries with 2-30 s waits: about 60 s of waiting, checked
    below) and the rollback Lambda's 2-minute timeout (infra/constructs/control_functions.py).
    5 minutes is that timeout with a margin for clock skew between invocations, and still well
    inside the alarm's cooldown (15 minutes), so the incident's next alarm is not lost."""
    claim_alert_after: timedelta = timedelta(minutes=2)
    """An alarm held off by a claim at least this old notifies on-call (see
    `RollbackController._claimed_elsewhere`): by then the holder's invocation has ended
    (the Lambda's timeout) without recording its rollback."""

    def __post_init__(self) -> None:
        if self.claim_stale_after <= retry_horizon(self.retry):
            raise ValueError(f"claim_stale_after ({self.claim_stale_after}) must exceed the "
                             f"retry horizon ({retry_horizon(self.retry)}): a live holder "
                             f"could be taken over")


def retry_horizon(settings: DeploymentSettings) -> timedelta:
    """The waiting `retry_while_busy` does before it gives up."""
    return timedelta(seconds=sum(
        min(settings.max_delay_seconds, settings.base_delay_seconds * 2 ** (attempt - 1))
        for attempt in range(1, settings.max_attempts)))


@dataclass(frozen=True)
class RollbackOutcome:
    action: str
    """rolled_back | rolled_forward | ignored | duplicate | none | no_healthy_fallback"""
    reason: str
    endpoint_name: str = ""
    from_version: int | None = None
    to_version: int | None = None
    deployment_id: str = ""
    decided_in_seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "reason": self.reason, "endpoint": self.endpoint_name,
                "from_version": self.from_version, "to_version": self.to_version,
                "deployment_id": self.deployment_id,
                "decided_in_seconds": self.decided_in_seconds, **self.details}


class RollbackController:
    def __init__(self, registry: ModelRegistry, endpoints: EndpointAdapter, *,
                 health: HealthSource | None = None, notifier: Notifier | None = None,
                 settings: RollbackSettings | None = None,
                 definitions: Sequence[AlarmDefinition] | None = None,
                 managed_endpoints: Sequence[str] | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 artifact_available: Callable[[str], bool] = model_artifact_available):
        """`artifact_available(uri)` says whether a version's model artifact is there to be
        served; the default checks local model directories and trusts s3:// URIs (no API
        call: see `model_artifact_available` for what that leaves unchecked in AWS). It is
        asked about the model directory each variant serves from when the endpoint adapter
        names it (the local one does; the SageMaker one names none, its warm variants hold
        their models already), and about a roll-forward target's registered `model_uri`."""
        self.registry = registry
        self.endpoints = endpoints
        self.health = health or NoProbes()
        self.notifier = notifier
        self.settings = settings or RollbackSettings()
        self.definitions = tuple(definitions or load_definitions())
        self.managed_endpoints = set(managed_endpoints or ())
        self.sleep = sleep
        self.clock = clock
        self.artifact_available = artifact_available

    # -- alarms ------------------------------------------------------------------------------

    def owns(self, alarm: AlarmTransition) -> tuple[bool, str]:
        endpoint = alarm.endpoint_name
        if not endpoint:
            return False, "the alarm's metric names no EndpointName"
        if self.managed_endpoints and endpoint not in self.managed_endpoints:
            return False, f"endpoint {endpoint} is not managed here"
        for definition in self.definitions:
            if definition.rollback and alarm.alarm_name == definition.alarm_name(endpoint):
                return True, definition.id
        return False, f"alarm {alarm.alarm_name} is not one of the kit's rollback alarms"

    def handle_event(self, event: Mapping[str, Any]) -> RollbackOutcome:
        started = time.perf_counter()
        alarm = parse_alarm_event(event)
        if alarm.state != "ALARM" or alarm.previous_state == "ALARM":
            return RollbackOutcome("ignored", f"{alarm.alarm_name}: {alarm.previous_state or '?'}"
                                              f" → {alarm.state} is not a transition into ALARM",
                                   alarm.endpoint_name)
        owned, why = self.owns(alarm)
        if not owned:
            return RollbackOutcome("ignored", why, alarm.endpoint_name)
        outcome = self._shift(alarm.endpoint_name, kind="rollback",
                              deployment_id=f"rollback:{alarm.transition_key}",
                              actor=f"alarm:{alarm.alarm_name}",
                              reason=f"{alarm.alarm_name} in ALARM: {alarm.reason}",
                              evidence=alarm.evidence(), started=started,
                              alarm_raised_at=alarm.state_time)
        return outcome

    # -- manual ------------------------------------------------------------------------------

    def rollback(self, endpoint_name: str, *, actor: str, reason: str,
                 to_version: int | None = None, deployment_id: str | None = None
                 ) -> RollbackOutcome:
        """On-call's rollback: to the newest healthy fallback, or to the named warm version.

        `deployment_id` names this request: delivered again under the same id (the local
        home's outbox, after the process was killed), it completes its own shift instead of
        rolling back a second time."""
        return self._shift(endpoint_name, kind="rollback",
                           deployment_id=deployment_id
                           or f"manual-rollback:{endpoint_name}:{iso_now()}",
                           actor=actor, reason=reason, evidence={"manual": True},
                           to_version=to_version, started=time.perf_counter(), manual=True)

    def rollforward(self, endpoint_name: str, to_version: int, *, actor: str,
                    reason: str, deployment_id: str | None = None) -> RollbackOutcome:
        """Send the traffic back to a warm version (e.g. the one rolled back, once fixed)."""
        return self._shift(endpoint_name, kind="rollforward",
                           deployment_id=deployment_id
                           or f"rollforward:{endpoint_name}:{iso_now()}",
                           actor=actor, reason=reason, evidence={"manual": True},
                           to_version=to_version, started=time.perf_counter(), manual=True)

    # -- the one path ------------------------------------------------------------------------

    def _shift(self, endpoint_name: str, *, kind: str, deployment_id: str, actor: str,
               reason: str, evidence: dict[str, Any], started: float,
               to_version: int | None = None, manual: bool = False,
               alarm_raised_at: datetime | None = None) -> RollbackOutcome:
        history = self.registry.deployments(endpoint_name)
        if any(d.deployment_id == deployment_id for d in history):
            return RollbackOutcome("duplicate", "this alarm transition was already handled",
                                   endpoint_name, deployment_id=deployment_id)
        view = self.endpoints.describe(endpoint_name)
        if view is None:
            return RollbackOutcome("none", f"endpoint {endpoint_name} does not exist: nothing "
                                           f"serves yet. Approve a version first (`mlops "
                                           f"registry approve N --reason ...`), or name the "
                                           f"endpoint (--endpoint, MLOPS_ENDPOINT)",
                                   endpoint_name)
        probes = self.health.probe_results(endpoint_name)
        health = {v.variant_name: VariantHealth(v.variant_name, view.in_service, v.instance_count,
                                                probes.get(v.variant_name))
                  for v in view.variants}
        blocked = frozenset(self.registry.blocked_versions(endpoint_name))
        missing = self._missing_artifacts(view)
        champion = serving_champion(view.variants)
        head = history[-1] if history else None
        unrecorded: tuple[int, RollbackClaim | None] | None = None
        if manual and champion is not None and head is not None and not _same_lineup(
                view.variants, head.variants):
            # A manual shift delivered again: if its own claim names what serves now, this
            # request shifted the traffic and died before recording it: record it, once.
            own = self.registry.rollback_claim(endpoint_name, head.deployment_id)
            if (own is not None and own.claimed_by == deployment_id
                    and own.to_version == champion.version and own.from_version is not None):
                unrecorded = (own.from_version, own)
        elif not manual and champion is not None and head is not None and not _same_lineup(
                view.variants, head.variants):
            # The endpoint is not what its last record says: something changed it unrecorded.
            unrecorded = self._unrecorded_rollback(endpoint_name, head, view.variants,
                                                   champion, blocked)
            recorded = serving_champion(head.variants)
            if unrecorded is None and (recorded is None or recorded.version != champion.version
                                       or _variant_set(view.variants)
                                       != _variant_set(head.variants)):
                # Not a rollback of this kit's (e.g. a promotion applied whose record failed:
                # a new variant set). Recording it as "our" rollback would name the new
                # champion the fallback and never roll back from it; deferring until its
                # record appears could wait for ever (its redeliveries may run out) while the
                # alarm is about what serves now. Decide on the endpoint as it is, like every
                # decision here, and keep the discrepancy in the evidence.
                evidence = {**evidence, "unrecorded_change": (
                    f"{endpoint_name} serves v{champion.version} in a lineup no record names "
                    f"(last record {head.deployment_id}: "
                    f"v{recorded.version if recorded else '?'}); decided on the endpoint as "
                    f"it is")}
        if unrecorded is not None:
            # Traffic moved but no record says so: an earlier delivery of an alarm shifted
            # the weights and failed before writing the history. Finish that rollback instead
            # of deciding again (which would pick the version the alarm was about, or roll back
            # a second time), but only as the alarm that claimed it: another alarm of the same
            # incident would record it under its own id, a second time once the claimer is
            # redelivered (a claim older than `claim_stale_after` is taken over: its holder is
            # gone).
            previous, _ = unrecorded
            assert head is not None and champion is not None
            claim = self.registry.claim_rollback(
                endpoint_name, head.deployment_id, deployment_id, from_version=previous,
                to_version=champion.version, stale_after=self.settings.claim_stale_after)
            if claim.claimed_by != deployment_id:
                return self._claimed_elsewhere(endpoint_name, claim, previous,
                                               time.perf_counter() - started)
            record = DeploymentRecord(
                deployment_id=deployment_id, endpoint_name=endpoint_name, kind=kind,  # type: ignore[arg-type]
                version=champion.version, variants=view.variants, actor=actor, reason=reason,
                at=iso_now(), previous_version=previous,
                evidence={**evidence, "decision": "completed an unrecorded shift"})
            self.registry.record_deployment(record)
            # The crashed delivery never got to its notification: this is the incident's one.
            self._notify(f"[{endpoint_name}] {kind}: v{previous} → v{champion.version}",
                         {"endpoint": endpoint_name, "kind": kind, "from": previous,
                          "to": champion.version, "reason": reason, "evidence": evidence,
                          "at": record.at})
            return RollbackOutcome("rolled_back" if kind == "rollback" else "rolled_forward",
                                   "completed an earlier, unrecorded shift",
                                   endpoint_name, previous, champion.version,
                                   deployment_id, time.perf_counter() - started)
        if manual:
            decision = self._manual_decision(
                view.variants, view.status, champion, to_version,
                blocked if kind == "rollback" else frozenset(), health, missing,
                self._rollforward_facts(to_version) if kind == "rollforward" else None)
        else:
            if alarm_raised_at is not None:
                # The champion the alarm was raised against, by the history (None: the alarm
                # is older than every record): kept with the rollback and its notification.
                about = champion_at(history, alarm_raised_at)
                evidence = {**evidence, "raised_against": about.version if about else None}
            decision = decide_rollback(
                RollbackFacts(view.status, view.variants, health, blocked,
                              last_rollback_time(history), self.clock(),
                              missing_artifacts=missing, alarm_raised_at=alarm_raised_at,
                              history=tuple(history)),
                cooldown=self.settings.cooldown, require_probe=self.settings.require_probe)
        decided = time.perf_counter() - started
        if decision.action == "defer":
            raise RollbackDeferred(decision.reason)
        if decision.action == "superseded":
            # Not this champion's alarm. While it stays in ALARM it sends no other
            # transition, so on-call hears of it: if the new champion fails too, nothing
            # else will roll it back.
            logger.warning("alarm not rolled back: %s", decision.reason)
            self._notify(f"[{endpoint_name}] alarm not acted on: the champion changed since",
                         {"endpoint": endpoint_name, "reason": reason,
                          "decision": decision.reason, "evidence": evidence})
            return RollbackOutcome("none", decision.reason, endpoint_name, decision.from_version,
                                   decided_in_seconds=decided)
        if decision.action == "no_healthy_fallback":
            self._notify(f"[{endpoint_name}] ALERT: alarm fired but no healthy fallback",
                         {"endpoint": endpoint_name, "reason": reason, "decision": decision.reason,
                          "evidence": evidence})
            return RollbackOutcome("no_healthy_fallback", decision.reason, endpoint_name,
                                   decision.from_version, decided_in_seconds=decided)
        if decision.action != "rollback":
            return RollbackOutcome("none", decision.reason, endpoint_name, decision.from_version,
                                   decided_in_seconds=decided)

        changed: list[str] = []
        claimed_by: list[RollbackClaim] = []
        held: list[bool] = []
        shifted: list[bool] = []
        # What this rollback moves the traffic away from: the record that made the champion
        # serve (or, for an endpoint the kit has no record of, the serving version).
        rolled_back_from = (history[-1].deployment_id if history
                            else f"serving:v{decision.from_version}")

        def shift() -> None:
            # The weights were decided for the lineup described above. If a promotion replaced
            # it meanwhile (in AWS the deployment Lambda runs apart from this one), applying
            # them would leave a mixed lineup (the new champion and the fallback both at 1) or
            # name a variant that is gone: decide again on the new lineup instead.
            # Likewise if the traffic moved meanwhile (another alarm's invocation shifted it:
            # reserved concurrency 1 is not a lock, and UpdateEndpointWeightsAndCapacities has
            # no compare-and-swap): shifting again would record a second rollback for one
            # incident; decided again, the alarm finds that rollback's cooldown.
            now = self.endpoints.describe(endpoint_name)
            names = sorted(v.variant_name for v in now.variants) if now else []
            if names != sorted(decision.weights):
                changed.append(f"the lineup of {endpoint_name} changed while deciding (decided "
                               f"for {', '.join(sorted(decision.weights))}; now "
                               f"{', '.join(names) or 'none'})")
                return
            decided_from = {v.variant_name: v.weight for v in view.variants}
            if {v.variant_name: v.weight for v in now.variants} != decided_from:
                changed.append(f"the traffic of {endpoint_name} moved while deciding (decided "
                               f"from v{decision.from_version} serving)")
                return
            # Two alarms released at the same instant both pass the check above, and
            # UpdateEndpointWeightsAndCapacities would accept both: the claim is the first
            # durable write, and only its holder shifts, records and notifies. Manual shifts
            # are explicit operator actions: they go ahead whoever holds the claim, but write
            # one when none is live, as the record of what they are about to do (from, to),
            # so that their redelivery can recognise its own shift.
            # A busy retry claims again, which renews the claim (see claim_stale_after).
            if manual:
                self.registry.claim_rollback(
                    endpoint_name, rolled_back_from, deployment_id,
                    from_version=decision.from_version, to_version=decision.to_version,
                    stale_after=self.settings.claim_stale_after)
            else:
                claim = self.registry.claim_rollback(
                    endpoint_name, rolled_back_from, deployment_id,
                    from_version=decision.from_version, to_version=decision.to_version,
                    stale_after=self.settings.claim_stale_after)
                if claim.claimed_by != deployment_id:
                    claimed_by.append(claim)
                    return
                held.append(True)
            self.endpoints.set_weights(endpoint_name, decision.weights)
            shifted.append(True)

        try:
            _, attempts = retry_while_busy(shift, self.settings.retry, self.sleep)
            if changed:
                raise RollbackDeferred(f"{changed[0]}: nothing shifted, the alarm must be "
                                       f"decided again on the endpoint as it is now")
        except BaseException as exc:
            # Claimed, but the weights did not change (busy past the last try, rejected,
            # deferred, interrupted): give the claim back before the error surfaces, or every
            # other alarm about this head would find it and do nothing while this event waits
            # for its redelivery. Once the weights changed the claim stays: it is what lets the
            # redelivery, and no other alarm, record that shift.
            if held and not shifted:
                self._release(endpoint_name, rolled_back_from, deployment_id, exc)
            raise
        if claimed_by:
            return self._claimed_elsewhere(endpoint_name, claimed_by[0],
                                           decision.from_version, decided)
        shifted_at = iso_now()
        variants = tuple(VariantWeight(v.variant_name, v.version, decision.weights[v.variant_name],
                                       v.instance_count) for v in view.variants)
        record = DeploymentRecord(
            deployment_id=deployment_id, endpoint_name=endpoint_name, kind=kind,  # type: ignore[arg-type]
            version=decision.to_version, variants=variants, actor=actor, reason=reason,
            at=shifted_at, previous_version=decision.from_version,
            evidence={**evidence, "decision": decision.reason, "skipped": list(decision.skipped),
                      "attempts": attempts,
                      "seconds_to_shift": round(time.perf_counter() - started, 4)})
        self.registry.record_deployment(record)
        self._notify(f"[{endpoint_name}] {kind}: v{decision.from_version} → v{decision.to_version}",
                     {"endpoint": endpoint_name, "kind": kind, "from": decision.from_version,
                      "to": decision.to_version, "reason": reason, "evidence": evidence,
                      "at": shifted_at})
        action = "rolled_back" if kind == "rollback" else "rolled_forward"
        return RollbackOutcome(action, decision.reason, endpoint_name, decision.from_version,
                               decision.to_version, deployment_id, decided,
                               {"attempts": attempts, "shifted_at": shifted_at,
                                "seconds_to_shift": record.evidence["seconds_to_shift"]})

    def _missing_artifacts(self, view) -> dict[int, str]:
        """Versions on the endpoint whose model directory is gone (version → URI); only
        adapters that name the served model directories (the local one) are checked."""
        uris: Mapping[str, str] = getattr(view, "model_uris", None) or {}
        return {v.version: uris[v.variant_name] for v in view.variants
                if v.variant_name in uris and not self.artifact_available(uris[v.variant_name])}

    def _rollforward_facts(self, version: int | None) -> VersionFacts | None:
        """What the registry says about a roll-forward target (None: it does not know it)."""
        if version is None:
            return None
        try:
            known = self.registry.get(version)
        except UnknownVersionError:
            return None
        return VersionFacts(version, str(known.status), known.archived_at, known.status_reason,
                            known.model_uri, self.artifact_available(known.model_uri))

    def _manual_decision(self, variants, status, champion, to_version, blocked, health,
                         missing, target_facts: VersionFacts | None = None):
        if status != "InService":
            return RollbackDecision("defer", f"endpoint is {status}")
        if to_version is None:
            return decide_rollback(RollbackFacts(status, variants, health, blocked, None,
                                                 self.clock(), missing_artifacts=missing),
                                   cooldown=timedelta(0), require_probe=False)
        target = next((v for v in variants if v.version == to_version), None)
        if target is None:
            warm = ", ".join(f"v{v.version}" for v in variants)
            return RollbackDecision("none", f"v{to_version} is not warm on this endpoint "
                                            f"(warm: {warm}); promote it by approval instead")
        if champion is not None and champion.version == to_version:
            return RollbackDecision("none", f"v{to_version} already takes the traffic")
        if target_facts is not None:
            refused = rollforward_refusal(target_facts)
            if refused:
                return RollbackDecision("none", f"v{to_version} cannot take the traffic: "
                                                f"{refused}")
        why = unfit_reason(target, RollbackFacts(status, variants, health, blocked, None,
                                                 self.clock(), missing_artifacts=missing),
                           require_probe=False)
        if why:
            return RollbackDecision("none", f"v{to_version} cannot take the traffic: {why}")
        weights = {v.variant_name: 1.0 if v.version == to_version else 0.0 for v in variants}
        return RollbackDecision("rollback", f"v{champion.version if champion else '?'} → "
                                            f"v{to_version} (manual)",
                                champion.version if champion else None, to_version, weights)

    def _unrecorded_rollback(self, endpoint_name: str, head: DeploymentRecord,
                             variants: Sequence[VariantWeight], champion: VariantWeight,
                             blocked: frozenset[int]) -> tuple[int, RollbackClaim | None] | None:
        """(the version rolled back from, the claim) when the endpoint, unlike its head record,
        is what an alarm's rollback from that head leaves; None for any other change.

        Either a live claim on the head names the serving champion as its holder's target (the
        holder decided that shift and made it), or, for a shift whose claim is gone, the lineup
        has a rollback's shape: the same variants as the head record, the champion one of its
        warm weight-0 fallbacks and not a blocked version (a rollback never picks one), the
        recorded champion now at weight 0. A promotion brings a new variant set; a roll-forward
        sends the traffic to a blocked version: neither passes.
        """
        claim = self.registry.rollback_claim(endpoint_name, head.deployment_id)
        if (claim is not None and claim.to_version == champion.version
                and claim.from_version is not None and claim.from_version != champion.version):
            return claim.from_version, claim
        recorded = serving_champion(head.variants)
        if recorded is None or recorded.version == champion.version:
            return None
        if _variant_set(variants) != _variant_set(head.variants):
            return None
        before = {v.variant_name: v for v in head.variants}
        now = {v.variant_name: v for v in variants}
        if before[champion.variant_name].weight != 0 or champion.version in blocked:
            return None
        if now[recorded.variant_name].weight != 0:
            return None
        return recorded.version, claim

    def _release(self, endpoint_name: str, rolled_back_from: str, deployment_id: str,
                 cause: BaseException) -> None:
        try:
            self.registry.release_rollback(endpoint_name, rolled_back_from, deployment_id)
        except Exception:  # the original error matters more; the claim goes stale instead
            logger.exception("could not release the rollback claim of %s on %s (%s); it can be "
                             "taken over after %s", deployment_id, endpoint_name,
                             rolled_back_from, self.settings.claim_stale_after)
        else:
            logger.warning("released the rollback claim of %s on %s (%s): nothing shifted "
                           "(%s: %s)", deployment_id, endpoint_name, rolled_back_from,
                           type(cause).__name__, cause)

    def _claimed_elsewhere(self, endpoint_name: str, claim: RollbackClaim,
                           from_version: int | None, decided: float) -> RollbackOutcome:
        """`none`: another alarm's rollback holds this incident. Notifications stay low: a
        claim younger than `claim_alert_after` is the normal case of two alarms of one incident
        seconds apart, and its holder notifies its own rollback; only a claim at least that old
        (its holder's invocation has ended without recording: it died, and its redelivery or the
        take-over after `claim_stale_after` is all that is left) notifies on-call, since this
        alarm's `none` is cached by idempotency and will not run again."""
        holder, rolled_back_from = claim.claimed_by, claim.rolled_back_from
        reason = (f"{holder} already rolls {endpoint_name} back from v{from_version} "
                  f"({rolled_back_from}), claimed at {claim.claimed_at}: one rollback per "
                  f"incident, nothing shifted")
        details = {"claimed_by": holder, "claimed_at": claim.claimed_at,
                   "rolled_back_from": rolled_back_from}
        try:
            age = self.clock() - datetime.fromisoformat(claim.claimed_at.replace("Z", "+00:00"))
        except ValueError:  # pragma: no cover - both stores write ISO-8601
            age = timedelta(0)
        if age >= self.settings.claim_alert_after:
            free_at = (datetime.fromisoformat(claim.claimed_at.replace("Z", "+00:00"))
                       + self.settings.claim_stale_after)
            reason += (f"; the claim is {int(age.total_seconds())} s old and its rollback is "
                       f"not recorded: its holder may be dead. The next alarm may take it over "
                       f"from {free_at.isoformat(timespec='seconds')}; `mlops rollback` "
                       f"works now")
            logger.warning("rollback held by an old claim: %s", reason)
            self._notify(f"[{endpoint_name}] ALERT: alarm held off by an unfinished rollback "
                         f"claim", {"endpoint": endpoint_name, "reason": reason, **details})
        else:
            logger.info("rollback held by another alarm: %s", reason)
        return RollbackOutcome("none", reason, endpoint_name, from_version,
                               decided_in_seconds=decided, details=details)

    def _notify(self, subject: str, message: Mapping[str, Any]) -> None:
        if self.notifier is not None:
            self.notifier.notify(subject, message)


def _variant_set(variants: Sequence[VariantWeight]) -> set[tuple[str, int]]:
    return {(v.variant_name, v.version) for v in variants}


def _same_lineup(a: Sequence[VariantWeight], b: Sequence[VariantWeight]) -> bool:
    return ({(v.variant_name, v.version, float(v.weight)) for v in a}
            == {(v.variant_name, v.version, float(v.weight)) for v in b})
