"""Rollback controller: an alarm the kit owns moves traffic to the newest healthy warm
fallback with a weight change (no new fleet), exactly once per alarm transition and once per
incident (alarms of one incident race for a claim in the registry), and records why. Manual
rollback and roll-forward go through the same path."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping, Protocol, Sequence

from mlops_kit.core.alarms import AlarmDefinition, load_definitions, rollback_admission
from mlops_kit.core.rollback_policy import (DEFAULT_COOLDOWN, RollbackDecision, champion_at,
                                            decide_manual_shift, decide_rollback)
from mlops_kit.core.rotation import VariantWeight, serving_champion
from mlops_kit.core.shift_checks import (FOREIGN_CHANGE, UNRECORDED_SHIFT, claim_held_reason,
                                         stale_decision_reason)
from mlops_kit.deploy.controller import DeploymentSettings, retry_horizon, retry_while_busy
from mlops_kit.endpoints import EndpointAdapter, EndpointBusyError
from mlops_kit.deploy.local_endpoint import model_artifact_available
from mlops_kit.deploy.rollback_facts import (EndpointFacts, HealthSource, NoProbes,
                                             NothingToDecide, ShiftRequest, gather_facts)
from mlops_kit.monitoring.alarm_events import AlarmTransition, parse_alarm_event
from mlops_kit.registry.base import DeploymentRecord, ModelRegistry, RollbackClaim
from mlops_kit.clock import utc_now_iso

logger = logging.getLogger(__name__)


class RollbackDeferred(EndpointBusyError):
    """The endpoint is mid-deployment: the alarm must be handled again later."""


class Notifier(Protocol):
    def notify(self, subject: str, message: Mapping[str, Any]) -> None: ...


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
    `core.shift_checks.claim_held_reason`): by then the holder's invocation has ended
    (the Lambda's timeout) without recording its rollback."""

    def __post_init__(self) -> None:
        if self.claim_stale_after <= retry_horizon(self.retry):
            raise ValueError(f"claim_stale_after ({self.claim_stale_after}) must exceed the "
                             f"retry horizon ({retry_horizon(self.retry)}): a live holder "
                             f"could be taken over")


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


