"""The stage's on-failure queue, read without touching it: the queue URL, the invocation
records Lambda writes there, what each failed event was about, and the per-message report of a
list, replay or discard run (`mlops_kit.aws.operations.FailedEventQueue` does the calls).

A record (Lambda's on-failure destination, stack output `FailedEventsQueueUrl`):

    {"version": "1.0", "timestamp": "...",
     "requestContext": {"requestId", "functionArn", "condition", "approximateInvokeCount"},
     "requestPayload": <the original event>,
     "responseContext": {"statusCode", "executedVersion", "functionError"},
     "responsePayload": <the function's error>}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Callable, Mapping

from mlops_kit.core.timestamps import parse_iso

from .operation_errors import OperationInputError


def _parse_time(value: Any) -> datetime | None:
    """ISO-8601 strings as Lambda, EventBridge and CloudWatch write them; None otherwise."""
    try:
        return parse_iso(value)
    except ValueError:
        return None


_QUEUE_URL = re.compile(
    r"^https://(?:sqs\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d)\.amazonaws\.com(?:\.cn)?"
    r"|(?P<legacy_region>[a-z]{2}(?:-[a-z]+)+-\d)\.queue\.amazonaws\.com)"
    r"/(?P<account>\d{12})/(?P<name>[A-Za-z0-9_-]{1,80})/?$")
_FUNCTION_ARN = re.compile(
    r"^arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z]{2}(?:-[a-z]+)+-\d):(?P<account>\d{12}):"
    r"function:(?P<name>[a-zA-Z0-9_-]{1,64})(?::(?:\$LATEST|[a-zA-Z0-9_-]{1,128}))?$")
"""AWS's pattern for a function ARN, optionally with a version or alias."""

RECEIVE_BATCH = 10
"""SQS's maximum per ReceiveMessage / DeleteMessageBatch / ChangeMessageVisibilityBatch."""


@dataclass(frozen=True)
class QueueRef:
    url: str
    region: str
    account: str
    name: str


def parse_queue_url(url: str) -> QueueRef:
    """`https://sqs.<region>.amazonaws.com/<account>/<name>` (or the legacy
    `https://<region>.queue.amazonaws.com/...`); OperationInputError naming what is wrong."""
    match = _QUEUE_URL.match((url or "").strip())
    if not match:
        raise OperationInputError(
            f"--queue-url {url!r} is not an SQS queue URL "
            f"(https://sqs.<region>.amazonaws.com/<account>/<queue>; the Control stack's "
            f"FailedEventsQueueUrl output)")
    region = match.group("region") or match.group("legacy_region")
    return QueueRef(match.group(0).rstrip("/"), region, match.group("account"),
                    match.group("name"))


class MalformedRecordError(ValueError):
    """The message is not a Lambda destination record this command can replay."""


@dataclass(frozen=True)
class DestinationRecord:
    """One Lambda on-failure invocation record (the fields the replay uses or shows)."""
    function_arn: str
    request_payload: Any
    condition: str
    approximate_invoke_count: int | None
    request_id: str
    failed_at: datetime | None
    function_error: str
    error_message: str

    @property
    def function_name(self) -> str:
        return _FUNCTION_ARN.match(self.function_arn).group("name")  # type: ignore[union-attr]

    @property
    def function_region(self) -> str:
        return _FUNCTION_ARN.match(self.function_arn).group("region")  # type: ignore[union-attr]

    @property
    def function_account(self) -> str:
        return _FUNCTION_ARN.match(self.function_arn).group("account")  # type: ignore[union-attr]


