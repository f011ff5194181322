"""The demo's live part, on one endpoint: traffic through the local endpoint with capture, drift,
monitor ticks until the rollback controller acts on an alarm, then the traffic verified.

Time is compressed: one monitor tick every `period` seconds stands for a drift monitor on a
5-minute schedule, and the alarms are fitted to that schedule as CloudWatch's are to the
stage's; thresholds and the M-out-of-N rule are the ones CloudWatch gets. `demo.py` sets the
endpoint up before and turns what this part saw into the demo's result after.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from mlops_kit.config import LocalSettings
from mlops_kit.core.metric_catalogue import FEATURE_PSI_MAX, PREDICTION_PSI
from mlops_kit.core.timestamps import parse_iso
from mlops_kit.local.demo_endpoint import EndpointClient, LiveTraffic
from mlops_kit.local.demo_picture import DRAWN_ALARMS
from mlops_kit.local.demo_records import Timeline, TrafficLog

ALARM_PERIOD_SECONDS = 300
"""The virtual seconds one demo tick stands for: a 5-minute drift-monitor schedule, so the
per-run alarms get 300 s periods, each compressed into one tick."""

MAX_MONITOR_TICKS = 40
DRIFT_STARTS_AT_TICK = 3
VERIFY_REQUESTS = 200

Step = Callable[..., float]
"""`step(what, detail="", at=None)`: report a step and mark it on the timeline; its time."""


@dataclass
class LiveOutcome:
    """What the live part saw, on the demo's timeline."""
    verified: dict[str, int]
    """Requests of the verification answered, per variant."""
    alarm_at: float | None
    shifted_at: float | None
    """When the rollback's weights were written."""
    points: list[dict[str, Any]] = field(default_factory=list)
    """One per monitor tick: the picture's drift and alarm panels."""


def _rows_as_csv(frame, features: list[str]) -> list[str]:
    values = frame[features].astype(object).where(frame[features].notna(), "")
    return [",".join(str(v) for v in row) for row in values.itertuples(index=False)]


def _endpoint_value(result, name: str) -> float | None:
    for datum in result.metrics:
        if datum.name == name and set(datum.dimensions) == {"EndpointName"}:
            return datum.value
    return None


class LivePart:
    def __init__(self, settings: LocalSettings, client: EndpointClient, *, timeline: Timeline,
                 traffic: TrafficLog, step: Step, period_seconds: float):
        self.settings, self.client = settings, client
        self.timeline, self.traffic, self.step = timeline, traffic, step
        self.period = period_seconds
        self.points: list[dict[str, Any]] = []

    def run(self) -> LiveOutcome:
        """Traffic through the endpoint, drift, monitor ticks until the rollback, then the
        traffic verified."""
        from mlops_kit.data.synthetic import DriftSpec, generate
        from mlops_kit.local.monitor import LocalMonitor
        from mlops_pipelines.steps.schema import FRAUD_SAMPLE_SCHEMA

        features = list(FRAUD_SAMPLE_SCHEMA.features)
        monitor = LocalMonitor(self.settings, time_scale=self.period / ALARM_PERIOD_SECONDS,
                               schedule_minutes=ALARM_PERIOD_SECONDS // 60)
        probes = monitor.probe(
            lambda variant, body: self.client.invoke(body, variant=variant)[:2],
            datetime.now(timezone.utc))
        self.step("probes", ", ".join(f"{r.variant_name} {'ok' if r.ok else 'FAILED'} "
                                      f"{r.latency_ms:.1f} ms" for r in probes))
        normal = _rows_as_csv(generate(4000, seed=100), features)
        drifted = _rows_as_csv(generate(20000, seed=101, drift=DriftSpec("covariate", 1.0)),
                               features)
        with LiveTraffic(self.client, normal, self.traffic, self.timeline) as traffic:
            self.step("live traffic", f"two clients on {self.settings.endpoint_name}, CSV "
                                      f"rows, every request captured")
            alarm_at, shifted_at = self._watch_until_rollback(monitor, traffic, drifted)
            time.sleep(2.0)  # traffic keeps flowing on the fallback: the picture shows it
        return LiveOutcome(self._verify(drifted), alarm_at, shifted_at, self.points)

    def _watch_until_rollback(self, monitor, traffic: LiveTraffic, drifted: list[str]
                              ) -> tuple[float | None, float | None]:
        """Tick the monitor until a rollback (drifting the traffic on the way); returns when the
        first alarm went off and when the rollback's weights were written, on the timeline."""
        alarm_at = shifted_at = None
        for tick in range(MAX_MONITOR_TICKS):
            time.sleep(self.period)
            if tick == DRIFT_STARTS_AT_TICK:
                traffic.rows = drifted
                self.step("drift starts", "covariate shift: bigger velocity, riskier IPs, "
                                          "more online traffic")
            ticked = datetime.now(timezone.utc)
            result = monitor.tick(ticked)
            self._record_point(monitor, result, ticked)
            first_alarm = self._mark_alarms(result, ticked)
            alarm_at = first_alarm if alarm_at is None else alarm_at
            shifted_at = self._mark_rollbacks(result)
            if shifted_at is not None:
                break
        return alarm_at, shifted_at

    def _record_point(self, monitor, result, ticked: datetime) -> None:
        """One point of the picture's drift and alarm panels."""
        states = monitor.evaluator.states()
        self.points.append({
            "at": self.timeline.relative(ticked),
            "feature_psi_max": result.value(FEATURE_PSI_MAX.name),
            "prediction_psi": _endpoint_value(result, PREDICTION_PSI.name),
            "alarms": {alarm: states.get(f"{self.settings.endpoint_name}-{alarm}", {})
                       .get("state", "INSUFFICIENT_DATA") for alarm in DRAWN_ALARMS}})

    def _mark_alarms(self, result, ticked: datetime) -> float | None:
        """Each alarm the tick raised on the timeline; the first one's time, if any."""
        first = None
        for event in result.events:
            detail = event["detail"]
            if detail["state"]["value"] == "ALARM":
                # The evaluator's transition happened at the tick's time, before the rollback
                # controller got the event.
                at = self.step("alarm", f"{detail['alarmName']}: {detail['state']['reason']}",
                               at=self.timeline.relative(ticked))
                first = at if first is None else first
        return first

    def _mark_rollbacks(self, result) -> float | None:
        """Each rollback the tick made on the timeline, at the time its weights were written;
        the last one's time, None when there was none."""
        shifted_at = None
        for outcome in result.outcomes:
            if getattr(outcome, "action", "") == "rolled_back":
                shifted = parse_iso(outcome.details["shifted_at"])
                shifted_at = self.step(
                    "automatic rollback",
                    f"{self.settings.endpoint_name} v{outcome.from_version} → "
                    f"v{outcome.to_version}: weights written "
                    f"{outcome.details['seconds_to_shift'] * 1000:.1f} ms after the "
                    f"controller got the alarm (same fleet)",
                    at=self.timeline.relative(shifted))
        return shifted_at

    def _verify(self, drifted: list[str]) -> dict[str, int]:
        """Which variants answer the drifted traffic now: requests answered, per variant."""
        verified: dict[str, int] = {}
        for i in range(VERIFY_REQUESTS):
            status, _, variant = self.client.invoke(drifted[i])
            if status == 200:
                verified[variant] = verified.get(variant, 0) + 1
        self.step("verified", ", ".join(f"{n} of {VERIFY_REQUESTS} requests on {v}"
                                        for v, n in sorted(verified.items())))
        return verified
