"""`mlops demo`: the whole lifecycle on one machine, in one command.

data → pipeline v1 → approve → deploy → pipeline v2 → approve → deploy (v1 warm) → live traffic
through the local endpoint with capture → drift → monitor → alarm → automatic rollback to v1 →
traffic verified on v1; then a timeline and a picture of what happened.

Every step is the kit's own code path (pipeline runner, registry, deployment and rollback
controllers, drift monitor, alarm evaluator, local endpoint); the demo only drives it. Time is
compressed: one monitor tick every `period_seconds` stands for a drift monitor on a 5-minute
schedule, and the alarms are fitted to that schedule as CloudWatch's are to the stage's;
thresholds and the M-out-of-N rule are the ones CloudWatch gets.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from mlops_kit.config import LocalSettings
from mlops_kit.core.metric_catalogue import FEATURE_PSI_MAX, PREDICTION_PSI

DRAWN_ALARMS = ("feature-drift", "prediction-drift")
"""The alarms the demo's drift moves, drawn with their thresholds."""

V2_DATA_FACTOR = 3
"""v2's training data against v1's."""

ALARM_PERIOD_SECONDS = 300
"""The virtual seconds one demo tick stands for: a 5-minute drift-monitor schedule, so the
per-run alarms get 300 s periods, each compressed into one tick."""


@dataclass
class Timeline:
    """What happened when, in seconds since the demo started. Each event is stamped where it
    happens: a step when it ends, an alarm at its transition, a rollback when its weights were
    written (not when the demo got to report them)."""
    started: float = field(default_factory=time.perf_counter)
    wall_started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    events: list[tuple[float, str, str]] = field(default_factory=list)

    def mark(self, what: str, detail: str = "", at: float | None = None) -> float:
        at = time.perf_counter() - self.started if at is None else at
        self.events.append((at, what, detail))
        self.events.sort(key=lambda event: event[0])
        return at

    def relative(self, moment: datetime) -> float:
        """A wall-clock moment (an alarm's transition, a record's time) on this timeline."""
        return (moment - self.wall_started).total_seconds()

    def at(self, what: str) -> float | None:
        return next((t for t, w, _ in self.events if w == what), None)


