"""Alarm definitions (one JSON file for CloudWatch and the local evaluator) and CloudWatch's
evaluation rule (M out of N periods, explicit missing-data treatment) for the local home."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

DEFINITIONS_FILE = Path(__file__).with_name("alarm_definitions.json")
COMPARISONS = {
    "GreaterThanThreshold": lambda v, t: v > t,
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}
MISSING_TREATMENTS = ("missing", "notBreaching", "breaching", "ignore")
STATES = ("OK", "ALARM", "INSUFFICIENT_DATA")


@dataclass(frozen=True)
class AlarmDefinition:
    id: str
    description: str
    namespace: str
    metric: str
    dimensions: Mapping[str, str]
    statistic: str
    period_seconds: int
    comparison: str
    threshold: float
    evaluation_periods: int
    datapoints_to_alarm: int
    treat_missing_data: str
    rollback: bool

    def alarm_name(self, endpoint_name: str) -> str:
        return f"{endpoint_name}-{self.id}"

    def resolved_dimensions(self, endpoint_name: str, champion_variant: str = "") -> dict[str, str]:
        return {k: v.replace("{endpoint}", endpoint_name).replace("{champion}", champion_variant)
                for k, v in self.dimensions.items()}


def load_definitions(path: str | Path = DEFINITIONS_FILE) -> tuple[AlarmDefinition, ...]:
    raw = json.loads(Path(path).read_text())
    definitions = tuple(AlarmDefinition(**{k: v for k, v in a.items()}) for a in raw["alarms"])
    for d in definitions:
        if d.comparison not in COMPARISONS:
            raise ValueError(f"alarm {d.id}: unknown comparison {d.comparison}")
        if d.treat_missing_data not in MISSING_TREATMENTS:
            raise ValueError(f"alarm {d.id}: unknown missing-data treatment {d.treat_missing_data}")
        if not 1 <= d.datapoints_to_alarm <= d.evaluation_periods:
            raise ValueError(f"alarm {d.id}: datapoints_to_alarm must be 1..evaluation_periods")
    if len({d.id for d in definitions}) != len(definitions):
        raise ValueError("alarm ids must be unique")
    return definitions


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
    if statistic.startswith("p"):
        ordered = sorted(values)
        rank = math.ceil(float(statistic[1:]) / 100 * len(ordered))
        return ordered[max(rank, 1) - 1]
    raise ValueError(f"unsupported statistic {statistic}")


def evaluate(definition: AlarmDefinition, periods: Sequence[Sequence[float]],
             previous_state: str = "INSUFFICIENT_DATA") -> tuple[str, list[float]]:
    """State from the last `evaluation_periods` periods (oldest first); returns (state, values).

    CloudWatch's rule: ALARM when at least `datapoints_to_alarm` of the evaluated periods
    breach. Missing periods count as the treatment says; with "ignore" the state stays as it
    was when nothing can be evaluated; with "missing" and no data at all: INSUFFICIENT_DATA.
    """
    window = list(periods)[-definition.evaluation_periods:]
    values = [aggregate(p, definition.statistic) for p in window]
    compare = COMPARISONS[definition.comparison]
    breaching = 0
    evaluated = 0
    for value in values:
        if math.isnan(value):
            treatment = definition.treat_missing_data
            if treatment == "breaching":
                breaching += 1
                evaluated += 1
            elif treatment == "notBreaching":
                evaluated += 1
            continue
        evaluated += 1
        breaching += compare(value, definition.threshold)
    if breaching >= definition.datapoints_to_alarm:
        return "ALARM", values
    if evaluated == 0:
        return (previous_state if definition.treat_missing_data == "ignore"
                else "INSUFFICIENT_DATA"), values
    return "OK", values
