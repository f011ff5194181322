"""The local stand-in for CloudWatch alarms: the same definitions, the same M-of-N rule and
missing-data treatment, and the same "CloudWatch Alarm State Change" events on a transition."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Sequence

from mlops_kit.core.alarms import COMPARISONS, AlarmDefinition, evaluate
from mlops_kit.monitoring.alarm_events import alarm_state_change_event
from mlops_kit.monitoring.metrics import LocalMetricStore


@dataclass(frozen=True)
class AlarmState:
    state: str
    since: str
    values: list[float]


class LocalAlarmEvaluator:
    def __init__(self, home: str | Path, endpoint_name: str,
                 definitions: Sequence[AlarmDefinition], *,
                 champion_variant: Callable[[], str] = lambda: "",
                 time_scale: float = 1.0):
        """`time_scale` < 1 compresses every period (the demo runs a 300 s period in seconds);
        statistic, threshold and M-of-N stay as defined."""
        self.home = Path(home)
        self.endpoint_name = endpoint_name
        self.definitions = tuple(definitions)
        self.champion_variant = champion_variant
        self.time_scale = time_scale
        self.store = LocalMetricStore(home)
        self.state_path = self.home / "alarms" / f"{endpoint_name}.json"

    def states(self) -> dict[str, dict[str, Any]]:
        try:
            return json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return {}

    def _save(self, states: dict[str, dict[str, Any]]) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.state_path.parent, prefix=".alarms.")
        with os.fdopen(fd, "w") as handle:
            json.dump(states, handle, indent=2, sort_keys=True)
        os.replace(tmp, self.state_path)

    def evaluate(self, now: datetime) -> list[dict[str, Any]]:
        """Evaluate every alarm at `now`; returns the state-change events to publish."""
        states = self.states()
        data = self.store.read()
        champion = self.champion_variant()
        events = []
        for definition in self.definitions:
            name = definition.alarm_name(self.endpoint_name)
            dims = definition.resolved_dimensions(self.endpoint_name, champion)
            period = timedelta(seconds=definition.period_seconds * self.time_scale)
            periods = []
            for i in range(definition.evaluation_periods, 0, -1):
                start, end = now - i * period, now - (i - 1) * period
                periods.append([d.value for d in data
                                if d.namespace == definition.namespace
                                and d.name == definition.metric
                                and dict(d.dimensions) == dims and start <= d.timestamp < end])
            previous = states.get(name, {}).get("state", "INSUFFICIENT_DATA")
            state, values = evaluate(definition, periods, previous)
            clean = [v for v in values if v == v]
            if state != previous:
                states[name] = {"state": state, "since": now.isoformat(), "values": clean}
                breaching = sum(1 for v in clean
                                if COMPARISONS[definition.comparison](v, definition.threshold))
                events.append(alarm_state_change_event(
                    name, state, previous,
                    reason=(f"Threshold Crossed: {breaching} out of the last "
                            f"{definition.evaluation_periods} datapoints "
                            f"{'were' if state == 'ALARM' else 'were not'} "
                            f"{_verb(definition.comparison)} the threshold "
                            f"({definition.threshold})"),
                    namespace=definition.namespace, metric=definition.metric, dimensions=dims,
                    statistic=definition.statistic, period=definition.period_seconds,
                    threshold=definition.threshold, recent_datapoints=clean, at=now,
                    description=definition.description))
            else:
                states.setdefault(name, {"state": state, "since": now.isoformat(),
                                         "values": clean})["values"] = clean
        self._save(states)
        return events


def _verb(comparison: str) -> str:
    return {"GreaterThanThreshold": "greater than", "LessThanThreshold": "less than",
            "GreaterThanOrEqualToThreshold": "greater than or equal to",
            "LessThanOrEqualToThreshold": "less than or equal to"}[comparison]