def parse_destination_record(body: str) -> DestinationRecord:
    try:
        record = json.loads(body)
    except (TypeError, ValueError):
        raise MalformedRecordError("the message body is not JSON") from None
    if not isinstance(record, dict):
        raise MalformedRecordError("the message body is not a JSON object")
    context = record.get("requestContext")
    if not isinstance(context, dict):
        if "detail-type" in record and "source" in record:
            # The EventBridge rules' own dead-letter queue holds bare events: a different queue.
            raise MalformedRecordError(
                f"a bare EventBridge event ({record.get('detail-type')!r}), not a Lambda "
                f"invocation record: is this the rules' dead-letter queue rather than the "
                f"on-failure queue (FailedEventsQueueUrl)?")
        raise MalformedRecordError("no requestContext: not a Lambda invocation record")
    arn = context.get("functionArn")
    if not isinstance(arn, str) or not _FUNCTION_ARN.match(arn):
        raise MalformedRecordError(f"requestContext.functionArn {arn!r} is not a Lambda "
                                   f"function ARN")
    if "requestPayload" not in record:
        raise MalformedRecordError("no requestPayload: the original event is not in the record")
    count = context.get("approximateInvokeCount")
    response = record.get("responseContext") if isinstance(record.get("responseContext"),
                                                           dict) else {}
    payload = record.get("responsePayload")
    message = payload.get("errorMessage", "") if isinstance(payload, dict) else (
        payload if isinstance(payload, str) else "")
    return DestinationRecord(
        function_arn=arn, request_payload=record["requestPayload"],
        condition=str(context.get("condition") or ""),
        approximate_invoke_count=count if isinstance(count, int)
        and not isinstance(count, bool) else None,
        request_id=str(context.get("requestId") or ""),
        failed_at=_parse_time(record.get("timestamp")),
        function_error=str(response.get("functionError") or ""),
        error_message=str(message)[:500])


@dataclass(frozen=True)
class EventSummary:
    """What the failed event was about, for on-call to judge before replaying it."""
    detail_type: str
    subject: str
    """`alarm <name>: OK → ALARM` or `model package <group> v<N>: Approved`."""
    event_time: datetime | None


def _alarm_transition(alarm: Mapping[str, Any]) -> tuple[str, datetime | None]:
    """(`alarm <name>: OK → ALARM`, the state's time) of an alarm's `detail` or `alarmData`."""
    def value(key: str) -> Mapping[str, Any]:
        found = alarm.get(key)
        return found if isinstance(found, Mapping) else {}
    state, previous = value("state"), value("previousState")
    return (f"alarm {alarm.get('alarmName', '?')}: {previous.get('value', '?')} → "
            f"{state.get('value', '?')}", _parse_time(state.get("timestamp")))


def summarize_event(payload: Any) -> EventSummary:
    if not isinstance(payload, Mapping):
        return EventSummary("", "not a JSON object", None)
    detail = payload.get("detail") if isinstance(payload.get("detail"), Mapping) else {}
    detail_type = str(payload.get("detail-type") or "")
    event_time = _parse_time(payload.get("time"))
    if "alarmName" in detail:
        subject, state_time = _alarm_transition(detail)
        return EventSummary(detail_type, subject, event_time or state_time)
    if "ModelPackageGroupName" in detail:
        return EventSummary(detail_type,
                            f"model package {detail['ModelPackageGroupName']} "
                            f"v{detail.get('ModelPackageVersion', '?')}: "
                            f"{detail.get('ModelApprovalStatus', '?')}", event_time)
    if isinstance(payload.get("alarmData"), Mapping):  # an alarm's direct Lambda action
        subject, state_time = _alarm_transition(payload["alarmData"])
        return EventSummary("CloudWatch alarm action", subject, event_time or state_time)
    return EventSummary(detail_type, "an event the kit's controllers do not take", event_time)


FAILED_STATUSES = frozenset({"malformed", "refused", "invoke_failed", "not_deleted",
                             "discard_failed"})
"""Statuses that leave work for on-call (exit 1)."""


@dataclass(frozen=True)
class FailedEventReport:
    message_id: str
    status: str
    """would_replay | replayed | not_deleted | invoke_failed | malformed | refused |
    not_selected | discarded | discard_failed"""
    reason: str = ""
    function_arn: str = ""
    function: str = ""
    detail_type: str = ""
    subject: str = ""
    condition: str = ""
    invoke_count: int | None = None
    event_time: datetime | None = None
    failed_at: datetime | None = None
    age_seconds: float | None = None
    """Since the event happened (else since Lambda gave up on it)."""
    function_error: str = ""
    error_message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "status": self.status, "reason": self.reason,
                "function": self.function, "function_arn": self.function_arn,
                "detail_type": self.detail_type, "subject": self.subject,
                "condition": self.condition, "invoke_count": self.invoke_count,
                "event_time": self.event_time.isoformat() if self.event_time else None,
                "failed_at": self.failed_at.isoformat() if self.failed_at else None,
                "age_seconds": None if self.age_seconds is None else round(self.age_seconds, 1),
                "function_error": self.function_error, "error_message": self.error_message}


