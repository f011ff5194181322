"""`mlops demo`: the whole lifecycle on one machine, in one command.

data → pipeline v1 → approve → deploy → pipeline v2 → approve → deploy (v1 warm) → live traffic
through the local endpoint with capture → drift → monitor → alarm → automatic rollback to v1 →
traffic verified on v1; then a timeline and a picture of what happened.

Every step is the kit's own code path (pipeline runner, registry, deployment and rollback
controllers, drift monitor, alarm evaluator, local endpoint); the demo only drives it. Time is
compressed: one monitor tick every `period_seconds` stands for a drift monitor on a 5-minute
schedule, and the alarms are fitted to that schedule as CloudWatch's are to the stage's;
thresholds and the M-out-of-N rule are the ones CloudWatch gets.

This module is the scenario; what it records is in `demo_records`, its side of the local
endpoint in `demo_endpoint`, and the picture in `demo_picture`.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Callable

from mlops_kit.config import LocalSettings
from mlops_kit.core.metric_catalogue import FEATURE_PSI_MAX, PREDICTION_PSI
from mlops_kit.core.timestamps import parse_iso
from mlops_kit.local.demo_endpoint import (EndpointClient, LiveTraffic, start_endpoint,
                                           stop_endpoint)
from mlops_kit.local.demo_picture import DRAWN_ALARMS, draw_lifecycle
from mlops_kit.local.demo_records import DemoResult, Timeline, TrafficLog

__all__ = ["ALARM_PERIOD_SECONDS", "DRAWN_ALARMS", "V2_DATA_FACTOR", "Demo", "DemoResult",
           "EndpointClient", "Timeline", "TrafficLog", "demo_settings"]

V2_DATA_FACTOR = 3
"""v2's training data against v1's."""

ALARM_PERIOD_SECONDS = 300
"""The virtual seconds one demo tick stands for: a 5-minute drift-monitor schedule, so the
per-run alarms get 300 s periods, each compressed into one tick."""

MAX_MONITOR_TICKS = 40
DRIFT_STARTS_AT_TICK = 3
VERIFY_REQUESTS = 200


def _verdict_line(evaluation: dict[str, Any]) -> str:
    """The candidate's AUPR, and against the champion on the same rows when there is one."""
    line = f"AUPR {evaluation['metrics']['aupr']:.4f}"
    comparison = evaluation.get("comparison")
    if comparison:
        aupr = comparison["aupr"]
        share = round(comparison["confidence"] * 100)
        line += (f" vs champion {aupr['champion']:.4f} on the same test rows "
                 f"({-aupr['worsening']:+.4f}, {share}% interval {-aupr['upper']:+.4f} to "
                 f"{-aupr['lower']:+.4f})")
    return line


def _rows_as_csv(frame, features: list[str]) -> list[str]:
    values = frame[features].astype(object).where(frame[features].notna(), "")
    return [",".join(str(v) for v in row) for row in values.itertuples(index=False)]


def _endpoint_value(result, name: str) -> float | None:
    for datum in result.metrics:
        if datum.name == name and set(datum.dimensions) == {"EndpointName"}:
            return datum.value
    return None


