"""The kit's time formats, written once: parsing the ISO-8601 the AWS services write, and the
fixed-width UTC forms the kit writes (string order is time order).

Pure (no clock): the current time comes from `mlops_kit.clock`.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone


def parse_iso(text: str) -> datetime:
    """An ISO-8601 time as Lambda, EventBridge, CloudWatch and the kit write it ('Z', '+00:00'
    or CloudWatch's '+0000'), as an aware datetime (UTC when it names no zone).

    ValueError (naming the text) when it is not a time.
    """
    if not isinstance(text, str) or not text:
        raise ValueError(f"not an ISO-8601 time: {text!r}")
    normal = text.replace("Z", "+00:00")
    if len(normal) > 5 and normal[-5] in "+-" and normal[-3] != ":":  # +0000 → +00:00
        normal = normal[:-2] + ":" + normal[-2:]
    try:
        parsed = datetime.fromisoformat(normal)
    except ValueError:
        raise ValueError(f"not an ISO-8601 time: {text!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def iso_millis(moment: datetime) -> str:
    """`2026-12-03T17:09:35.123Z`: the registry's and the ledger's record time."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def iso_micros(moment: datetime) -> str:
    """`2026-12-03T17:09:35.123456Z`: ledger sort keys, where two records in one millisecond
    must still order."""
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")


def iso_seconds(moment: datetime) -> str:
    """`2026-12-03T17:09:35Z`: EventBridge's event time."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch_iso_seconds(epoch: float) -> str:
    """`iso_seconds` of a Unix time (capture records, file names)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def alarm_timestamp(moment: datetime) -> str:
    """`2026-12-03T17:09:35.123+0000`: how CloudWatch writes an alarm's state time."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"