@dataclass
class QueueReport:
    queue_url: str
    mode: str
    """list | replay | discard"""
    events: list[FailedEventReport] = field(default_factory=list)
    missing_message_ids: list[str] = field(default_factory=list)
    """--message-id values not found in the queue (discard/replay with a selection)."""
    problems: list[str] = field(default_factory=list)
    """What went wrong outside one message (a receive that failed mid-way, a release)."""

    @property
    def failed(self) -> list[FailedEventReport]:
        return [e for e in self.events if e.status in FAILED_STATUSES]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.missing_message_ids and not self.problems

    def count(self, status: str) -> int:
        return sum(1 for e in self.events if e.status == status)

    def to_dict(self) -> dict[str, Any]:
        statuses = sorted({e.status for e in self.events})
        return {"queue_url": self.queue_url, "mode": self.mode, "ok": self.ok,
                "counts": {s: self.count(s) for s in statuses},
                "events": [e.to_dict() for e in self.events],
                "missing_message_ids": list(self.missing_message_ids),
                "problems": list(self.problems)}



def with_status(event: FailedEventReport, status: str, reason: str) -> FailedEventReport:
    return replace(event, status=status, reason=reason)


@dataclass(frozen=True)
class Verdict:
    """What a run does with one message: its report, whether to delete it, and, for a
    replay, the record to invoke again (the report then says only what the event was)."""
    event: FailedEventReport
    delete: bool
    replay: DestinationRecord | None = None


def judge_message(mode: str, message: Mapping[str, Any], selected: set[str] | None,
                  queue: QueueRef, clock: Callable[[], datetime]) -> Verdict:
    """The verdict on one received message in a `mode` run (list | replay | discard)."""
    message_id = message["MessageId"]
    try:
        record = parse_destination_record(message.get("Body", ""))
    except MalformedRecordError as exc:
        if mode == "discard" and selected is not None and message_id in selected:
            # On-call named it: a message that cannot be replayed can still be removed.
            return Verdict(FailedEventReport(message_id, "discarded", f"malformed: {exc}"), True)
        status = "not_selected" if selected is not None and message_id not in selected \
            else "malformed"
        return Verdict(FailedEventReport(message_id, status, f"{exc}; left in the queue"), False)
    base = describe_record(message_id, record, clock)
    if selected is not None and message_id not in selected:
        return Verdict(with_status(base, "not_selected",
                                   "not among --message-id; left in the queue"), False)
    if mode == "discard":
        return Verdict(with_status(base, "discarded", "deleted without replay (--message-id)"),
                       True)
    if (record.function_account, record.function_region) != (queue.account, queue.region):
        # The on-failure queue and its controllers live in one account and region; a record
        # naming another function is not one of theirs (anyone allowed to send to the
        # queue could otherwise choose what this operator invokes).
        return Verdict(with_status(base, "refused",
                                   f"names a function in {record.function_account}/"
                                   f"{record.function_region}, not the queue's "
                                   f"{queue.account}/{queue.region}; left in the queue"),
                       False)
    if mode == "list":
        return Verdict(with_status(base, "would_replay", "would be invoked again (Event)"),
                       False)
    return Verdict(base, False, replay=record)


def describe_record(message_id: str, record: DestinationRecord,
                    clock: Callable[[], datetime]) -> FailedEventReport:
    summary = summarize_event(record.request_payload)
    since = summary.event_time or record.failed_at
    age = (clock() - since).total_seconds() if since else None
    return FailedEventReport(
        message_id, "", function_arn=record.function_arn, function=record.function_name,
        detail_type=summary.detail_type, subject=summary.subject,
        condition=record.condition, invoke_count=record.approximate_invoke_count,
        event_time=summary.event_time, failed_at=record.failed_at, age_seconds=age,
        function_error=record.function_error, error_message=record.error_message)