@dataclass
class TrafficLog:
    """Every request the demo sent: when, which variant answered, whether it succeeded."""
    rows: list[tuple[float, str, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, at: float, variant: str, ok: bool) -> None:
        with self.lock:
            self.rows.append((at, variant, ok))


@dataclass
class DemoResult:
    timeline: Timeline
    traffic: TrafficLog
    monitor_points: list[dict[str, Any]]
    detection_seconds: float | None
    alarm_to_flip_seconds: float | None
    alarm_to_traffic_seconds: float | None
    verified_on: dict[str, int]
    failed_requests: int
    picture: Path
    home: Path

    @property
    def succeeded(self) -> bool:
        return (self.alarm_to_traffic_seconds is not None and self.failed_requests == 0
                and set(self.verified_on) == {"v1"})

    def to_dict(self) -> dict[str, Any]:
        return {"succeeded": self.succeeded, "home": str(self.home),
                "picture": str(self.picture),
                "detection_seconds": self.detection_seconds,
                "alarm_to_flip_seconds": self.alarm_to_flip_seconds,
                "alarm_to_traffic_seconds": self.alarm_to_traffic_seconds,
                "verified_on": self.verified_on, "failed_requests": self.failed_requests,
                "requests": len(self.traffic.rows),
                "timeline": [{"at_seconds": round(t, 3), "what": w, "detail": d}
                             for t, w, d in self.timeline.events]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EndpointClient:
    """A keep-alive HTTP client of the local endpoint's SageMaker runtime contract."""

    def __init__(self, port: int, endpoint: str):
        self.port, self.endpoint = port, endpoint
        self.local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        if getattr(self.local, "connection", None) is None:
            self.local.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        return self.local.connection

    def invoke(self, body: str, *, variant: str | None = None,
               inference_id: str | None = None) -> tuple[int, str, str]:
        headers = {"Content-Type": "text/csv", "Accept": "text/csv"}
        if variant:
            headers["X-Amzn-SageMaker-Target-Variant"] = variant
        if inference_id:
            headers["X-Amzn-SageMaker-Inference-Id"] = inference_id
        for attempt in (1, 2):
            connection = self._connection()
            try:
                connection.request("POST", f"/endpoints/{self.endpoint}/invocations",
                                   body=body.encode(), headers=headers)
                response = connection.getresponse()
                text = response.read().decode()
                return (response.status, text,
                        response.getheader("X-Amzn-Invoked-Production-Variant", ""))
            except (ConnectionError, http.client.HTTPException, OSError):
                connection.close()
                self.local.connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def ping(self) -> bool:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            connection.request("GET", "/ping")
            ok = connection.getresponse().status == 200
            connection.close()
            return ok
        except OSError:
            return False


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
                server.terminate()
                try:
                    server.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    server.kill()

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
        port = _free_port()
        env = dict(os.environ, MLOPS_HOME=str(self.settings.home),
                   MLOPS_ENDPOINT=self.settings.endpoint_name)
        log = open(self.settings.home / "endpoint.log", "w")
        server = subprocess.Popen(
            [sys.executable, "-m", "mlops_kit.cli", "serve", "--port", str(port),
             "--workers", "1", "--capture-percent", "100"],
            env=env, stdout=log, stderr=subprocess.STDOUT)
        client = EndpointClient(port, self.settings.endpoint_name)
        deadline = time.monotonic() + 90
        while not client.ping():
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the local endpoint did not start; see "
                                   f"{self.settings.home / 'endpoint.log'}")
            time.sleep(0.2)
        return server, client

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
        source = {"rows": normal}
        stop = threading.Event()

        def send_traffic(worker: int) -> None:
            i = worker
            while not stop.is_set():
                rows = source["rows"]
                body = rows[i % len(rows)]
                i += 2
                try:
                    status, _, variant = client.invoke(body, inference_id=f"demo-{worker}-{i}")
                    self.traffic.add(time.perf_counter() - self.timeline.started, variant,
                                     status == 200)
                except OSError:
                    self.traffic.add(time.perf_counter() - self.timeline.started, "", False)
                time.sleep(0.004)

        senders = [threading.Thread(target=send_traffic, args=(w,), daemon=True) for w in (0, 1)]
        for sender in senders:
            sender.start()
        self._step("live traffic", "two clients, CSV rows, every request captured")
        alarm_at = shifted_at = flip = None
        try:
            for tick in range(40):
                time.sleep(self.period)
                if tick == 3:
                    source["rows"] = drifted
                    self._step("drift starts", "covariate shift: bigger velocity, riskier IPs, "
                                               "more online traffic")
                ticked = datetime.now(timezone.utc)
                result = monitor.tick(ticked)
                states = monitor.evaluator.states()
                self.points.append({
                    "at": self.timeline.relative(ticked),
                    "feature_psi_max": result.value(FEATURE_PSI_MAX.name),
                    "prediction_psi": _endpoint_value(result, PREDICTION_PSI.name),
                    "alarms": {alarm: states.get(f"{self.settings.endpoint_name}-{alarm}", {})
                               .get("state", "INSUFFICIENT_DATA") for alarm in DRAWN_ALARMS}})
                for event in result.events:
                    detail = event["detail"]
                    if detail["state"]["value"] == "ALARM":
                        # The evaluator's transition happened at the tick's time, before the
                        # rollback controller got the event.
                        at = self._step("alarm", f"{detail['alarmName']}: "
                                                 f"{detail['state']['reason']}",
                                        at=self.timeline.relative(ticked))
                        alarm_at = at if alarm_at is None else alarm_at
                for outcome in result.outcomes:
                    if getattr(outcome, "action", "") == "rolled_back":
                        flip = outcome
                        shifted = datetime.fromisoformat(
                            outcome.details["shifted_at"].replace("Z", "+00:00"))
                        shifted_at = self._step(
                            "automatic rollback",
                            f"v{outcome.from_version} → v{outcome.to_version}: weights "
                            f"written {outcome.details['seconds_to_shift'] * 1000:.1f} ms "
                            f"after the controller got the alarm (same fleet)",
                            at=self.timeline.relative(shifted))
                if flip is not None:
                    break
            time.sleep(2.0)  # traffic keeps flowing on the fallback: the picture shows it
        finally:
            stop.set()
            for sender in senders:
                sender.join(timeout=5)
        verified: dict[str, int] = {}
        for i in range(200):
            status, _, variant = client.invoke(drifted[i])
            if status == 200:
                verified[variant] = verified.get(variant, 0) + 1
        self._step("verified", ", ".join(f"{n} of 200 requests on {v}"
                                         for v, n in sorted(verified.items())))
        drift_at = self.timeline.at("drift starts")
        first_on_v1 = next((t for t, v, ok in self.traffic.rows
                            if alarm_at is not None and t >= alarm_at and v == "v1" and ok), None)
        picture = self._draw()
        return DemoResult(
            self.timeline, self.traffic, self.points,
            detection_seconds=(alarm_at - drift_at) if alarm_at and drift_at else None,
            alarm_to_flip_seconds=(shifted_at - alarm_at) if shifted_at and alarm_at else None,
            alarm_to_traffic_seconds=(first_on_v1 - alarm_at) if first_on_v1 and alarm_at
            else None,
            verified_on=verified,
            failed_requests=sum(1 for _, _, ok in self.traffic.rows if not ok),
            picture=picture, home=self.settings.home)

    def _draw(self) -> Path:
        """One time axis for the whole run: the lifecycle's phases, traffic per variant, the
        drift metrics with their alarms' thresholds, and the alarm states; every event line
        labelled where it happened."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from mlops_kit.core.alarms import load_definitions

        thresholds = {d.id: d.threshold for d in load_definitions()}
        path = self.settings.home / "lifecycle.png"
        fig = plt.figure(figsize=(11, 10.5))
        grid = fig.add_gridspec(4, 1, height_ratios=[1.0, 2.2, 2.2, 1.3])
        lane = fig.add_subplot(grid[0])
        traffic = fig.add_subplot(grid[1])
        drift = fig.add_subplot(grid[2], sharex=traffic)
        alarms = fig.add_subplot(grid[3], sharex=traffic)
        events = self.timeline.events
        end = max([t for t, _, _ in events] + [t for t, _, _ in self.traffic.rows] + [1.0])

        # The phases: each step's mark is its end, so a phase runs from the previous mark.
        previous = 0.0
        colours = {"data": "#9e9e9e", "pipeline": "#5b8def", "approve": "#43a047",
                   "endpoint up": "#8e24aa"}
        for at, what, _ in events:
            kind = next((k for k in colours if what.startswith(k)), None)
            if kind is not None:
                lane.broken_barh([(previous, max(at - previous, 0.05))], (0.1, 0.8),
                                 color=colours[kind])
                lane.text(previous + (at - previous) / 2, 0.5, what, ha="center", va="center",
                          fontsize=7, color="white" if at - previous > 3 else "black",
                          rotation=0 if at - previous > 6 else 90)
            if what in ("data", "serving") or kind is not None:
                previous = at
        live = self.timeline.at("live traffic") or 0.0
        lane.broken_barh([(live, end - live)], (0.1, 0.8), color="#ffb74d")
        lane.text(live + (end - live) / 2, 0.5, "live", ha="center", va="center", fontsize=7)
        lane.set(yticks=[], ylim=(0, 1), xlim=(0, end * 1.01),
                 xlabel="seconds since the demo started",
                 title="The whole run: each phase ends at its mark (the live part, orange, is "
                       "drawn below at full scale)")

        # Traffic in whole buckets only: a last, partial bucket would show a false dip.
        rows = self.traffic.rows
        width = 0.5
        if rows:
            start = min(t for t, _, _ in rows)
            buckets = int((max(t for t, _, _ in rows) - start) / width)
            edges = [start + i * width for i in range(buckets + 1)]
            for variant in sorted({v for _, v, _ in rows if v}):
                counts = [0] * buckets
                for t, v, ok in rows:
                    index = int((t - start) / width)
                    if v == variant and ok and index < buckets:
                        counts[index] += 1
                traffic.stairs([c / width for c in counts], edges, baseline=None,
                               label=f"{variant} answered",
                               linewidth=1.5)
        traffic.set(ylabel="requests/s", title="Traffic per variant (local endpoint, "
                                               f"{width:g} s buckets)")
        traffic.legend(loc="center left", fontsize=8, framealpha=0.9)

        times = [p["at"] for p in self.points]
        drift.plot(times, [p["feature_psi_max"] for p in self.points], marker="o",
                   color="tab:blue", label="FeaturePSIMax (feature-drift)")
        drift.plot(times, [p["prediction_psi"] for p in self.points], marker=".",
                   color="tab:green", label="PredictionPSI (prediction-drift)")
        drift.axhline(thresholds["feature-drift"], color="tab:blue", linestyle="--",
                      linewidth=1, label=f"feature-drift threshold {thresholds['feature-drift']:g}")
        drift.axhline(thresholds["prediction-drift"], color="tab:green", linestyle="--",
                      linewidth=1,
                      label=f"prediction-drift threshold {thresholds['prediction-drift']:g}")
        drift.set(ylabel="PSI", title="Drift of the champion's traffic (one point per monitor "
                                      "tick)")
        drift.legend(loc="upper left", fontsize=8, framealpha=0.9)

        for offset, (alarm, colour) in enumerate(zip(DRAWN_ALARMS, ("tab:blue", "tab:green"))):
            level = [offset * 1.5 + (1 if p["alarms"][alarm] == "ALARM" else 0)
                     for p in self.points]
            # A state holds until the next evaluation: the last one holds to the end.
            alarms.step(times + [end], level + level[-1:], where="post", color=colour,
                        label=alarm)
        alarms.set(yticks=[0, 1, 1.5, 2.5],
                   yticklabels=["OK", "ALARM", "OK", "ALARM"], ylim=(-0.3, 2.8),
                   title="Alarm states (feature-drift below, prediction-drift above)",
                   xlabel="seconds since the demo started (live part)",
                   xlim=(live - 0.5, end + 0.5))
        alarms.legend(loc="center left", fontsize=8, framealpha=0.9)

        marks = [(self.timeline.at("drift starts"), "drift starts", "orange"),
                 (self.timeline.at("alarm"), "alarm", "red"),
                 (self.timeline.at("automatic rollback"), "rollback (weights written)",
                  "black")]
        for at, label, colour in marks:
            if at is None:
                continue
            for ax in (lane, traffic, drift, alarms):
                ax.axvline(at, color=colour, linestyle=":", linewidth=1)
            side = "right" if label == "alarm" else "left"
            traffic.annotate(label, (at, 1.0), xycoords=("data", "axes fraction"),
                             xytext=(-3 if side == "right" else 3, -4),
                             textcoords="offset points", rotation=90, ha=side, va="top",
                             fontsize=8, color=colour)
        fig.tight_layout()
        tmp = path.with_suffix(".tmp.png")
        fig.savefig(tmp, dpi=100)
        plt.close(fig)
        tmp.replace(path)
        return path


def _endpoint_value(result, name: str) -> float | None:
    for datum in result.metrics:
        if datum.name == name and set(datum.dimensions) == {"EndpointName"}:
            return datum.value
    return None


def demo_settings(base: LocalSettings) -> LocalSettings:
    """The demo runs in its own folder under $MLOPS_HOME, so it never touches real state."""
    return replace(base, home=base.home / "demo")
