"""The monitoring loop on one machine: the drift run (`mlops_kit.monitoring.run`, the Lambda's
own) with the local home's adapters (the champion from the state file and registry.db, the
endpoint's capture files and the ground-truth files tailed, the metrics in the local store),
the same alarm definitions evaluated locally, and the resulting alarm events delivered to the
same rollback controller.

It also publishes `CaptureRecordsDropped` (capture records the endpoint's workers could not
write, from their health files under $MLOPS_HOME/health/capture/) every tick; its alarm
(capture-dropped) is notify-only: on ALARM it notifies on-call (the local topic,
$MLOPS_HOME/notifications.jsonl), the rollback controller ignores it.

Every state write is atomic (`monitoring.metrics.write_atomically` / `append_lines`): on a
full or read-only disk a tick raises `mlops_kit.ports.StateWriteError` naming the path, and
what was there before stands."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Sequence

from mlops_kit.config import LocalSettings
from mlops_kit.core.alarms import (DEFAULT_SCHEDULE_MINUTES, AlarmDefinition, in_home,
                                   load_definitions)
from mlops_kit.core.metric_catalogue import CAPTURE_RECORDS_DROPPED, MetricDatum
from mlops_kit.core.rotation import serving_champion
from mlops_kit.endpoints import EndpointBusyError
from mlops_kit.deploy.local_endpoint import LocalEndpoints
from mlops_kit.local.control_plane import (LocalNotifier, LocalProbeResults, local_registry,
                                           publish)
from mlops_kit.monitoring.drift_monitor import (ChampionBaseline, DecodedCapture,
                                                parse_capture_lines)
from mlops_kit.monitoring.evaluator import LocalAlarmEvaluator
from mlops_kit.monitoring.ground_truth import GroundTruth
from mlops_kit.monitoring.metrics import LocalMetricStore, write_atomically
from mlops_kit.monitoring.probe import (Invoke, ProbeResult, baseline_rows, probe_metrics,
                                        probe_variants)
from mlops_kit.monitoring.run import (DriftRun, champion_or_reason, HomeSignals, NotServing, Schedule, Serving,
                                      Windows)
from mlops_kit.ports import StateWriteError
from mlops_kit.serving.capture import capture_health_dir

log = logging.getLogger(__name__)


@dataclass
class TickResult:
    at: datetime
    metrics: list[MetricDatum]
    events: list[dict[str, Any]]
    outcomes: list[Any]
    records: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_reasons: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per variant: why capture records were skipped (torn line, wrong schema, ...)."""
    capture_dropped: int = 0
    """Capture records the endpoint's workers dropped since the last tick."""
    capture_failing: list[str] = field(default_factory=list)
    """Why, for each writer whose capture is failing now."""

    def value(self, name: str, **dimensions: str) -> float | None:
        for datum in self.metrics:
            if datum.name == name and all(datum.dimensions.get(k) == v
                                          for k, v in dimensions.items()):
                return datum.value
        return None


class _Tail:
    """Reads each file from where the last read stopped: every complete line once. A line
    still being written (no newline yet) waits for the next read."""

    def __init__(self, root: Path):
        self.root = root
        self.offsets: dict[Path, int] = {}

    def new_text(self, path: Path) -> str:
        with open(path, "rb") as handle:
            handle.seek(self.offsets.get(path, 0))
            chunk = handle.read()
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self.offsets[path] = self.offsets.get(path, 0) + len(complete)
        return complete.decode("utf-8", errors="replace")


class CaptureTail(_Tail):
    """The endpoint's capture files, per variant (the folder under the endpoint names it): the
    drift run's Capture port, tailing (what is new since the last read, whatever the window)."""

    def read_new(self, endpoint_name: str) -> dict[str, tuple[list[dict], int]]:
        by_variant: dict[str, tuple[list[dict], int]] = {}
        base = self.root / endpoint_name
        if not base.exists():
            return by_variant
        for path in sorted(base.glob("*/**/*.jsonl")):
            variant = path.relative_to(base).parts[0]
            records, corrupt = parse_capture_lines(self.new_text(path))
            previous = by_variant.get(variant, ([], 0))
            by_variant[variant] = (previous[0] + records, previous[1] + corrupt)
        return by_variant

    def read(self, endpoint_name: str, variant_names: Sequence[str], start: datetime,
             end: datetime) -> dict[str, tuple[list[dict], int]]:
        return self.read_new(endpoint_name)


class LabelTail(_Tail):
    """Ground truth as it arrives, appended under $MLOPS_HOME/ground-truth/<endpoint>/ in
    either format `monitoring.ground_truth` reads (SageMaker's or the kit's short one)."""

    def read_truth(self, endpoint_name: str) -> GroundTruth:
        truth = GroundTruth()
        for path in sorted((self.root / endpoint_name).glob("*.jsonl")):
            truth.add_lines(self.new_text(path))
        return truth

    def read_new(self, endpoint_name: str) -> dict[str, int]:
        return self.read_truth(endpoint_name).labels