class Demo:
    def __init__(self, settings: LocalSettings, *, rows: int = 50_000,
                 period_seconds: float = 2.0, report: Callable[[str], None] = print):
        self.settings = settings
        self.rows = rows
        self.period = period_seconds
        self.report = report
        self.timeline = Timeline()
        self.traffic = TrafficLog()
        self.points: list[dict[str, Any]] = []

    def _step(self, what: str, detail: str = "", at: float | None = None) -> float:
        at = self.timeline.mark(what, detail, at)
        self.report(f"[{at:6.1f}s] {what}" + (f": {detail}" if detail else ""))
        return at

    def run(self) -> DemoResult:
        from mlops_kit.data.synthetic import DriftSpec, generate
        from mlops_kit.local.control_plane import local_registry
        from mlops_kit.local.pipeline_runner import run_pipeline
        from mlops_pipelines.steps._io import write_table
        from mlops_pipelines.steps.schema import FRAUD_SAMPLE_SCHEMA

        home = self.settings.home
        if home.exists():
            shutil.rmtree(home)
        home.mkdir(parents=True)
        registry = local_registry(self.settings)
        features = list(FRAUD_SAMPLE_SCHEMA.features)

        # v2 learns from three times the data v1 had: genuinely better on the same rows, which
        # the champion comparison shows (a retrain on as much data would be refused by it).
        self._step("data", f"{self.rows:,} rows of last month's transactions (v1), "
                           f"{self.rows * V2_DATA_FACTOR:,} of the last quarter's (v2)")
        for name, seed, rows in (("month-1", 42, self.rows),
                                 ("quarter", 43, self.rows * V2_DATA_FACTOR)):
            write_table(generate(rows, seed=seed), home / "data" / f"{name}.parquet")

        server = None
        try:
            for version, name in ((1, "month-1"), (2, "quarter")):
                result = run_pipeline(self.settings, registry, data=home / "data" / f"{name}.parquet")
                if result.version is None:
                    raise RuntimeError(f"pipeline run on {name} failed a gate: "
                                       + ", ".join(v.gate for v in result.verdicts if not v.passed))
                self._step(f"pipeline v{result.version.version}",
                           f"{_verdict_line(result.evaluation)}, registered PendingManualApproval")
                outcome = self._approve(result.version.version)
                self._step(f"approve v{result.version.version}", outcome)
                if server is None:
                    server, client = self._start_server()
                    self._step("endpoint up", f"local endpoint on 127.0.0.1:{client.port}")
                else:
                    self._wait_for_variant(client, "v2")
            self._step("serving", "v2 champion at weight 1, v1 warm at weight 0")
            return self._live(client, features, generate, DriftSpec)
        finally:
            if server is not None:
                stop_endpoint(server)

    def _approve(self, version: int) -> str:
        from mlops_kit.homes.local import backend as local_backend

        backend = local_backend(self.settings)
        updated, _ = backend.registry.approve(version, actor="demo-scientist",
                                              reason="gates passed; reviewed in the demo")
        outcomes = backend.emit_status_change(updated, "gates passed; reviewed in the demo")
        deployed = [o for o in outcomes if o.action == "deployed"]
        if not deployed:
            raise RuntimeError(f"approval of v{version} did not deploy: "
                               + "; ".join(o.reason for o in outcomes))
        return ", ".join(f"v{v.version}@{v.weight:g}" for v in deployed[0].variants)

    def _start_server(self) -> tuple[subprocess.Popen, EndpointClient]:
        # A method too: benchmarks/rollback/bench_rollback.py sets up its endpoint through it.
        return start_endpoint(self.settings)

    def _wait_for_variant(self, client: EndpointClient, variant: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status, _, served = client.invoke(self._probe_body(), variant=variant)
            if status == 200 and served == variant:
                return
            time.sleep(0.1)
        raise RuntimeError(f"the endpoint never served {variant}")

    def _probe_body(self) -> str:
        from mlops_kit.local.monitor import LocalMonitor
        from mlops_kit.monitoring.probe import baseline_rows

        baseline = LocalMonitor(self.settings).champion_baseline()
        return baseline_rows(baseline.features, baseline.feature_order).splitlines()[0]

    def _live(self, client: EndpointClient, features, generate, DriftSpec) -> DemoResult:
        """Traffic through the endpoint, drift, monitor ticks until the rollback, then the
        traffic verified and the result measured."""
        from mlops_kit.local.monitor import LocalMonitor

        monitor = LocalMonitor(self.settings, time_scale=self.period / ALARM_PERIOD_SECONDS,
                               schedule_minutes=ALARM_PERIOD_SECONDS // 60)
        probes = monitor.probe(lambda variant, body: client.invoke(body, variant=variant)[:2],
                               datetime.now(timezone.utc))
        self._step("probes", ", ".join(f"{r.variant_name} {'ok' if r.ok else 'FAILED'} "
                                       f"{r.latency_ms:.1f} ms" for r in probes))
        normal = _rows_as_csv(generate(4000, seed=100), features)
        drifted = _rows_as_csv(generate(20000, seed=101, drift=DriftSpec("covariate", 1.0)),
                               features)
        with LiveTraffic(client, normal, self.traffic, self.timeline) as traffic:
            self._step("live traffic", "two clients, CSV rows, every request captured")
            alarm_at, shifted_at = self._watch_until_rollback(monitor, traffic, drifted)
            time.sleep(2.0)  # traffic keeps flowing on the fallback: the picture shows it
        verified = self._verify(client, drifted)
        return self._result(verified, alarm_at, shifted_at)

    def _watch_until_rollback(self, monitor, traffic: LiveTraffic, drifted: list[str]
                              ) -> tuple[float | None, float | None]:
        """Tick the monitor until a rollback (drifting the traffic on the way); returns when the
        first alarm went off and when the rollback's weights were written, on the timeline."""
        alarm_at = shifted_at = None
        for tick in range(MAX_MONITOR_TICKS):
            time.sleep(self.period)
            if tick == DRIFT_STARTS_AT_TICK:
                traffic.rows = drifted
                self._step("drift starts", "covariate shift: bigger velocity, riskier IPs, "
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
                at = self._step("alarm", f"{detail['alarmName']}: {detail['state']['reason']}",
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
                shifted_at = self._step(
                    "automatic rollback",
                    f"v{outcome.from_version} → v{outcome.to_version}: weights "
                    f"written {outcome.details['seconds_to_shift'] * 1000:.1f} ms "
                    f"after the controller got the alarm (same fleet)",
                    at=self.timeline.relative(shifted))
        return shifted_at

    def _verify(self, client: EndpointClient, drifted: list[str]) -> dict[str, int]:
        """Which variants answer the drifted traffic now: requests answered, per variant."""
        verified: dict[str, int] = {}
        for i in range(VERIFY_REQUESTS):
            status, _, variant = client.invoke(drifted[i])
            if status == 200:
                verified[variant] = verified.get(variant, 0) + 1
        self._step("verified", ", ".join(f"{n} of {VERIFY_REQUESTS} requests on {v}"
                                         for v, n in sorted(verified.items())))
        return verified

    def _result(self, verified: dict[str, int], alarm_at: float | None,
                shifted_at: float | None) -> DemoResult:
        drift_at = self.timeline.at("drift starts")
        first_on_v1 = next((t for t, v, ok in self.traffic.rows
                            if alarm_at is not None and t >= alarm_at and v == "v1" and ok), None)
        picture = draw_lifecycle(self.settings.home / "lifecycle.png", self.timeline,
                                 self.traffic, self.points)
        return DemoResult(
            self.timeline, self.traffic, self.points,
            detection_seconds=(alarm_at - drift_at) if alarm_at and drift_at else None,
            alarm_to_flip_seconds=(shifted_at - alarm_at) if shifted_at and alarm_at else None,
            alarm_to_traffic_seconds=(first_on_v1 - alarm_at) if first_on_v1 and alarm_at
            else None,
            verified_on=verified,
            failed_requests=sum(1 for _, _, ok in self.traffic.rows if not ok),
            picture=picture, home=self.settings.home)


def demo_settings(base: LocalSettings) -> LocalSettings:
    """The demo runs in its own folder under $MLOPS_HOME, so it never touches real state."""
    return replace(base, home=base.home / "demo")
