"""The kit's alarms, from one definition file, and CloudWatch's alarm evaluation, pure.

Three layers, used by the CDK app, the local home and the tests alike:

- `AlarmSpec`: one entry of alarm_definitions.json: what to watch (metric, statistic,
  threshold), the cadence of the publisher that feeds it, and its M-of-N rule in the
  publisher's own datapoints. Schedule-free.
- `fit_to_schedule` / `AlarmSpec.fit`: the concrete CloudWatch settings (period, evaluation
  periods, datapoints to alarm) for a stage's drift-monitor schedule, derived so that the
  alarm's window always holds the datapoints the monitor has published (see `AlarmSpec.fit`).
- `AlarmDefinition`: one concrete CloudWatch alarm: what infra deploys, what the local
  evaluator and the deployed-twin tests evaluate (`from_cloudformation` reads one back from a
  synthesized template).

`alarm_state` computes the state CloudWatch would compute at one instant from timestamped
datapoints and the time each became visible; `replay` runs it every minute over a timeline
(both in `core.alarm_evaluation`, importable from here).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import AbstractSet, Any, Iterable, Mapping, Protocol

from mlops_kit.core import metric_catalogue
# CloudWatch's evaluation has its own module; its names stay importable from here.
from mlops_kit.core.alarm_evaluation import (COMPARISONS, PERCENTILE, AlarmEvaluation,  # noqa: F401
                                             Datapoint, Transition, aggregate, alarm_state,
                                             evaluate, replay)

DEFINITIONS_FILE = Path(__file__).with_name("alarm_definitions.json")
MISSING_TREATMENTS = ("missing", "notBreaching", "breaching", "ignore")
STATES = ("OK", "ALARM", "INSUFFICIENT_DATA")
STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
HOMES = ("aws", "local")
"""Where an alarm exists: the stage's CloudWatch alarms (infra) and the local monitor's. Most
alarms exist in both; one whose metric only one home can publish (the local endpoint's dropped
capture records, SageMaker's invocations without capture) names that home alone."""
CADENCES = ("per_run", "per_minute")
"""per_run: one datapoint per monitor run, stamped with the run's time (PSI, AUPR).
per_minute: one datapoint per minute, the minutes of one schedule interval republished by
each run, `SERVICE_METRICS_LAG_MINUTES` behind it (the champion's SageMaker 5XX, latency)."""

DEFAULT_SCHEDULE_MINUTES = 10
"""The drift monitor's schedule when none is given (cdk.json's stages and StageConfig's
default); the CDK app always passes the stage's own `driftScheduleMinutes`."""

SERVICE_METRICS_LAG_MINUTES = 3
"""How far behind its run the monitor's window of SageMaker's per-minute metrics ends.
SageMaker's endpoint metrics reach CloudWatch a minute or two after the minute they describe;
a minute still missing when the monitor reads it would never be republished (the next run's
window starts where this one ended). Three minutes: that delay plus a minute of margin.
`mlops_kit.aws.monitoring.SERVICE_METRICS_LAG` is this, as a timedelta."""

PUBLISH_DELAY_MINUTES = 2
"""Allowance from a run's scheduled time to its datapoints being visible to CloudWatch alarms:
the Lambda's run (capture read, PSI maths) and the EMF extraction from its log. A run later
than that (throttled, retried) can leave a gap in an alarm's window until it lands."""


def _check_statistic(statistic: str) -> None:
    if statistic not in STATISTICS and not PERCENTILE.match(statistic):
        raise ValueError(f"unsupported statistic {statistic!r} (one of {STATISTICS} or pNN)")


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be an integer of at least 1, not {value!r}")
    return value


def _check_rule(ident: str, comparison: str, treatment: str, statistic: str, m: int, n: int,
                n_name: str) -> None:
    """What a spec and a concrete alarm both must hold: comparison, missing-data treatment,
    statistic, and an M-of-N rule with 1 <= M <= N."""
    if comparison not in COMPARISONS:
        raise ValueError(f"alarm {ident}: unknown comparison {comparison}")
    if treatment not in MISSING_TREATMENTS:
        raise ValueError(f"alarm {ident}: unknown missing-data treatment {treatment}")
    _check_statistic(statistic)
    _positive_int(n, f"alarm {ident}: {n_name}")
    if not 1 <= m <= n:
        raise ValueError(f"alarm {ident}: datapoints_to_alarm must be 1..{n_name}")


def _check_homes(ident: str, homes: Any) -> tuple[str, ...]:
    found = tuple(homes) if isinstance(homes, (list, tuple)) else ()
    if not found or any(h not in HOMES for h in found):
        raise ValueError(f"alarm {ident}: homes must be a non-empty list of {HOMES}, "
                         f"not {homes!r}")
    return found


# -- concrete CloudWatch alarms ------------------------------------------------------------------

@dataclass(frozen=True)
class AlarmDefinition:
    """One CloudWatch metric alarm, as PutMetricAlarm / AWS::CloudWatch::Alarm describe it.

    `dimensions` may hold "{endpoint}" and "{champion}" placeholders (`resolved_dimensions`);
    the alarm is named `<endpoint>-<id>`. `period_seconds` is an int for CloudWatch; the local
    evaluator evaluates a compressed copy with a fractional period.
    """
    id: str
    namespace: str
    metric: str
    statistic: str
    period_seconds: float
    evaluation_periods: int
    datapoints_to_alarm: int
    comparison: str
    threshold: float
    treat_missing_data: str = "missing"
    dimensions: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    rollback: bool = True
    """A rollback alarm: its ALARM goes to the rollback controller. Otherwise notify-only
    (SNS, on-call), matched by no rollback rule (`contract.alarm_event_pattern`)."""
    evaluate_low_sample_count_percentile: str = "evaluate"
    homes: tuple[str, ...] = HOMES

    def __post_init__(self) -> None:
        _check_rule(self.id, self.comparison, self.treat_missing_data, self.statistic,
                    self.datapoints_to_alarm, self.evaluation_periods, "evaluation_periods")
        object.__setattr__(self, "homes", _check_homes(self.id, self.homes))
        if not self.period_seconds > 0:
            raise ValueError(f"alarm {self.id}: period_seconds must be positive")
        if self.evaluate_low_sample_count_percentile not in ("evaluate", "ignore"):
            raise ValueError(f"alarm {self.id}: evaluate_low_sample_count_percentile must be "
                             f"evaluate or ignore")

    def alarm_name(self, endpoint_name: str) -> str:
        return f"{endpoint_name}-{self.id}"

    def resolved_dimensions(self, endpoint_name: str, champion_variant: str = "") -> dict[str, str]:
        return {k: v.replace("{endpoint}", endpoint_name).replace("{champion}", champion_variant)
                for k, v in self.dimensions.items()}

    @property
    def variant_scoped(self) -> bool:
        """Watches one variant by name ("{champion}"): no fixed CloudWatch alarm can."""
        return any("{champion}" in str(v) for v in self.dimensions.values())

    @classmethod
    def from_cloudformation(cls, alarm_name: str, properties: Mapping[str, Any], *,
                            rollback: bool = True) -> "AlarmDefinition":
        """The definition of an AWS::CloudWatch::Alarm's Properties (a synthesized template's).

        Single-metric alarms only (no `Metrics` math). Defaults as CloudFormation's:
        DatapointsToAlarm = EvaluationPeriods, TreatMissingData = missing. The id is the name
        without its "<EndpointName dimension>-" prefix, so `alarm_name` gives the name back.
        `Unit` is not modelled (datapoints carry none). `rollback` cannot be read from a
        template: the caller says.
        """
        for key in ("Metrics", "ThresholdMetricId"):
            if key in properties:
                raise ValueError(f"{alarm_name}: {key} alarms are not modelled")
        literal = {}
        for key in ("MetricName", "Namespace", "Period", "EvaluationPeriods", "Threshold",
                    "ComparisonOperator"):
            if key not in properties:
                raise ValueError(f"{alarm_name}: no {key}")
            if isinstance(properties[key], (dict, list)):
                raise ValueError(f"{alarm_name}: {key} is not a literal: {properties[key]!r}")
            literal[key] = properties[key]
        statistic = properties.get("ExtendedStatistic") or properties.get("Statistic")
        if not isinstance(statistic, str):
            raise ValueError(f"{alarm_name}: no Statistic or ExtendedStatistic")
        dimensions = {}
        for item in properties.get("Dimensions", []) or []:
            if not isinstance(item.get("Value"), str):
                raise ValueError(f"{alarm_name}: dimension {item.get('Name')} is not a literal")
            dimensions[item["Name"]] = item["Value"]
        endpoint = dimensions.get("EndpointName", "")
        ident = (alarm_name[len(endpoint) + 1:]
                 if endpoint and alarm_name.startswith(f"{endpoint}-") else alarm_name)
        evaluation_periods = int(literal["EvaluationPeriods"])
        return cls(
            id=ident, namespace=literal["Namespace"], metric=literal["MetricName"],
            statistic=statistic, period_seconds=int(literal["Period"]),
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=int(properties.get("DatapointsToAlarm") or evaluation_periods),
            comparison=literal["ComparisonOperator"], threshold=float(literal["Threshold"]),
            treat_missing_data=properties.get("TreatMissingData") or "missing",
            dimensions=dimensions, description=properties.get("AlarmDescription") or "",
            rollback=rollback,
            evaluate_low_sample_count_percentile=(
                properties.get("EvaluateLowSampleCountPercentile") or "evaluate"))


# -- the definition file and the fitting to a schedule ------------------------------------------

@dataclass(frozen=True)
class AlarmSpec:
    """One entry of alarm_definitions.json.

    The rule is stated in the publisher's own datapoints: ALARM when at least
    `datapoints_to_alarm` (M) of its last `evaluation_datapoints` (N) datapoints breach, one
    datapoint being one run (`per_run`) or one minute (`per_minute`).
    """
    id: str
    description: str
    namespace: str
    metric: str
    dimensions: Mapping[str, str]
    statistic: str
    comparison: str
    threshold: float
    cadence: str
    datapoints_to_alarm: int
    evaluation_datapoints: int
    treat_missing_data: str
    rollback: bool
    homes: tuple[str, ...] = HOMES

    def __post_init__(self) -> None:
        if self.cadence not in CADENCES:
            raise ValueError(f"alarm {self.id}: cadence must be one of {CADENCES}")
        object.__setattr__(self, "homes", _check_homes(self.id, self.homes))
        _check_rule(self.id, self.comparison, self.treat_missing_data, self.statistic,
                    self.datapoints_to_alarm, self.evaluation_datapoints,
                    "evaluation_datapoints")

    def fit(self, schedule_minutes: int, *, lag_minutes: int = SERVICE_METRICS_LAG_MINUTES,
            publish_delay_minutes: int = PUBLISH_DELAY_MINUTES) -> AlarmDefinition:
        """The CloudWatch settings for a monitor running every `schedule_minutes` (S).

        Write L = `lag_minutes`, D = `publish_delay_minutes` (a run's datapoints are visible
        at most D after its scheduled time), M of N the spec's rule. Evaluated as
        `alarm_state` does (complete periods only, evaluation range = evaluation periods):

        per_run: period = S, evaluation periods = N + ceil(D / S), datapoints to alarm = M.
          Runs are S apart, so each period holds exactly one run's datapoint. A closed
          period's datapoint may still be invisible for up to D, so at most ceil(D / S) of the
          newest closed periods can lack theirs: the window always holds the last N runs'
          datapoints whose periods have closed (and, when all are visible, ceil(D / S) more,
          hence "M of N + 1 runs" at S = 10). A sustained breach alarms at the first
          evaluation after the M-th breaching run's period closes and its datapoint is
          visible: within one schedule interval of that run; healthy runs never breach.

        per_minute: period = 60 s, evaluation periods = S + L + D + N, datapoints to
          alarm = M. The run at R republishes the minutes [R - S - L, R - L), visible by
          R + D, and the next run's minutes arrive S later. Just before that (the oldest the
          newest visible minute ever gets), the window [t - (S + L + D + N) min, t) with
          t <= R + S + D still starts at or before R - L - N: it holds the last N published
          minutes at every instant, hence the alarm never flaps between two runs of a
          sustained breach; just after a run lands it holds all S minutes of that run and N
          before, so any M breaching minutes among them alarm at once: within about one
          schedule interval (plus L, and M minutes) of the breach starting. Minutes not yet
          published are missing, so notBreaching counts only published minutes.

        A longer real evaluation range (CloudWatch retrieves more periods than N) or a
        partial current period only add datapoints to the window, and with notBreaching
        more datapoints never count fewer breaches: the bounds above still hold.
        """
        schedule = _positive_int(schedule_minutes, "schedule_minutes")
        for value, what in ((lag_minutes, "lag_minutes"),
                            (publish_delay_minutes, "publish_delay_minutes")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{what} must be a non-negative integer, not {value!r}")
        n, m = self.evaluation_datapoints, self.datapoints_to_alarm
        if self.cadence == "per_run":
            period = schedule * 60
            evaluation_periods = n + math.ceil(publish_delay_minutes / schedule)
        else:
            period = 60
            evaluation_periods = schedule + lag_minutes + publish_delay_minutes + n
        if period * evaluation_periods > 86_400:
            raise ValueError(f"alarm {self.id}: {evaluation_periods} periods of {period} s "
                             f"exceed CloudWatch's one-day evaluation limit")
        return AlarmDefinition(
            id=self.id, namespace=self.namespace, metric=self.metric, statistic=self.statistic,
            period_seconds=period, evaluation_periods=evaluation_periods, datapoints_to_alarm=m,
            comparison=self.comparison, threshold=self.threshold,
            treat_missing_data=self.treat_missing_data, dimensions=dict(self.dimensions),
            description=self.description, rollback=self.rollback, homes=self.homes)


def in_home(definitions: Iterable[Any], home: str) -> tuple[Any, ...]:
    """The specs or definitions that exist in `home` ("aws" or "local")."""
    if home not in HOMES:
        raise ValueError(f"unknown home {home!r} (one of {HOMES})")
    return tuple(d for d in definitions if home in d.homes)


def rollback_alarm_ids(path: str | Path = DEFINITIONS_FILE) -> tuple[str, ...]:
    """The ids of the alarms whose ALARM goes to the rollback controller."""
    return tuple(s.id for s in load_specs(path) if s.rollback)


def load_specs(path: str | Path = DEFINITIONS_FILE) -> tuple[AlarmSpec, ...]:
    """The definition file's alarms, each checked against the metric catalogue: an alarm on a
    metric, or a dimension set, that no publisher emits would never leave OK."""
    raw = json.loads(Path(path).read_text())
    specs = tuple(AlarmSpec(**a) for a in raw["alarms"])
    if len({s.id for s in specs}) != len(specs):
        raise ValueError("alarm ids must be unique")
    for spec in specs:
        check_published(spec)
    return specs


def check_published(spec: AlarmSpec) -> None:
    """ValueError naming the alarm unless `core.metric_catalogue` lists its metric under
    exactly its dimensions."""
    try:
        metric = metric_catalogue.lookup(spec.namespace, spec.metric)
    except ValueError as exc:
        raise ValueError(f"alarm {spec.id}: {exc}") from None
    if not metric.publishes(spec.dimensions):
        raise ValueError(f"alarm {spec.id}: {spec.metric} is not published with dimensions "
                         f"{sorted(spec.dimensions)} (only {list(metric.dimension_sets)})")


def fit_to_schedule(specs: Iterable[AlarmSpec], schedule_minutes: int, *,
                    lag_minutes: int = SERVICE_METRICS_LAG_MINUTES,
                    publish_delay_minutes: int = PUBLISH_DELAY_MINUTES
                    ) -> tuple[AlarmDefinition, ...]:
    """Every spec's CloudWatch settings for one stage's schedule (`AlarmSpec.fit`)."""
    return tuple(s.fit(schedule_minutes, lag_minutes=lag_minutes,
                       publish_delay_minutes=publish_delay_minutes) for s in specs)


def load_definitions(path: str | Path = DEFINITIONS_FILE, *,
                     schedule_minutes: int = DEFAULT_SCHEDULE_MINUTES,
                     lag_minutes: int = SERVICE_METRICS_LAG_MINUTES,
                     publish_delay_minutes: int = PUBLISH_DELAY_MINUTES
                     ) -> tuple[AlarmDefinition, ...]:
    """The definition file's alarms fitted to `schedule_minutes` (the ids, names, metrics and
    thresholds do not depend on it; the windows do)."""
    return fit_to_schedule(load_specs(path), schedule_minutes, lag_minutes=lag_minutes,
                           publish_delay_minutes=publish_delay_minutes)


class _Transition(Protocol):
    """`monitoring.alarm_events.AlarmTransition`, as `rollback_admission` reads it."""
    alarm_name: str
    state: str
    previous_state: str | None
    endpoint_name: str | None


def rollback_admission(alarm: _Transition, definitions: Iterable[AlarmDefinition],
                       managed_endpoints: AbstractSet[str] = frozenset()) -> tuple[bool, str]:
    """Whether this alarm transition is one to roll back for: going into ALARM, of an endpoint
    managed here (any, when `managed_endpoints` is empty), and one of the kit's rollback
    alarms for that endpoint. The reason when not, or the alarm definition's id."""
    if alarm.state != "ALARM" or alarm.previous_state == "ALARM":
        return False, (f"{alarm.alarm_name}: {alarm.previous_state or '?'} → {alarm.state}"
                       " is not a transition into ALARM")
    endpoint = alarm.endpoint_name
    if not endpoint:
        return False, "the alarm's metric names no EndpointName"
    if managed_endpoints and endpoint not in managed_endpoints:
        return False, f"endpoint {endpoint} is not managed here"
    for definition in definitions:
        if definition.rollback and alarm.alarm_name == definition.alarm_name(endpoint):
            return True, definition.id
    return False, f"alarm {alarm.alarm_name} is not one of the kit's rollback alarms"
