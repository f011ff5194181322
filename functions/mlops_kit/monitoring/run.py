"""One drift run, for both homes: the serving champion's baseline → the captured traffic of the
window → drift (`drift_monitor.compute_metrics`, over `core.drift`) → the labels that landed,
joined to the champion's scores → what only the home can measure → the metric sink.

Each step reads through a port, implemented once per home:

  port          AWS (`mlops_kit.aws.*`)                    local (`mlops_kit.local.monitor`)
  Baselines     endpoint, model package, S3 documents      state file, registry.db, lineage
  Capture       S3 capture of the window, per variant      capture files since the last tick
  Labels        S3 ground truth landed in the interval,    ground-truth files since the last
                scores re-read from capture (lookback)     tick, scores kept in memory
  HomeMetrics   the champion's SageMaker 5XX/latency,      CaptureRecordsDropped (the
                capture health (UncapturedInvocations)     endpoint writers' health files)
  MetricSink    EMF through Powertools                     $MLOPS_HOME/metrics/metrics.jsonl

Nothing here reads a clock or a file: the run's time and windows are given (`Schedule`), so
the Lambda, the local timer and the tests run the same code at any instant. Every datum comes
from `core.metric_catalogue`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Mapping, Protocol, Sequence

from mlops_kit.core.metric_catalogue import AUPR, MetricDatum
from mlops_kit.monitoring.drift_monitor import (ChampionBaseline, DecodedCapture,
                                                compute_metrics, decode_capture)
from mlops_kit.monitoring.ground_truth import MIN_LABELLED_ROWS, GroundTruth, labelled_aupr
from mlops_kit.monitoring.metrics import MetricSink

log = logging.getLogger(__name__)

CaptureLines = tuple[list[dict[str, Any]], int]
"""One variant's capture records read (parsed JSON objects) and its unreadable lines."""


@dataclass(frozen=True)
class Serving:
    """What the endpoint serves now: the champion's baseline and every variant's name."""
    baseline: ChampionBaseline
    variant_names: tuple[str, ...]


class BaselineMissing(ValueError):
    """The serving champion's version records no drift baseline or evaluation to compare its
    traffic against (registered by hand, or by an older kit): nothing can be monitored until
    it does. The same error in both homes."""

    def __init__(self, version: Any, what: str):
        super().__init__(f"{version} records no {what}: the drift monitor has nothing to compare "
                         f"its traffic against (register it through the pipeline, which "
                         f"records both)")


@dataclass(frozen=True)
class NotServing:
    """No champion to compare against (no endpoint, no variant taking traffic)."""
    reason: str


def champion_or_reason(endpoint_name: str, view: Any) -> Any:
    """The variant taking the traffic of `view` (an EndpointView, None when the endpoint does
    not exist), or the NotServing that says why there is none: one answer in both homes."""
    from mlops_kit.core.rotation import serving_champion

    if view is None:
        return NotServing(f"endpoint {endpoint_name} does not exist")
    champion = serving_champion(view.variants)
    return champion if champion is not None else NotServing("no variant takes traffic")


@dataclass(frozen=True)
class Windows:
    """The time ranges one run at `at` reads, each [start, end)."""
    at: datetime
    capture: tuple[datetime, datetime]
    labels: tuple[datetime, datetime]
    """Ground truth landed in the interval since the previous run."""
    scores: tuple[datetime, datetime]
    """The lookback over which labelled predictions were scored (labels arrive later)."""
    service: tuple[datetime, datetime]
    """SageMaker's per-minute metrics: one interval, `service_lag` behind the run."""


@dataclass(frozen=True)
class Schedule:
    interval: timedelta
    """Between two runs."""
    capture_window: timedelta
    label_lookback: timedelta = timedelta(hours=24)
    service_lag: timedelta = timedelta(0)

    def windows(self, at: datetime) -> Windows:
        # Consecutive runs read adjacent service windows, so a Sum never counts a minute twice.
        lagged = at - self.service_lag
        return Windows(at, (at - self.capture_window, at), (at - self.interval, at),
                       (at - self.label_lookback, at), (lagged - self.interval, lagged))


class Baselines(Protocol):
    def serving(self, endpoint_name: str) -> Serving | NotServing: ...


class Capture(Protocol):
    def read(self, endpoint_name: str, variant_names: Sequence[str], start: datetime,
             end: datetime) -> Mapping[str, CaptureLines]:
        """Per variant, the capture records of the window (a home that tails its files
        returns what is new since its last read, whatever the window)."""
        ...


class Labels(Protocol):
    def remember(self, variant_name: str, decoded: DecodedCapture) -> None:
        """The champion's decoded capture of this run (a home without a lookback store keeps
        its scores by inferenceId for labels still to come)."""
        ...

    def landed(self, endpoint_name: str, start: datetime, end: datetime) -> GroundTruth: ...

    def scores(self, endpoint_name: str, baseline: ChampionBaseline, ids: Mapping[str, int],
               start: datetime, end: datetime) -> Mapping[str, float]:
        """The champion's scores by inferenceId, for (at least) the ids given."""
        ...


