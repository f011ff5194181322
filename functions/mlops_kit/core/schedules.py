"""Which events a scheduled function acts on: its own EventBridge schedule's, recent enough.

The drift monitor and the probe publish metrics stamped with the run's time; a foreign event
(an alarm, an S3 notification, a hand-made payload) or a stale one (an old `time`) would
publish datapoints for a moment nobody scheduled, and could flip or clear alarms. The
schedule's targets give up on an event after `max_event_age` (infra sets it from the same
function), so a run that is refused here could not have been delivered anyway.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from .timestamps import parse_iso

SCHEDULED_SOURCE = "aws.events"
SCHEDULED_DETAIL_TYPE = "Scheduled Event"
FLEET_SCHEDULE_SOURCE = "mlops-kit.scheduler"
"""A fleet's schedules are EventBridge Scheduler schedules, one per model and function (rules
would add a statement per model to the function's resource policy, which has a size limit);
their payload, `fleet_schedule_payload`, has a scheduled event's shape and names the model."""
SCHEDULER_TIME = "<aws.scheduler.scheduled-time>"
"""EventBridge Scheduler's context attribute: replaced by the run's scheduled time."""
CLOCK_SKEW = timedelta(minutes=5)


class NotThisSchedule(ValueError):
    """The event is not a recent run of this function's schedule (the message says why)."""


def max_event_age(schedule_minutes: int) -> timedelta:
    """Two intervals: a run delayed (throttled, retried) past that is superseded by the next."""
    return timedelta(minutes=2 * schedule_minutes)


def fleet_schedule_payload(model: str) -> dict[str, Any]:
    """The input of a fleet schedule of `model` (Scheduler fills in the time)."""
    return {"source": FLEET_SCHEDULE_SOURCE, "detail-type": SCHEDULED_DETAIL_TYPE,
            "time": SCHEDULER_TIME, "detail": {"model": model}}


def scheduled_run_time(event: Any, *, now: datetime, schedule_minutes: int) -> datetime:
    """The time of the scheduled run `event` asks for (UTC), or NotThisSchedule."""
    if not isinstance(event, dict):
        raise NotThisSchedule("event is not a JSON object")
    source, detail_type = event.get("source"), event.get("detail-type")
    if source not in (SCHEDULED_SOURCE, FLEET_SCHEDULE_SOURCE) \
            or detail_type != SCHEDULED_DETAIL_TYPE:
        raise NotThisSchedule(f"not a scheduled event (source {source!r}, "
                              f"detail-type {detail_type!r})")
    at = event.get("time")
    try:
        parsed = parse_iso(at)
    except ValueError:
        raise NotThisSchedule(f"event time is not an ISO-8601 time: {at!r}") from None
    age = now - parsed
    if age > max_event_age(schedule_minutes):
        raise NotThisSchedule(f"event time {at} is {age} old: older than "
                              f"{max_event_age(schedule_minutes)}, superseded by later runs")
    if age < -CLOCK_SKEW:
        raise NotThisSchedule(f"event time {at} is in the future")
    return parsed.astimezone(timezone.utc)