SCORE_MEMORY = 500_000
"""Champion scores kept by inferenceId, waiting for their labels (oldest dropped first)."""


class LocalLabels:
    """The drift run's labels feed on one machine: the ground-truth files tailed, joined to
    the champion's scores the monitor has kept since it started (by inferenceId)."""

    def __init__(self, root: Path):
        self.tail = LabelTail(root)
        self.scores_by_id: dict[str, float] = {}

    def remember(self, variant_name: str, decoded: DecodedCapture) -> None:
        self.scores_by_id.update((i, s) for i, s in zip(decoded.inference_ids, decoded.scores)
                                 if i)
        while len(self.scores_by_id) > SCORE_MEMORY:
            self.scores_by_id.pop(next(iter(self.scores_by_id)))

    def landed(self, endpoint_name: str, start: datetime, end: datetime) -> GroundTruth:
        return self.tail.read_truth(endpoint_name)

    def read_new(self, endpoint_name: str) -> dict[str, int]:
        return self.tail.read_new(endpoint_name)

    def scores(self, endpoint_name: str, baseline: ChampionBaseline, ids: Any, start: datetime,
               end: datetime) -> dict[str, float]:
        return self.scores_by_id


class LocalBaselines:
    """The champion the local endpoint's state file serves, and its baselines from the
    registry's lineage (files under $MLOPS_HOME)."""

    def __init__(self, endpoints: LocalEndpoints, registry: Any):
        self.endpoints, self.registry = endpoints, registry

    def serving(self, endpoint_name: str) -> Serving | NotServing:
        view = self.endpoints.describe(endpoint_name)
        champion = champion_or_reason(endpoint_name, view)
        if isinstance(champion, NotServing):
            return champion
        version = self.registry.get(champion.version)
        baseline, evaluation = (self._document(version, key, what) for key, what in (
            ("drift_baseline", "drift baseline"), ("evaluation", "evaluation")))
        return Serving(ChampionBaseline.from_documents(champion.version, champion.variant_name,
                                                       baseline, evaluation),
                       tuple(v.variant_name for v in view.variants))


    @staticmethod
    def _document(version: Any, key: str, what: str) -> dict:
        from mlops_kit.monitoring.run import BaselineMissing

        path = version.lineage.get(key)
        if not path or not Path(path).is_file():
            raise BaselineMissing(f"v{version.version} of {version.model_group}", what)
        return json.loads(Path(path).read_text())


class CaptureHealthTail:
    """Capture records the endpoint's writers dropped since the last read, from the health
    file each CaptureWriter keeps (a cumulative count per writer). What was counted is kept in
    the monitor's state file, so `mlops monitor --once` runs count each drop once too."""

    def __init__(self, home: Path, state_path: Path):
        self.home = home
        self.state_path = state_path
        self.seen: dict[str, int] | None = None
        self._counted: dict[str, int] = {}

    def _load(self) -> dict[str, int]:
        if self.seen is None:
            try:
                document = json.loads(self.state_path.read_text())
                self.seen = {str(k): int(v) for k, v in
                             document.get("capture_dropped_seen", {}).items()}
            except FileNotFoundError:
                self.seen = {}
            except (ValueError, TypeError, AttributeError):
                log.warning("%s is unreadable: dropped capture counts start over",
                            self.state_path)
                self.seen = {}
        return self.seen

    def read_new(self, endpoint_name: str) -> tuple[int, list[str]]:
        """(records dropped since the last `commit`, the reason of each writer failing now)."""
        seen = self._load()
        counted = dict(seen)
        dropped, failing = 0, []
        for path in sorted(capture_health_dir(self.home, endpoint_name).glob("*.json")):
            try:
                document = json.loads(path.read_text())
                total = int(document.get("dropped", 0))
            except (OSError, ValueError, TypeError, AttributeError):
                continue  # being replaced, or not a writer's file
            before = seen.get(path.stem, 0)
            dropped += total - before if total >= before else total  # a reused writer id
            counted[path.stem] = total
            if document.get("failing"):
                failing.append(str(document.get("reason") or document.get("cause")))
        self._counted = counted
        return dropped, failing

    def measure(self, endpoint_name: str, serving: Any, decoded: Any, windows: Windows
                ) -> HomeSignals:
        """The drift run's home metrics on one machine: CaptureRecordsDropped, every run
        (with or without a champion)."""
        dropped, failing = self.read_new(endpoint_name)
        if failing or dropped:
            log.warning("endpoint %s: %d capture records dropped since the last tick%s",
                        endpoint_name, dropped, f" ({'; '.join(failing)})" if failing else "")
        datum = CAPTURE_RECORDS_DROPPED.datum(dropped, {"EndpointName": endpoint_name},
                                              windows.at)
        return HomeSignals([datum], {"capture_dropped": dropped, "capture_failing": failing})

    def commit(self) -> None:
        """Remember what `read_new` counted (once the metric is stored)."""
        if self._counted != self._load():
            write_atomically(self.state_path, json.dumps(
                {"capture_dropped_seen": self._counted}, indent=2, sort_keys=True))
            self.seen = dict(self._counted)