@dataclass
class HomeSignals:
    metrics: list[MetricDatum] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    """For the run's summary (AWS: the interval's invocations; local: dropped capture)."""


class HomeMetrics(Protocol):
    def measure(self, endpoint_name: str, serving: Serving | None,
                decoded: Mapping[str, DecodedCapture], windows: Windows) -> HomeSignals: ...

    def commit(self) -> None:
        """The run's datapoints are stored: remember what was counted."""
        ...


@dataclass
class RunResult:
    at: datetime
    status: str
    """"published", or "skipped" (`reason`: nothing serves; home metrics still published)."""
    metrics: list[MetricDatum]
    decoded: dict[str, DecodedCapture] = field(default_factory=dict)
    champion: int | None = None
    reason: str = ""
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def records(self) -> dict[str, int]:
        return {k: v.records for k, v in self.decoded.items()}

    @property
    def skipped(self) -> dict[str, int]:
        return {k: v.skipped for k, v in self.decoded.items()}

    @property
    def skipped_reasons(self) -> dict[str, dict[str, int]]:
        return {k: dict(v.skipped_reasons) for k, v in self.decoded.items() if v.skipped}

    def summary(self) -> dict[str, Any]:
        """What the Lambda returns and logs."""
        if self.status != "published":
            return {"status": self.status, "reason": self.reason}
        return {"status": self.status, "champion": self.champion, "metrics": len(self.metrics),
                "records": self.records, "skipped": self.skipped,
                "skipped_reasons": self.skipped_reasons, **self.facts}


class DriftRun:
    def __init__(self, endpoint_name: str, *, baselines: Baselines, capture: Capture,
                 sink: MetricSink, schedule: Schedule, labels: Labels | None = None,
                 home: HomeMetrics | None = None):
        """`labels` None: no AUPR (no ground truth configured); `home` None: nothing more."""
        self.endpoint_name = endpoint_name
        self.baselines, self.capture, self.sink = baselines, capture, sink
        self.schedule, self.labels, self.home = schedule, labels, home

    def run(self, at: datetime, *, labels: Mapping[str, int] | None = None) -> RunResult:
        """One run at `at`; `labels` given are joined instead of those the feed has landed.
        Publishes once, all of the run's datapoints together."""
        windows = self.schedule.windows(at)
        serving = self.baselines.serving(self.endpoint_name)
        if isinstance(serving, NotServing):
            result = RunResult(at, "skipped", [], reason=serving.reason)
            self._publish(result, self._home(None, {}, windows))
            return result
        decoded = self._decode(serving, windows)
        data = compute_metrics(serving.baseline, decoded, endpoint_name=self.endpoint_name,
                               at=at)
        data += self._performance(serving, decoded, windows, labels)
        result = RunResult(at, "published", data, decoded, serving.baseline.version)
        self._publish(result, self._home(serving, decoded, windows))
        return result

    def _decode(self, serving: Serving, windows: Windows) -> dict[str, DecodedCapture]:
        decoded: dict[str, DecodedCapture] = {}
        feature_order = serving.baseline.feature_order
        read = self.capture.read(self.endpoint_name, serving.variant_names, *windows.capture)
        for variant, (records, unreadable) in read.items():
            result = decode_capture(records, feature_order)
            result.add_unreadable_lines(unreadable)
            if result.skipped:
                log.warning("endpoint %s variant %s: skipped %d of %d capture records: %s",
                            self.endpoint_name, variant, result.skipped, result.records,
                            result.skipped_reasons)
            decoded[variant] = result
        return decoded

    def _performance(self, serving: Serving, decoded: Mapping[str, DecodedCapture],
                     windows: Windows, given: Mapping[str, int] | None) -> list[MetricDatum]:
        """AUPR of the champion on the labels of this run, joined on inferenceId to the
        scores it gave (labels arrive after their predictions)."""
        if self.labels is None:
            return []
        baseline = serving.baseline
        if baseline.variant_name in decoded:
            self.labels.remember(baseline.variant_name, decoded[baseline.variant_name])
        if given is None:
            truth = self.labels.landed(self.endpoint_name, *windows.labels)
            if truth.skipped:
                log.warning("endpoint %s: ground truth lines skipped: %s", self.endpoint_name,
                            truth.skipped_reasons)
            given = truth.labels
        if len(given) < MIN_LABELLED_ROWS:  # no datapoint possible: no scores read
            return []
        scores = self.labels.scores(self.endpoint_name, baseline, given, *windows.scores)
        aupr = labelled_aupr(given, scores)
        return [] if aupr is None else [
            AUPR.datum(aupr, {"EndpointName": self.endpoint_name}, windows.at)]

    def _home(self, serving: Serving | None, decoded: Mapping[str, DecodedCapture],
              windows: Windows) -> HomeSignals:
        if self.home is None:
            return HomeSignals()
        return self.home.measure(self.endpoint_name, serving, decoded, windows)

    def _publish(self, result: RunResult, signals: HomeSignals) -> None:
        result.metrics += signals.metrics
        result.facts.update(signals.facts)
        self.sink.put(result.metrics)
        if self.home is not None:
            self.home.commit()
