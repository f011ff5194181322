"""Every alarm that feeds rollback (and the notify-only capture-stopped alarm), evaluated with CloudWatch's semantics (`core.alarms.replay`:
period, evaluation periods, datapoints to alarm, missing-data treatment, only what is visible
at each minute) over the datapoints the drift monitor actually emits, timestamps included, on
the schedule the template sets: a simulated incident reaches ALARM, its state-change event
matches the rollback rule and the rollback controller (as its role) shifts traffic; healthy
traffic stays OK. Every value comes from the synthesized templates."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import numpy as np
import pytest

from mlops_kit.core.alarms import AlarmDefinition, Datapoint, load_specs, replay

from .scenario import Scenario, baseline_documents, capture_line, now_minute
from .test_event_rules import alarm_event, matching_rules
from .test_failure_destinations import lifecycle_without_rollback

INCIDENTS = ("feature-drift", "prediction-drift", "champion-5xx", "champion-latency",
             "performance")
RUNS = 7
INCIDENT_FROM = 3
"""The incident starts with the traffic of run 3 (0-based) and lasts to the end."""


def rollback_alarm_ids() -> set[str]:
    return {spec.id for spec in load_specs() if spec.rollback}


def stage_alarm_ids() -> set[str]:
    """Every alarm of the definition file that the stage deploys (the AWS home's)."""
    return {spec.id for spec in load_specs() if "aws" in spec.homes}


def test_every_rollback_alarm_is_simulated_here(stage):
    endpoint = stage.output(stage.control, "EndpointName")
    deployed = {name.removeprefix(f"{endpoint}-") for name in stage.alarms()
                if name.startswith(f"{endpoint}-")}
    assert rollback_alarm_ids() <= deployed
    assert rollback_alarm_ids() == set(INCIDENTS)


def schedule_minutes(stage) -> int:
    (rule,) = [r for logical, r in stage.rules().items() if logical.startswith("ControlDrift")]
    return int(re.match(r"rate\((\d+) minutes?\)", rule["ScheduleExpression"]).group(1))


class Traffic:
    """What the endpoint's champion (v2) sees between two monitor runs, healthy or not."""

    def __init__(self, incident: str | None):
        self.incident = incident
        self.rng = np.random.default_rng(7)
        _, _, self.amounts = baseline_documents()

    def broken(self, kind: str, run: int) -> bool:
        return self.incident == kind and run >= INCIDENT_FROM

    def capture(self, run: int, at: datetime) -> tuple[list[str], dict[str, int]]:
        rows = 400
        amounts = self.rng.choice(self.amounts, rows)
        channels = self.rng.choice(["pos"] * 70 + ["online"] * 30, rows)
        if self.broken("feature-drift", run):
            amounts, channels = amounts * 3, np.array(["online"] * rows)
        scores = self.rng.beta(1, 20, rows)
        if self.broken("prediction-drift", run):
            scores = self.rng.beta(5, 5, rows)
        # 10 % fraud: the highest-scored rows while the model is right, the lowest-scored
        # ones once it has gone bad.
        truth = (scores > np.quantile(scores, 0.9)).astype(int)
        if self.broken("performance", run):
            truth = (scores < np.quantile(scores, 0.1)).astype(int)
        ids = [f"r{run}-{i}" for i in range(rows)]
        lines = [capture_line(float(a), str(c), float(s), at, inference_id=i)
                 for a, c, s, i in zip(amounts, channels, scores, ids)]
        return lines, dict(zip(ids, (int(t) for t in truth)))

    def sagemaker(self, run: int) -> tuple[float, float]:
        errors = 20.0 if self.broken("champion-5xx", run) else 0.0
        latency = 450_000.0 if self.broken("champion-latency", run) else 4_000.0
        return errors, latency

    def captured(self, run: int) -> bool:
        """SageMaker's capture stops silently (a bucket policy or KMS key refusing it) while
        the endpoint keeps answering: no capture object lands."""
        return not self.broken("capture-stopped", run)


def simulate(sc: Scenario, incident: str | None) -> tuple[list, datetime, datetime]:
    """RUNS drift-monitor runs on the template's schedule; returns what they emitted (with the
    time each run's datapoints became visible), the first and the last run's time."""
    schedule = timedelta(minutes=schedule_minutes(sc.stage))
    first = now_minute() - RUNS * schedule
    # v2 serves the simulated traffic, so it was promoted before it: the controller stamps its
    # records with the real clock, which is past the simulated runs, and an alarm older than
    # the champion's promotion is not rolled back (core/rollback_policy.py superseded_reason).
    promoted_at = (first - schedule).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr("mlops_kit.deploy.controller.utc_now_iso", lambda: promoted_at)
        lifecycle_without_rollback(sc)  # v2 champion, v1 warm and probed
    traffic = Traffic(incident)
    emitted = []
    labels_due: dict[str, int] = {}
    for run in range(RUNS):
        at = first + run * schedule
        lines, labels = traffic.capture(run, at - schedule + timedelta(minutes=1))
        if traffic.captured(run):
            sc.capture("v2", lines, at - timedelta(minutes=1), f"run-{run}")
        if labels_due:  # the previous window's labels land during this one
            sc.ground_truth(labels_due, at - timedelta(minutes=2), f"run-{run}")
        labels_due = labels
        errors, latency = traffic.sagemaker(run)
        minutes = schedule_minutes(sc.stage)
        sc.sagemaker_metrics("v2", at - schedule - timedelta(minutes=5), minutes + 5,
                             errors=errors, latency_us=latency,
                             invocations=len(lines) / minutes)  # what the capture would hold
        result = sc.drift_run(at)
        assert result["status"] == "published", result
        visible = at + timedelta(minutes=1)  # the run, then EMF extraction from its log
        emitted += [(d, visible) for d in sc.runs[-1].metrics]
    return emitted, first, first + (RUNS - 1) * schedule


def transitions(stage, alarm_id: str, emitted, start: datetime, end: datetime):
    endpoint = stage.output(stage.control, "EndpointName")
    name = f"{endpoint}-{alarm_id}"
    definition = AlarmDefinition.from_cloudformation(name, stage.alarms()[name])
    points = [Datapoint(d.timestamp, d.value, visible) for d, visible in emitted
              if d.namespace == definition.namespace and d.name == definition.metric
              and dict(d.dimensions) == dict(definition.dimensions)]
    return name, replay(definition, points, start, end + timedelta(minutes=30))


@pytest.mark.parametrize("incident", INCIDENTS)
def test_an_incident_reaches_alarm_and_rolls_back(world, monkeypatch, capsys, incident):
    sc = Scenario(world, monkeypatch, capsys)
    emitted, start, end = simulate(sc, incident)
    name, changes = transitions(sc.stage, incident, emitted, start, end)
    alarms = [t for t in changes if t.state == "ALARM"]
    assert alarms, f"{name} never reached ALARM: {changes}"
    schedule = timedelta(minutes=schedule_minutes(sc.stage))
    incident_start = start + INCIDENT_FROM * schedule - schedule
    assert alarms[0].at >= incident_start, "alarmed before the incident"
    assert alarms[0].at <= incident_start + 4 * schedule, "detected too late"

    change = alarm_event(name)
    change["time"] = alarms[0].at.strftime("%Y-%m-%dT%H:%M:%SZ")
    change["detail"]["state"]["timestamp"] = alarms[0].at.isoformat()
    change["detail"]["state"]["reason"] = alarms[0].evaluation.reason
    assert matching_rules(sc.stage, change)  # EventBridge delivers it to the controller
    sc.probe_run(now_minute())
    outcome = sc.run("rollback_controller", change)
    assert outcome["action"] == "rolled_back", outcome


def test_capture_stopping_while_invocations_continue_notifies_and_never_rolls_back(
        world, monkeypatch, capsys):
    sc = Scenario(world, monkeypatch, capsys)
    emitted, start, end = simulate(sc, "capture-stopped")
    name, changes = transitions(sc.stage, "capture-stopped", emitted, start, end)
    alarms = [t for t in changes if t.state == "ALARM"]
    assert alarms, f"{name} never reached ALARM: {changes}"
    schedule = timedelta(minutes=schedule_minutes(sc.stage))
    incident_start = start + INCIDENT_FROM * schedule - schedule
    assert incident_start <= alarms[0].at <= incident_start + 4 * schedule
    uncaptured = [d.value for d, _ in emitted if d.name == "UncapturedInvocations"]
    assert uncaptured[:INCIDENT_FROM] == [0.0] * INCIDENT_FROM
    assert all(v >= 50 for v in uncaptured[INCIDENT_FROM:]), uncaptured
    # No rollback alarm moves: the models are fine.
    for alarm_id in sorted(rollback_alarm_ids()):
        _, rollback_changes = transitions(sc.stage, alarm_id, emitted, start, end)
        assert all(t.state != "ALARM" for t in rollback_changes), (alarm_id, rollback_changes)
    # Notify-only: its state change matches no rule, so it never reaches the rollback
    # controller (and the controller would ignore it if it did).
    change = alarm_event(name)
    change["detail"]["state"]["reason"] = alarms[0].evaluation.reason
    assert matching_rules(sc.stage, change) == set()
    assert not AlarmDefinition.from_cloudformation(name, sc.stage.alarms()[name]).variant_scoped
    outcome = sc.run("rollback_controller", change)
    assert outcome["action"] == "ignored", outcome


def test_healthy_traffic_stays_ok(world, monkeypatch, capsys):
    sc = Scenario(world, monkeypatch, capsys)
    emitted, start, end = simulate(sc, None)
    for alarm_id in sorted(stage_alarm_ids()):
        name, changes = transitions(sc.stage, alarm_id, emitted, start, end)
        assert all(t.state != "ALARM" for t in changes), (name, changes)