class LocalMonitor:
    def __init__(self, settings: LocalSettings, *, time_scale: float = 1.0,
                 definitions: Sequence[AlarmDefinition] | None = None,
                 schedule_minutes: int = DEFAULT_SCHEDULE_MINUTES):
        """`schedule_minutes`: the (virtual, i.e. before `time_scale`) minutes between two
        ticks, which the alarms' windows are fitted to, as CloudWatch's are to the drift
        monitor's schedule; `definitions` given are used as they are."""
        self.settings = settings
        self.endpoint = settings.endpoint_name
        self.registry = local_registry(settings)
        self.endpoints = LocalEndpoints(settings.home)
        self.store = LocalMetricStore(settings.home)
        self.baselines = LocalBaselines(self.endpoints, self.registry)
        self.tail = CaptureTail(settings.home / "capture")
        self.labels = LocalLabels(settings.home / "ground-truth")
        self.capture_health = CaptureHealthTail(
            settings.home, settings.home / "monitor" / f"{self.endpoint}.json")
        # The tails read what is new since the last tick, so the windows only date the run.
        interval = timedelta(minutes=schedule_minutes)
        self.drift_run = DriftRun(self.endpoint, baselines=self.baselines, capture=self.tail,
                                  sink=self.store, schedule=Schedule(interval, interval),
                                  labels=self.labels, home=self.capture_health)
        self.pending: list[dict[str, Any]] = []
        self.evaluator = LocalAlarmEvaluator(settings.home, self.endpoint,
                                             definitions or in_home(load_definitions(
                                                 schedule_minutes=schedule_minutes), "local"),
                                             champion_variant=self._champion_variant,
                                             time_scale=time_scale)
        self.notify_only = {d.alarm_name(self.endpoint) for d in self.evaluator.definitions
                            if not d.rollback}

    def _champion_variant(self) -> str:
        view = self.endpoints.describe(self.endpoint)
        champion = serving_champion(view.variants) if view else None
        return champion.variant_name if champion else ""

    def champion_baseline(self) -> ChampionBaseline | None:
        serving = self.baselines.serving(self.endpoint)
        return serving.baseline if isinstance(serving, Serving) else None

    def tick(self, now: datetime, labels: dict[str, int] | None = None) -> TickResult:
        """Metrics for the traffic captured since the last tick (`labels` given: joined
        instead of the ground-truth files'), then the alarms."""
        run = self.drift_run.run(now, labels=labels)
        failing = run.facts.get("capture_failing", [])
        events = self.evaluator.evaluate(now)
        outcomes = []
        # An alarm the controller could not act on yet (endpoint busy) is delivered again on
        # the next tick, as EventBridge retries a failed target.
        self.pending, pending = [], self.pending + events
        for event in pending:
            try:
                outcomes.extend(publish(self.settings, event))
            except EndpointBusyError:
                self.pending.append(event)
        for event in events:
            self._notify(event, failing)
        return TickResult(now, run.metrics, events, outcomes, run.records, run.skipped,
                          run.skipped_reasons, run.facts.get("capture_dropped", 0), failing)

    def _notify(self, event: dict[str, Any], why: list[str]) -> None:
        """A notify-only alarm going into ALARM: on-call hears of it (CloudWatch's SNS alarm
        action in AWS); the rollback controller ignores it."""
        detail = event.get("detail", {})
        name, state = detail.get("alarmName"), detail.get("state", {}).get("value")
        if name not in self.notify_only or state != "ALARM":
            return
        notifier = LocalNotifier(self.settings.home)
        message = {"alarm": name, "state": state, "endpoint": self.endpoint,
                   "reason": detail.get("state", {}).get("reason", ""),
                   "at": event.get("time"), "capture": why}
        try:
            notifier.notify(f"ALARM: {name}", message)
        except OSError as exc:
            raise StateWriteError(notifier.path, exc) from exc

    def probe(self, invoke: Invoke, now: datetime) -> list[ProbeResult]:
        """Invoke every variant, pinned, with baseline rows; record the verdicts."""
        view = self.endpoints.describe(self.endpoint)
        baseline = self.champion_baseline()
        if view is None or baseline is None:
            return []
        body = baseline_rows(baseline.features, baseline.feature_order)
        results = probe_variants(invoke, [v.variant_name for v in view.variants], body)
        self.store.put(probe_metrics(results, self.endpoint, now))
        path = LocalProbeResults(self.settings.home).path(self.endpoint)
        write_atomically(path, json.dumps({"at": now.isoformat(), "variants": {
            r.variant_name: r.to_dict() for r in results}}, indent=2, sort_keys=True))
        return results
