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
datapoints and the time each became visible; `replay` runs it every minute over a timeline.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

DEFINITIONS_FILE = Path(__file__).with_name("alarm_definitions.json")
COMPARISONS = {
    "GreaterThanThreshold": lambda v, t: v > t,
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}
MISSING_TREATMENTS = ("missing", "notBreaching", "breaching", "ignore")
STATES = ("OK", "ALARM", "INSUFFICIENT_DATA")
STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
_PERCENTILE = re.compile(r"^p(100(\.0+)?|\d{1,2}(\.\d+)?)$")
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
    if statistic not in STATISTICS and not _PERCENTILE.match(statistic):
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
    raw = json.loads(Path(path).read_text())
    specs = tuple(AlarmSpec(**a) for a in raw["alarms"])
    if len({s.id for s in specs}) != len(specs):
        raise ValueError("alarm ids must be unique")
    return specs


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


# -- CloudWatch's evaluation -------------------------------------------------------------------

def aggregate(values: Sequence[float], statistic: str) -> float:
    """CloudWatch statistics over one period's datapoints (pN: nearest-rank percentile)."""
    if not values:
        return math.nan
    if statistic == "Maximum":
        return max(values)
    if statistic == "Minimum":
        return min(values)
    if statistic == "Sum":
        return float(sum(values))
    if statistic == "Average":
        return sum(values) / len(values)
    if statistic == "SampleCount":
        return float(len(values))
    if _PERCENTILE.match(statistic):
        ordered = sorted(values)
        rank = math.ceil(float(statistic[1:]) / 100 * len(ordered))
        return ordered[max(rank, 1) - 1]
    raise ValueError(f"unsupported statistic {statistic}")


def _significant_samples(statistic: str) -> float:
    """CloudWatch's low-sample bound for a percentile: 10/(1-p) above p50, 10/p below."""
    p = float(statistic[1:]) / 100
    if p >= 1 or p <= 0:
        return math.inf
    return round(10 / (1 - p) if p > 0.5 else 10 / p, 6)  # p90: 100, not 100.00000000000003


@dataclass(frozen=True)
class Datapoint:
    """One published value: the time it describes, and when CloudWatch could first see it
    (`published`; None: at `timestamp`)."""
    timestamp: datetime
    value: float
    published: datetime | None = None


@dataclass(frozen=True)
class AlarmEvaluation:
    state: str
    at: datetime
    period_starts: tuple[datetime, ...]
    """The evaluation range, oldest first."""
    values: tuple[float | None, ...]
    """Each period's statistic (None: missing), oldest first."""
    breaching: int
    """Breaching datapoints counted, filled missing ones included."""
    evaluated: int
    """Datapoints evaluated (N), of which `real` were real and the rest filled."""
    real: int
    reason: str

    @property
    def datapoints(self) -> list[float]:
        return [v for v in self.values if v is not None]


@dataclass(frozen=True)
class Transition:
    at: datetime
    state: str
    previous_state: str
    evaluation: AlarmEvaluation


def _epoch(at: datetime) -> float:
    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).timestamp()


