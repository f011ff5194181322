"""CloudWatch's alarm evaluation, pure: the state an alarm would be in at one instant, from
timestamped datapoints and the time each became visible (`alarm_state`), replayed minute by
minute over a timeline (`replay`). The definitions it evaluates are `core.alarms`'s."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Iterable, Sequence

if TYPE_CHECKING:
    from mlops_kit.core.alarms import AlarmDefinition

COMPARISONS = {
    "GreaterThanThreshold": lambda v, t: v > t,
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}
PERCENTILE = re.compile(r"^p(100(\.0+)?|\d{1,2}(\.\d+)?)$")
"""A percentile statistic: p0 .. p100, decimals allowed (p99.9)."""


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
    if PERCENTILE.match(statistic):
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
            and PERCENTILE.match(definition.statistic)
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
