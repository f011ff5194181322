"""`mlops demo`: a fleet's lifecycle on one machine, in one command.

The fleet the repository declares (models/*.toml; cdk.json's promotionOrder and promotion
policies), in the local fleet home: v1 of every model from the pipeline, promoted dev → staging
→ prod (prod before staging refused on the way); fraud-detector's v2, trained on more data,
promoted the same way, so that every environment serves v2 with v1 warm; then live traffic
through fraud-detector's prod endpoint with capture → drift → monitor → alarm → automatic
rollback to v1, in prod only → traffic verified on v1, staging still on v2; then a timeline,
the fleet table and a picture.

Every step is the kit's own code path (pipeline runner, registry of record, promotion service,
each environment's deployment and rollback controllers, drift monitor, alarm evaluator, local
endpoint); the demo only drives it. Time is compressed twice, and says so: the monitor's ticks
(`demo_live`), and an environment's soak (prod's 30 minutes in staging), judged as if its
minutes had passed.

This module is the scenario; the live part is in `demo_live`, what it records in
`demo_records`, its side of the local endpoint in `demo_endpoint`, the picture in
`demo_picture`.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from mlops_kit.config import LocalSettings
from mlops_kit.deploy.promotion import PromotionResult, promote
from mlops_kit.fleet.declaration import ModelDeclaration
from mlops_kit.fleet.loader import Fleet, FleetError
from mlops_kit.homes.local_fleet import LocalFleetHome
from mlops_kit.local.demo_endpoint import EndpointClient, start_endpoint, stop_endpoint
from mlops_kit.local.demo_live import ALARM_PERIOD_SECONDS, LiveOutcome, LivePart
from mlops_kit.local.demo_picture import DRAWN_ALARMS, draw_lifecycle
from mlops_kit.local.demo_records import DemoResult, Timeline, TrafficLog
from mlops_kit.local.environments import environment_settings

__all__ = ["ALARM_PERIOD_SECONDS", "DRAWN_ALARMS", "LIVE_ENVIRONMENT", "LIVE_MODEL",
           "V2_DATA_FACTOR", "Demo", "DemoResult", "EndpointClient", "Timeline", "TrafficLog",
           "demo_settings"]

LIVE_MODEL = "fraud-detector"
"""The model that gets a v2 and takes live traffic; the fleet's other models get v1 only."""
LIVE_ENVIRONMENT = "prod"
"""Where the live traffic, the drift and the rollback happen: this environment only."""

V2_DATA_FACTOR = 3
"""v2's training data against v1's."""

OTHER_MODEL_ROWS = 20_000
"""The fewest rows a model other than LIVE_MODEL trains on (half the live model's, when that is
more): enough positives for its gates, and a cheap run."""

ACTOR = "demo-scientist"


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


def _variants(deployment: dict[str, Any]) -> str:
    return ", ".join(f"v{v['version']}@{v['weight']:g}" for v in deployment.get("variants", []))


