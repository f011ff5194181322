"""Every metric the kit publishes for monitoring, once: name, unit, the dimension sets it is
published under, and who publishes it. Standard library only.

The publishers build their datapoints from these entries (`MetricSpec.datum`: a dimension set
the catalogue does not list is refused), the alarm definitions are checked against them when
loaded (`core.alarms.load_specs`: an alarm on a metric or a dimension set nobody publishes is
an error, not an alarm that never fires), and infra names the dashboard's metrics with them.

A datum is a plain record (`MetricDatum`), stamped with the time it describes, and carries
its CloudWatch embedded metric format (EMF) both ways: the Lambdas print it, the local home
appends it to $MLOPS_HOME/metrics/metrics.jsonl.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Mapping

NAMESPACE = "MLOpsKit/Monitoring"

DRIFT_MONITOR = "drift_monitor"
"""The drift monitor Lambda (AWS)."""
PROBE = "probe"
"""The probe Lambda (AWS)."""
LOCAL_MONITOR = "local_monitor"
"""`mlops monitor` / the demo: the drift run and the probes on the local home."""

ENDPOINT = ("EndpointName",)
VARIANT = ("EndpointName", "VariantName")


def epoch_millis(at: datetime) -> int:
    """EMF's `_aws.Timestamp` of a datum's time (a naive time is taken as UTC)."""
    return int((at if at.tzinfo else at.replace(tzinfo=timezone.utc)).timestamp() * 1000)


@dataclass(frozen=True)
class MetricDatum:
    name: str
    value: float
    dimensions: Mapping[str, str]
    timestamp: datetime
    unit: str = "None"
    namespace: str = NAMESPACE

    def to_emf(self) -> dict:
        return {
            "_aws": {"Timestamp": epoch_millis(self.timestamp),
                     "CloudWatchMetrics": [{"Namespace": self.namespace,
                                            "Dimensions": [sorted(self.dimensions)],
                                            "Metrics": [{"Name": self.name, "Unit": self.unit}]}]},
            **dict(self.dimensions),
            self.name: self.value,
        }

    @classmethod
    def from_emf(cls, document: Mapping) -> list["MetricDatum"]:
        meta = document["_aws"]
        at = datetime.fromtimestamp(meta["Timestamp"] / 1000, tz=timezone.utc)
        data = []
        for directive in meta["CloudWatchMetrics"]:
            names = directive["Dimensions"][0] if directive["Dimensions"] else []
            dims = {k: str(document[k]) for k in names}
            for metric in directive["Metrics"]:
                raw = document[metric["Name"]]  # EMF: one value, or an array of values
                for value in (raw if isinstance(raw, list) else [raw]):
                    data.append(cls(metric["Name"], float(value), dims, at,
                                    metric.get("Unit", "None"), directive["Namespace"]))
        return data


@dataclass(frozen=True)
class MetricSpec:
    name: str
    unit: str
    """A CloudWatch unit name ("None", "Count", "Microseconds", "Milliseconds")."""
    dimension_sets: tuple[tuple[str, ...], ...]
    """Each set of dimension names it is published under, sorted."""
    published_by: tuple[str, ...]
    doc: str
    namespace: str = NAMESPACE

    def __post_init__(self) -> None:
        for names in self.dimension_sets:
            if tuple(sorted(names)) != names:
                raise ValueError(f"metric {self.name}: dimension set {names} is not sorted")

    def publishes(self, dimension_names: Iterable[str]) -> bool:
        return tuple(sorted(dimension_names)) in self.dimension_sets

    def datum(self, value: float, dimensions: Mapping[str, str], at: datetime) -> MetricDatum:
        """One datapoint of this metric; ValueError for a dimension set it is not published
        under (an alarm or a dashboard on the intended set would never see it)."""
        if not self.publishes(dimensions):
            raise ValueError(f"metric {self.name} is not published with dimensions "
                             f"{sorted(dimensions)} (only {list(self.dimension_sets)})")
        return MetricDatum(self.name, float(value), dict(dimensions), at, self.unit,
                           self.namespace)


_BOTH_DRIFT_RUNS = (DRIFT_MONITOR, LOCAL_MONITOR)
_BOTH_PROBES = (PROBE, LOCAL_MONITOR)

# The catalogue as a table, one row per metric, each row commented with the name it is bound
# to: (name, unit, dimension sets, published by, what it is).
CATALOGUE: tuple[MetricSpec, ...] = tuple(MetricSpec(*row) for row in (
    # FEATURE_PSI
    ("FeaturePSI", "None", (("EndpointName", "Feature", "VariantName"),), _BOTH_DRIFT_RUNS,
     "PSI of one feature of one variant's captured traffic against the champion's baseline"),
    # FEATURE_PSI_MAX
    ("FeaturePSIMax", "None", (ENDPOINT,), _BOTH_DRIFT_RUNS,
     "the serving champion's worst FeaturePSI (alarm feature-drift)"),
    # PREDICTION_PSI
    ("PredictionPSI", "None", (ENDPOINT, VARIANT), _BOTH_DRIFT_RUNS,
     "PSI of the scores against the champion's training scores: the champion's at endpoint "
     "level (alarm prediction-drift), every variant's per variant (dashboards)"),
    # AUPR
    ("AUPR", "None", (ENDPOINT,), _BOTH_DRIFT_RUNS,
     "the champion's AUPR on the labels that arrived, joined on inferenceId (alarm performance)"),
    # CAPTURE_RECORDS
    ("CaptureRecords", "Count", (ENDPOINT, VARIANT), _BOTH_DRIFT_RUNS,
     "capture records the run found: per variant (both homes), every variant's at endpoint "
     "level (AWS)"),
    # CAPTURE_SKIPPED
    ("CaptureSkipped", "Count", (VARIANT,), _BOTH_DRIFT_RUNS,
     "capture records the run could not read (torn, wrong schema), per variant"),
    # UNCAPTURED_INVOCATIONS
    ("UncapturedInvocations", "Count", (ENDPOINT,), (DRIFT_MONITOR,),
     "the interval's invocations (AWS/SageMaker Invocations, every variant) when the capture "
     "held no record for it, else 0 (alarm capture-stopped)"),
    # CAPTURE_RECORDS_DROPPED
    ("CaptureRecordsDropped", "Count", (ENDPOINT,), (LOCAL_MONITOR,),
     "capture records the local endpoint's workers could not write in the interval, from "
     "their health files (alarm capture-dropped)"),
    # CHAMPION_5XX
    ("ChampionInvocation5XXErrors", "Count", (ENDPOINT,), (DRIFT_MONITOR,),
     "the serving champion's SageMaker Invocation5XXErrors (Sum), per minute, republished at "
     "endpoint level (alarm champion-5xx)"),
    # CHAMPION_LATENCY
    ("ChampionModelLatency", "Microseconds", (ENDPOINT,), (DRIFT_MONITOR,),
     "the serving champion's SageMaker ModelLatency (p99), per minute, republished at endpoint "
     "level (alarm champion-latency)"),
    # PROBE_SUCCESS
    ("ProbeSuccess", "None", (VARIANT,), _BOTH_PROBES,
     "1 when a variant, invoked pinned with baseline rows, answered well, else 0"),
    # PROBE_LATENCY
    ("ProbeLatency", "Milliseconds", (VARIANT,), _BOTH_PROBES,
     "the probe request's round trip, per variant"),
))
(FEATURE_PSI, FEATURE_PSI_MAX, PREDICTION_PSI, AUPR, CAPTURE_RECORDS, CAPTURE_SKIPPED,
 UNCAPTURED_INVOCATIONS, CAPTURE_RECORDS_DROPPED, CHAMPION_5XX, CHAMPION_LATENCY,
 PROBE_SUCCESS, PROBE_LATENCY) = CATALOGUE

_BY_KEY = {(m.namespace, m.name): m for m in CATALOGUE}
if len(_BY_KEY) != len(CATALOGUE):  # pragma: no cover - a broken catalogue fails on import
    raise ValueError("metric names must be unique per namespace")


def lookup(namespace: str, name: str) -> MetricSpec:
    """The catalogue's entry; ValueError naming the metric when it has none."""
    try:
        return _BY_KEY[(namespace, name)]
    except KeyError:
        known = ", ".join(sorted(m.name for m in CATALOGUE if m.namespace == namespace))
        raise ValueError(f"no metric {namespace}/{name} in the catalogue (known in "
                         f"{namespace}: {known or 'none'})") from None


def published_by(publisher: str) -> tuple[MetricSpec, ...]:
    return tuple(m for m in CATALOGUE if publisher in m.published_by)