def _from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def _decide(definition: AlarmDefinition, values: Sequence[float | None],
            previous_state: str) -> tuple[str, int, int, int]:
    """(state, breaching, evaluated, real) of an evaluation range, oldest first."""
    n, m = definition.evaluation_periods, definition.datapoints_to_alarm
    compare = COMPARISONS[definition.comparison]
    breaches = lambda v: compare(v, definition.threshold)  # noqa: E731
    real = [(i, v) for i, v in enumerate(values) if v is not None]
    if len(real) >= n:
        # Enough datapoints in the range: the newest N real ones, the treatment unused.
        evaluated = [v for _, v in real[-n:]]
        breaching = sum(1 for v in evaluated if breaches(v))
        return ("ALARM" if breaching >= m else "OK"), breaching, n, n
    k = len(real)
    fills = n - k
    real_breaching = sum(1 for _, v in real if breaches(v))
    treatment = definition.treat_missing_data
    if treatment in ("breaching", "notBreaching"):
        breaching = real_breaching + (fills if treatment == "breaching" else 0)
        return ("ALARM" if breaching >= m else "OK"), breaching, n, k
    # missing / ignore: a filled datapoint is neither breaching nor not breaching.
    if real_breaching >= m:
        return "ALARM", real_breaching, n, k
    if real_breaching < k:  # a real datapoint within the threshold: ALARM is out of reach
        return "OK", real_breaching, n, k
    if treatment == "missing" and k:
        # The documented case "X - - - -" (3 of 3): ALARM, "because the oldest evaluated
        # datapoint is breaching and there aren't any non-breaching datapoints". The N
        # evaluated are the real ones plus the newest missing periods.
        missing_slots = [i for i, v in enumerate(values) if v is None][-fills:] if fills else []
        if real[0][0] < min(missing_slots, default=len(values)):
            return "ALARM", real_breaching, n, k
    if treatment == "missing":
        return "INSUFFICIENT_DATA", real_breaching, n, k
    return previous_state, real_breaching, n, k


def _reason(definition: AlarmDefinition, state: str, breaching: int, real: int) -> str:
    verb = {"GreaterThanThreshold": "greater than", "LessThanThreshold": "less than",
            "GreaterThanOrEqualToThreshold": "greater than or equal to",
            "LessThanOrEqualToThreshold": "less than or equal to"}[definition.comparison]
    if state == "INSUFFICIENT_DATA":
        return (f"Insufficient Data: {real} datapoint(s) for {definition.evaluation_periods} "
                f"evaluation periods")
    return (f"Threshold Crossed: {breaching} out of the last {definition.evaluation_periods} "
            f"datapoints {'were' if state == 'ALARM' else 'were not'} {verb} the threshold "
            f"({definition.threshold:g})")


class _Buckets:
    """Datapoints by period index, for repeated evaluations of one alarm."""

    def __init__(self, definition: AlarmDefinition, datapoints: Iterable[Datapoint]):
        self.period = float(definition.period_seconds)
        self.by_index: dict[int, list[tuple[float, float]]] = {}
        for point in datapoints:
            ts = _epoch(point.timestamp)
            published = _epoch(point.published) if point.published is not None else ts
            self.by_index.setdefault(math.floor(ts / self.period), []).append(
                (published, float(point.value)))

    def visible(self, index: int, at: float) -> list[float]:
        return [v for published, v in self.by_index.get(index, ()) if published <= at]


def _evaluate_buckets(definition: AlarmDefinition, buckets: _Buckets, at: datetime,
                      previous_state: str, range_periods: int | None) -> AlarmEvaluation:
    n = definition.evaluation_periods
    size = n if range_periods is None else range_periods
    if size < n:
        raise ValueError("range_periods must be at least evaluation_periods")
    t = _epoch(at)
    newest = math.floor(t / buckets.period) - 1  # the newest complete period
    indices = range(newest - size + 1, newest + 1)
    samples = [buckets.visible(i, t) for i in indices]
    values = tuple(None if not s else aggregate(s, definition.statistic) for s in samples)
    state, breaching, evaluated, real = _decide(definition, values, previous_state)
    if (definition.evaluate_low_sample_count_percentile == "ignore"
            and _PERCENTILE.match(definition.statistic)
            and any(s and len(s) < _significant_samples(definition.statistic)
                    for s in samples)):
        state = previous_state
    return AlarmEvaluation(state, at, tuple(_from_epoch(i * buckets.period) for i in indices),
                           values, breaching, evaluated, real,
                           _reason(definition, state, breaching, real))


