"""The local stand-in for CloudWatch alarms: the same definitions, CloudWatch's evaluation
(`mlops_kit.core.alarms.alarm_state`: aligned periods, M of N, missing-data treatment), and
the same "CloudWatch Alarm State Change" events on a transition."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

from mlops_kit.core.alarms import AlarmDefinition, Datapoint, alarm_state
from mlops_kit.monitoring.alarm_events import alarm_state_change_event
from mlops_kit.monitoring.metrics import LocalMetricStore, write_atomically


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
        """`time_scale` < 1 compresses every period (the demo runs a 300 s period in 1.5 s);
        statistic, threshold and M-of-N stay as defined. `definitions` are concrete alarms,
        fitted to the (virtual) schedule of whatever publishes the metrics."""
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
        """Atomically (StateWriteError, the previous states intact, if it cannot be written)."""
        write_atomically(self.state_path, json.dumps(states, indent=2, sort_keys=True))

    def evaluate(self, now: datetime) -> list[dict[str, Any]]:
        """Evaluate every alarm at `now`; returns the state-change events to publish.

        A local datapoint is visible as soon as it is in the store (published = its
        timestamp); the periods are the definition's, times `time_scale`."""
        states = self.states()
        data = self.store.read()
        champion = self.champion_variant()
        events = []
        for definition in self.definitions:
            name = definition.alarm_name(self.endpoint_name)
            dims = definition.resolved_dimensions(self.endpoint_name, champion)
            points = [Datapoint(d.timestamp, d.value) for d in data
                      if d.namespace == definition.namespace and d.name == definition.metric
                      and dict(d.dimensions) == dims]
            scaled = replace(definition,
                             period_seconds=definition.period_seconds * self.time_scale)
            previous = states.get(name, {}).get("state", "INSUFFICIENT_DATA")
            result = alarm_state(scaled, points, now, previous)
            state, clean = result.state, result.datapoints
            if state != previous:
                states[name] = {"state": state, "since": now.isoformat(), "values": clean}
                events.append(alarm_state_change_event(
                    name, state, previous, reason=result.reason,
                    namespace=definition.namespace, metric=definition.metric, dimensions=dims,
                    statistic=definition.statistic, period=definition.period_seconds,
                    threshold=definition.threshold, recent_datapoints=clean, at=now,
                    description=definition.description))
            else:
                states.setdefault(name, {"state": state, "since": now.isoformat(),
                                         "values": clean})["values"] = clean
        self._save(states)
        return events