class Demo:
    def __init__(self, settings: LocalSettings, *, fleet: Fleet | None = None,
                 rows: int = 50_000, period_seconds: float = 2.0,
                 report: Callable[[str], None] = print):
        """`settings`: the demo's home, the fleet's registry of record. Without a `fleet`
        (benchmarks/rollback/bench_rollback.py) only the endpoint helpers below work, on
        `settings`' own endpoint; with one, they work on LIVE_MODEL's in LIVE_ENVIRONMENT.
        FleetError when the fleet does not declare that model in that environment."""
        self.settings = settings
        self.fleet = fleet
        self.endpoint = settings if fleet is None else self._live_endpoint(fleet)
        self.rows = rows
        self.period = period_seconds
        self.report = report
        self.timeline = Timeline()
        self.traffic = TrafficLog()
        self.promotions: list[dict[str, Any]] = []

    def _live_endpoint(self, fleet: Fleet) -> LocalSettings:
        model = fleet.model(LIVE_MODEL)
        if LIVE_ENVIRONMENT not in model.deploy_to:
            raise FleetError(f"{LIVE_MODEL} must deploy to {LIVE_ENVIRONMENT} for the demo "
                             f"(deploy_to: {', '.join(model.deploy_to)})")
        return environment_settings(self.settings, model, LIVE_ENVIRONMENT)

    def _step(self, what: str, detail: str = "", at: float | None = None) -> float:
        at = self.timeline.mark(what, detail, at)
        self.report(f"[{at:6.1f}s] {what}" + (f": {detail}" if detail else ""))
        return at

    def run(self) -> DemoResult:
        if self.fleet is None:
            raise ValueError("the demo drives a fleet: Demo(settings, fleet=load_fleet())")
        home = self.settings.home
        if home.exists():
            shutil.rmtree(home)
        home.mkdir(parents=True)
        live = self.fleet.model(LIVE_MODEL)
        models = [live] + [m for name, m in sorted(self.fleet.models.items()) if m is not live]
        data = self._write_data(models)
        server = None
        try:
            firsts = {model.name: self._train(model, data[model.name, 1]) for model in models}
            for model in models:
                self._promote_through(model, firsts[model.name])
            server, client = self._start_server()
            self._step("endpoint up", f"{self.endpoint.endpoint_name} (the local endpoint) "
                                      f"on 127.0.0.1:{client.port}")
            version = self._train(live, data[live.name, 2])
            self._promote_through(live, version, show_order=True)
            self._wait_for_variant(client, f"v{version}")
            self._step("serving", f"{live.name} v{version} champion at weight 1, v1 warm at "
                                  f"weight 0, in {', '.join(live.deploy_to)}")
            outcome = LivePart(self.endpoint, client, timeline=self.timeline,
                               traffic=self.traffic, step=self._step,
                               period_seconds=self.period).run()
        finally:
            if server is not None:
                stop_endpoint(server)
        fleet_rows = LocalFleetHome(self.settings).fleet_status(self.fleet)
        self._report_untouched(live, fleet_rows)
        return self._result(outcome, fleet_rows)

    def _write_data(self, models: list[ModelDeclaration]) -> dict[tuple[str, int], Path]:
        """Each model's synthetic training data, from its declared seed: v1's for every model,
        and v2's for LIVE_MODEL (three times v1's: genuinely better on the same rows, which the
        champion comparison shows; a retrain on as much data would be refused by it)."""
        from mlops_kit.data.synthetic import generate
        from mlops_pipelines.steps._io import write_table

        sets, described = {}, []
        for model in models:
            seed = model.data.synthetic_seed
            if seed is None:
                raise FleetError(f"{model.name} declares no data.synthetic_seed: the demo "
                                 f"generates every model's data")
            if model.name == LIVE_MODEL:
                sets[model.name, 1] = ("month-1", self.rows, seed)
                sets[model.name, 2] = ("quarter", self.rows * V2_DATA_FACTOR, seed + 1)
                described.append(f"{model.name}: {self.rows:,} rows of last month's "
                                 f"transactions (v1), {self.rows * V2_DATA_FACTOR:,} of the "
                                 f"last quarter's (v2)")
            else:
                rows = max(self.rows // 2, OTHER_MODEL_ROWS)
                sets[model.name, 1] = ("month-1", rows, seed)
                described.append(f"{model.name}: {rows:,} rows (v1 only, a cheaper run)")
        self._step("data", "; ".join(described))
        paths = {}
        for (name, version), (period, rows, seed) in sets.items():
            path = self.settings.home / "data" / f"{name}-{period}.parquet"
            rate = self.fleet.model(name).data.synthetic_positive_rate
            write_table(generate(rows, seed=seed, positive_rate=rate), path)
            paths[name, version] = path
        return paths

    def _train(self, model: ModelDeclaration, data: Path) -> int:
        """The pipeline on `data` with the model's declared parameters, registered in its
        group of the registry of record; the version registered."""
        from mlops_kit.local.control_plane import local_registry
        from mlops_kit.local.pipeline_runner import declared_overrides, run_pipeline

        settings = replace(self.settings, model_group=model.name, use_case=model.use_case)
        result = run_pipeline(settings, local_registry(settings), data=data,
                              overrides=declared_overrides(model))
        if result.version is None:
            raise RuntimeError(f"{model.name}: the pipeline run on {data.name} failed a gate: "
                               + ", ".join(v.gate for v in result.verdicts if not v.passed))
        version = result.version.version
        self._step(f"pipeline v{version}", f"{model.name}: {_verdict_line(result.evaluation)}, "
                                           f"registered PendingManualApproval")
        return version

    def _promote_through(self, model: ModelDeclaration, version: int, *,
                         show_order: bool = False) -> None:
        """`version` promoted to each environment the model deploys to, in order;
        `show_order`: first, once it is in the first one, the last one refused."""
        first, *rest = model.deploy_to
        self._promote(model, version, first, "gates passed; reviewed in the demo")
        if show_order and len(rest) > 1:
            self._refused(model, version, rest[-1])
        previous = first
        for environment in rest:
            self._promote(model, version, environment, f"healthy in {previous}")
            previous = environment

    def _soak(self, environment: str) -> int:
        return next(p.soak_minutes for p in self.fleet.environments if p.name == environment)

    def _call_promote(self, model: ModelDeclaration, version: int, environment: str,
                      reason: str, now: datetime) -> PromotionResult:
        result = promote(self.fleet, LocalFleetHome(self.settings), model.name, version,
                         environment, actor=ACTOR, reason=reason, now=now)
        self.promotions.append({
            "model": model.name, "version": version, "environment": environment,
            "promoted": result.promoted, "reason": result.decision.reason,
            "action": (result.deployment or {}).get("action")})
        return result

    def _promote(self, model: ModelDeclaration, version: int, environment: str,
                 reason: str) -> None:
        soak = self._soak(environment)
        # The soak is measured from the previous environment's deployment, on the wall clock:
        # judged as if its minutes had passed, as the monitor's ticks compress its periods.
        now = datetime.now(timezone.utc) + timedelta(minutes=soak + 1 if soak else 0)
        result = self._call_promote(model, version, environment, reason, now)
        deployment = result.deployment or {}
        if not result.promoted or deployment.get("action") != "deployed":
            raise RuntimeError(f"{model.name} v{version} to {environment}: "
                               f"{result.decision.reason}; deployment: {deployment or 'none'}")
        compressed = (f" ({environment}'s {soak}-min soak in {self._previous(model, environment)}"
                      f", compressed)" if soak else "")
        self._step(f"promote v{version} to {environment}",
                   f"{model.name}: {result.decision.reason}{compressed}; "
                   f"{deployment['action']} {_variants(deployment)}")

    def _refused(self, model: ModelDeclaration, version: int, environment: str) -> None:
        """The environments' order enforced: a promotion skipping one is refused."""
        result = self._call_promote(model, version, environment, "skip the queue",
                                    datetime.now(timezone.utc))
        if result.decision.allowed:
            raise RuntimeError(f"{model.name} v{version} to {environment} was not refused: "
                               f"{result.decision.reason}")
        self._step(f"refused v{version} to {environment}",
                   f"{model.name}: {result.decision.reason}")

    @staticmethod
    def _previous(model: ModelDeclaration, environment: str) -> str:
        return model.deploy_to[model.deploy_to.index(environment) - 1]

    def _report_untouched(self, model: ModelDeclaration, rows: list[dict[str, Any]]) -> None:
        """The model's other environments as the rollback left them."""
        for row in rows:
            if row["model"] == model.name and row["environment"] != LIVE_ENVIRONMENT:
                warm = ", ".join(f"v{v}" for v in row["warm"]) or "none"
                self._step(f"{row['environment']} untouched",
                           f"{row['endpoint']} still serves v{row['champion']} as champion "
                           f"(warm: {warm}); the rollback was {LIVE_ENVIRONMENT}'s only")

    def _start_server(self) -> tuple[subprocess.Popen, EndpointClient]:
        # A method too: benchmarks/rollback/bench_rollback.py sets up its endpoint through it.
        return start_endpoint(self.endpoint)

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

        baseline = LocalMonitor(self.endpoint).champion_baseline()
        return baseline_rows(baseline.features, baseline.feature_order).splitlines()[0]

    def _result(self, live: LiveOutcome, fleet_rows: list[dict[str, Any]]) -> DemoResult:
        alarm_at, shifted_at = live.alarm_at, live.shifted_at
        drift_at = self.timeline.at("drift starts")
        first_on_v1 = next((t for t, v, ok in self.traffic.rows
                            if alarm_at is not None and t >= alarm_at and v == "v1" and ok), None)
        picture = draw_lifecycle(self.settings.home / "lifecycle.png", self.timeline,
                                 self.traffic, live.points, self.endpoint.endpoint_name)
        return DemoResult(
            self.timeline, self.traffic, live.points,
            detection_seconds=(alarm_at - drift_at) if alarm_at and drift_at else None,
            alarm_to_flip_seconds=(shifted_at - alarm_at) if shifted_at and alarm_at else None,
            alarm_to_traffic_seconds=(first_on_v1 - alarm_at) if first_on_v1 and alarm_at
            else None,
            verified_on=live.verified,
            failed_requests=sum(1 for _, _, ok in self.traffic.rows if not ok),
            picture=picture, home=self.settings.home,
            promotions=self.promotions, fleet=fleet_rows)


def demo_settings(base: LocalSettings) -> LocalSettings:
    """The demo runs in its own folder under $MLOPS_HOME, so it never touches real state."""
    return replace(base, home=base.home / "demo")