def alarm_state(definition: AlarmDefinition, datapoints: Iterable[Datapoint], at: datetime,
                previous_state: str = "INSUFFICIENT_DATA", *,
                range_periods: int | None = None) -> AlarmEvaluation:
    """The state CloudWatch would compute for `definition` when evaluating at `at`.

    Modelled from CloudWatch's documentation ("Using Amazon CloudWatch alarms", "How alarm
    state is evaluated when data is missing"):

    - Datapoints are aggregated with the statistic per period, periods aligned to multiples
      of the period since the epoch; a period without a datapoint is missing.
    - Only datapoints visible at `at` count (`published` <= `at`), whatever their timestamp:
      a late datapoint counts once published if its period is still in the range.
    - With at least N (evaluation periods) real datapoints in the evaluation range, the N
      newest real ones are evaluated and the missing-data treatment is not applied. With
      fewer, the missing ones are filled with the treatment, as few as needed: breaching and
      notBreaching count as such; every real datapoint in the range is evaluated. ALARM when
      at least M (datapoints to alarm) of the N breach, otherwise OK; for missing and ignore
      (a filled datapoint is neither breaching nor not), ALARM if the real ones alone reach
      M, OK if a real one is within the threshold, otherwise INSUFFICIENT_DATA (missing;
      ALARM when the oldest evaluated datapoint is a real breaching one, as the documented
      "X - - - -" example says) or the previous state (ignore).
    - pNN: nearest-rank percentile of the period's values. With
      evaluate_low_sample_count_percentile "ignore", an evaluated period with fewer than
      10/(1-p) samples (10/p for p <= 0.5) keeps the previous state.

    Assumptions where the documentation is not precise, each on the conservative side for
    detection (the model alarms no sooner than CloudWatch would):

    - The current, incomplete period is not evaluated: the range ends with the newest
      period that has ended by `at`.
    - The evaluation range is N periods (`range_periods`, default N). CloudWatch retrieves
      "a higher number" depending on the period (the documented example: 5 for N = 3, pass
      `range_periods=5` to reproduce its tables); with notBreaching or missing a longer range
      only adds real datapoints, which never lowers the breaching count.
    - Percentiles are exact nearest-rank over the values published in the period (CloudWatch
      computes them from its own aggregation of the values, possibly approximately).
    - Datapoints carry no unit; no alarm Unit filter is applied.
    - A datapoint is visible to alarms as soon as it is published (no extra ingestion delay:
      put it into `published`).
    """
    return _evaluate_buckets(definition, _Buckets(definition, datapoints), at, previous_state,
                             range_periods)


def replay(definition: AlarmDefinition, datapoints: Iterable[Datapoint], start: datetime,
           end: datetime, *, every: timedelta = timedelta(minutes=1),
           initial_state: str = "INSUFFICIENT_DATA",
           range_periods: int | None = None) -> list[Transition]:
    """Evaluate at `start`, `start + every`, ... up to `end` (CloudWatch evaluates alarms
    every minute; the phase of `start` against the periods is the caller's choice) and
    return the state transitions, each with its time and evaluation. A new alarm starts
    INSUFFICIENT_DATA."""
    if every <= timedelta(0):
        raise ValueError("every must be positive")
    buckets = _Buckets(definition, datapoints)
    state = initial_state
    transitions: list[Transition] = []
    at = start
    while at <= end:
        result = _evaluate_buckets(definition, buckets, at, state, range_periods)
        if result.state != state:
            transitions.append(Transition(at, result.state, state, result))
            state = result.state
        at += every
    return transitions


def evaluate(definition: AlarmDefinition, periods: Sequence[Sequence[float]],
             previous_state: str = "INSUFFICIENT_DATA") -> tuple[str, list[float]]:
    """The state of an evaluation range already cut into periods (oldest first, each a list
    of that period's values; `alarm_state` cuts them from timestamps). Returns (state, each
    period's statistic, nan for a missing one). Same rule as `alarm_state`."""
    values = [aggregate(p, definition.statistic) for p in periods]
    if len(values) < definition.evaluation_periods:
        values = [math.nan] * (definition.evaluation_periods - len(values)) + values
    state, _, _, _ = _decide(definition, [None if math.isnan(v) else v for v in values],
                             previous_state)
    return state, values
