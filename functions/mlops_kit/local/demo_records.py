"""What `mlops demo` records as it goes: the timeline of its steps, every request it sent, and
the result it reports, with the promotions it asked for and the fleet table at the end
(`demo.py` drives the run, `demo_picture.py` draws these records)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


@dataclass
class Timeline:
    """What happened when, in seconds since the demo started. Each event is stamped where it
    happens: a step when it ends, an alarm at its transition, a rollback when its weights were
    written (not when the demo got to report them)."""
    started: float = field(default_factory=time.perf_counter)
    wall_started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    events: list[tuple[float, str, str]] = field(default_factory=list)

    def mark(self, what: str, detail: str = "", at: float | None = None) -> float:
        at = time.perf_counter() - self.started if at is None else at
        self.events.append((at, what, detail))
        self.events.sort(key=lambda event: event[0])
        return at

    def relative(self, moment: datetime) -> float:
        """A wall-clock moment (an alarm's transition, a record's time) on this timeline."""
        return (moment - self.wall_started).total_seconds()

    def at(self, what: str) -> float | None:
        return next((t for t, w, _ in self.events if w == what), None)


@dataclass
class TrafficLog:
    """Every request the demo sent: when, which variant answered, whether it succeeded."""
    rows: list[tuple[float, str, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, at: float, variant: str, ok: bool) -> None:
        with self.lock:
            self.rows.append((at, variant, ok))


@dataclass
class DemoResult:
    timeline: Timeline
    traffic: TrafficLog
    monitor_points: list[dict[str, Any]]
    detection_seconds: float | None
    alarm_to_flip_seconds: float | None
    alarm_to_traffic_seconds: float | None
    verified_on: dict[str, int]
    failed_requests: int
    picture: Path
    home: Path
    promotions: list[dict[str, Any]] = field(default_factory=list)
    """Every promotion the demo asked for, refused ones included: model, version,
    environment, promoted, the decision's reason, the deployment's action."""
    fleet: list[dict[str, Any]] = field(default_factory=list)
    """The fleet table at the end (`mlops status --all`): a row per model and environment."""

    @property
    def succeeded(self) -> bool:
        return (self.alarm_to_traffic_seconds is not None and self.failed_requests == 0
                and set(self.verified_on) == {"v1"})

    def to_dict(self) -> dict[str, Any]:
        return {"succeeded": self.succeeded, "home": str(self.home),
                "picture": str(self.picture),
                "detection_seconds": self.detection_seconds,
                "alarm_to_flip_seconds": self.alarm_to_flip_seconds,
                "alarm_to_traffic_seconds": self.alarm_to_traffic_seconds,
                "verified_on": self.verified_on, "failed_requests": self.failed_requests,
                "requests": len(self.traffic.rows),
                "promotions": self.promotions, "fleet": self.fleet,
                "timeline": [{"at_seconds": round(t, 3), "what": w, "detail": d}
                             for t, w, d in self.timeline.events]}