@dataclass(frozen=True)
class ShiftResult:
    """How the claim-and-apply step ended (a busy endpoint past the last try raises)."""
    stale: str = ""
    """Why the decision no longer fits the endpoint ("" when it applied)."""
    held_by: RollbackClaim | None = None
    """Another alarm's claim that holds the incident (nothing shifted)."""
    attempts: int = 0


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

    def admits(self, alarm: AlarmTransition) -> tuple[bool, str]:
        """`core.alarms.rollback_admission` with this controller's alarms and endpoints."""
        return rollback_admission(alarm, self.definitions, self.managed_endpoints)

    def handle_event(self, event: Mapping[str, Any]) -> RollbackOutcome:
        """An alarm event (raw, either delivery shape): parsed, then `handle_alarm`."""
        started = time.perf_counter()
        return self.handle_alarm(parse_alarm_event(event), started)

    def handle_alarm(self, alarm: AlarmTransition, started: float | None = None
                     ) -> RollbackOutcome:
        """A parsed alarm transition: roll back when it is the kit's alarm going into ALARM."""
        started = time.perf_counter() if started is None else started
        owned, why = self.admits(alarm)
        if not owned:
            return RollbackOutcome("ignored", why, alarm.endpoint_name)
        return self._shift(ShiftRequest(
            alarm.endpoint_name, "rollback", f"rollback:{alarm.transition_key}",
            f"alarm:{alarm.alarm_name}", f"{alarm.alarm_name} in ALARM: {alarm.reason}",
            alarm.evidence(), started, alarm_raised_at=alarm.state_time))

    # -- manual ------------------------------------------------------------------------------

    def rollback(self, endpoint_name: str, *, actor: str, reason: str,
                 to_version: int | None = None, deployment_id: str | None = None
                 ) -> RollbackOutcome:
        """On-call's rollback: to the newest healthy fallback, or to the named warm version.

        `deployment_id` names this request: delivered again under the same id (the local
        home's outbox, after the process was killed), it completes its own shift instead of
        rolling back a second time."""
        return self._shift(ShiftRequest(
            endpoint_name, "rollback",
            deployment_id or f"manual-rollback:{endpoint_name}:{utc_now_iso()}", actor, reason,
            {"manual": True}, time.perf_counter(), to_version, manual=True))

    def rollforward(self, endpoint_name: str, to_version: int, *, actor: str,
                    reason: str, deployment_id: str | None = None) -> RollbackOutcome:
        """Send the traffic back to a warm version (e.g. the one rolled back, once fixed)."""
        return self._shift(ShiftRequest(
            endpoint_name, "rollforward",
            deployment_id or f"rollforward:{endpoint_name}:{utc_now_iso()}", actor, reason,
            {"manual": True}, time.perf_counter(), to_version, manual=True))

    # -- the one path: gather facts → decide → claim → apply → record → notify ---------------

    def _shift(self, request: ShiftRequest) -> RollbackOutcome:
        facts = gather_facts(request, registry=self.registry, endpoints=self.endpoints,
                             health=self.health, clock=self.clock,
                             artifact_available=self.artifact_available)
        if isinstance(facts, NothingToDecide):
            return RollbackOutcome(facts.action, facts.reason, request.endpoint_name,
                                   deployment_id=facts.deployment_id)
        if facts.change.kind == UNRECORDED_SHIFT:
            # Traffic moved but no record says so: an earlier delivery shifted the weights
            # and failed before writing the history. Finish it instead of deciding again.
            return self._complete_unrecorded(request, facts)
        if facts.change.kind == FOREIGN_CHANGE:
            # Decide on the endpoint as it is, like every decision here; keep the discrepancy.
            request = request.with_evidence(unrecorded_change=facts.change.note)
        request, decision = self._decide(request, facts)
        decided = request.elapsed()
        if decision.action != "rollback":
            return self._answer_without_shift(request, decision, decided)
        result = self._claim_and_apply(request, facts, decision)
        if result.held_by is not None:
            return self._claimed_elsewhere(request.endpoint_name, result.held_by,
                                           decision.from_version, decided)
        return self._record_and_notify(request, facts, decision, result.attempts, decided)

    def _decide(self, request: ShiftRequest, facts: EndpointFacts
                ) -> tuple[ShiftRequest, RollbackDecision]:
        if request.manual:
            return request, decide_manual_shift(facts.policy, request.to_version, facts.target)
        if request.alarm_raised_at is not None:
            # The champion the alarm was raised against, by the history (None: the alarm is
            # older than every record): kept with the rollback and its notification.
            about = champion_at(facts.history, request.alarm_raised_at)
            request = request.with_evidence(raised_against=about.version if about else None)
        return request, decide_rollback(facts.policy, cooldown=self.settings.cooldown,
                                        require_probe=self.settings.require_probe)

    def _answer_without_shift(self, request: ShiftRequest, decision: RollbackDecision,
                              decided: float) -> RollbackOutcome:
        name = request.endpoint_name
        if decision.action == "defer":
            raise RollbackDeferred(decision.reason)
        if decision.action == "superseded":
            # Not this champion's alarm. While it stays in ALARM it sends no other transition,
            # so on-call hears of it: if the new champion fails too, nothing else rolls it back.
            logger.warning("alarm not rolled back: %s", decision.reason)
            self._notify(f"[{name}] alarm not acted on: the champion changed since",
                         {"endpoint": name, "reason": request.reason,
                          "decision": decision.reason, "evidence": request.evidence})
            return RollbackOutcome("none", decision.reason, name, decision.from_version,
                                   decided_in_seconds=decided)
        if decision.action == "no_healthy_fallback":
            self._notify(f"[{name}] ALERT: alarm fired but no healthy fallback",
                         {"endpoint": name, "reason": request.reason,
                          "decision": decision.reason, "evidence": request.evidence})
            return RollbackOutcome("no_healthy_fallback", decision.reason, name,
                                   decision.from_version, decided_in_seconds=decided)
        return RollbackOutcome("none", decision.reason, name, decision.from_version,
                               decided_in_seconds=decided)

    def _claim_and_apply(self, request: ShiftRequest, facts: EndpointFacts,
                         decision: RollbackDecision) -> ShiftResult:
        """Each try: check the decision still fits the endpoint, claim, change the weights.

        Two alarms released at the same instant both pass the check, and
        UpdateEndpointWeightsAndCapacities would accept both: the claim is the first durable
        write, and only its holder shifts, records and notifies. Manual shifts are explicit
        operator actions: they go ahead whoever holds the claim, but write one when none is
        live, as the record of what they are about to do (from, to), so that their redelivery
        can recognise its own shift. A busy retry claims again, which renews the claim (see
        `RollbackSettings.claim_stale_after`)."""
        name, rolled_back_from = request.endpoint_name, facts.rolled_back_from
        claimed = False  # whether this invocation holds the claim: released if nothing shifts

        def attempt() -> ShiftResult:
            nonlocal claimed
            now = self.endpoints.describe(name)
            stale = stale_decision_reason(name, facts.view.variants, decision.weights,
                                          now.variants if now is not None else None,
                                          decision.from_version)
            if stale:
                return ShiftResult(stale=stale)
            claim = self.registry.claim_rollback(
                name, rolled_back_from, request.deployment_id,
                from_version=decision.from_version, to_version=decision.to_version,
                stale_after=self.settings.claim_stale_after)
            if not request.manual:
                if claim.claimed_by != request.deployment_id:
                    return ShiftResult(held_by=claim)
                claimed = True
            self.endpoints.set_weights(name, decision.weights)
            return ShiftResult()

        try:
            result, attempts = retry_while_busy(attempt, self.settings.retry, self.sleep)
            if result.stale:
                raise RollbackDeferred(f"{result.stale}: nothing shifted, the alarm must be "
                                       f"decided again on the endpoint as it is now")
        except BaseException as exc:
            # Claimed, but the weights did not change (busy past the last try, rejected,
            # deferred, interrupted): give the claim back before the error surfaces, or every
            # other alarm about this head would find it and do nothing while this event waits
            # for its redelivery. Once the weights changed the claim stays: it is what lets the
            # redelivery, and no other alarm, record that shift.
            if claimed:
                self._release(name, rolled_back_from, request.deployment_id, exc)
            raise
        return replace(result, attempts=attempts)

    def _record_and_notify(self, request: ShiftRequest, facts: EndpointFacts,
                           decision: RollbackDecision, attempts: int,
                           decided: float) -> RollbackOutcome:
        shifted_at = utc_now_iso()
        variants = tuple(VariantWeight(v.variant_name, v.version, decision.weights[v.variant_name],
                                       v.instance_count) for v in facts.view.variants)
        seconds = round(request.elapsed(), 4)
        self.registry.record_deployment(DeploymentRecord(
            deployment_id=request.deployment_id, endpoint_name=request.endpoint_name,
            kind=request.kind, version=decision.to_version,  # type: ignore[arg-type]
            variants=variants, actor=request.actor, reason=request.reason, at=shifted_at,
            previous_version=decision.from_version,
            evidence={**request.evidence, "decision": decision.reason,
                      "skipped": list(decision.skipped), "attempts": attempts,
                      "seconds_to_shift": seconds}))
        self._notify_shift(request, decision.from_version, decision.to_version, shifted_at)
        return RollbackOutcome(request.action, decision.reason, request.endpoint_name,
                               decision.from_version, decision.to_version,
                               request.deployment_id, decided,
                               {"attempts": attempts, "shifted_at": shifted_at,
                                "seconds_to_shift": seconds})

    def _complete_unrecorded(self, request: ShiftRequest, facts: EndpointFacts
                             ) -> RollbackOutcome:
        """Record the shift an earlier delivery made, but only as the request that claimed
        it: another alarm of the same incident would record it under its own id, a second time
        once the claimer is redelivered (a claim older than `claim_stale_after` is taken over:
        its holder is gone)."""
        name, previous = request.endpoint_name, facts.change.from_version
        champion = serving_champion(facts.view.variants)
        assert champion is not None  # an unrecorded shift has a champion
        claim = self.registry.claim_rollback(
            name, facts.rolled_back_from, request.deployment_id, from_version=previous,
            to_version=champion.version, stale_after=self.settings.claim_stale_after)
        if claim.claimed_by != request.deployment_id:
            return self._claimed_elsewhere(name, claim, previous, request.elapsed())
        at = utc_now_iso()
        self.registry.record_deployment(DeploymentRecord(
            deployment_id=request.deployment_id, endpoint_name=name,
            kind=request.kind, version=champion.version,  # type: ignore[arg-type]
            variants=facts.view.variants, actor=request.actor, reason=request.reason, at=at,
            previous_version=previous,
            evidence={**request.evidence, "decision": "completed an unrecorded shift"}))
        # The crashed delivery never got to its notification: this is the incident's one.
        self._notify_shift(request, previous, champion.version, at)
        return RollbackOutcome(request.action, "completed an earlier, unrecorded shift", name,
                               previous, champion.version, request.deployment_id,
                               request.elapsed())

    # -- effects ---------------------------------------------------------------------------

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
        """`none`: another alarm's rollback holds this incident (`claim_held_reason` says
        when on-call must hear of it)."""
        held = claim_held_reason(endpoint_name, claim, from_version, self.clock(),
                                 alert_after=self.settings.claim_alert_after,
                                 stale_after=self.settings.claim_stale_after)
        if held.alert:
            logger.warning("rollback held by an old claim: %s", held.reason)
            self._notify(f"[{endpoint_name}] ALERT: alarm held off by an unfinished rollback "
                         f"claim", {"endpoint": endpoint_name, "reason": held.reason,
                                    **held.details})
        else:
            logger.info("rollback held by another alarm: %s", held.reason)
        return RollbackOutcome("none", held.reason, endpoint_name, from_version,
                               decided_in_seconds=decided, details=dict(held.details))

    def _notify_shift(self, request: ShiftRequest, from_version: int | None,
                      to_version: int | None, at: str) -> None:
        self._notify(f"[{request.endpoint_name}] {request.kind}: v{from_version} → v{to_version}",
                     {"endpoint": request.endpoint_name, "kind": request.kind,
                      "from": from_version, "to": to_version, "reason": request.reason,
                      "evidence": request.evidence, "at": at})

    def _notify(self, subject: str, message: Mapping[str, Any]) -> None:
        if self.notifier is not None:
            self.notifier.notify(subject, message)
