"""Operator actions on a deployed stage that no controller takes by itself.

Replay (`mlops events ...`): the deployment and rollback controllers are invoked asynchronously
(EventBridge → Lambda). When an invocation fails all of Lambda's attempts, Lambda sends an
invocation record to the stage's on-failure queue (stack output `FailedEventsQueueUrl`):

    {"version": "1.0", "timestamp": "...",
     "requestContext": {"requestId", "functionArn", "condition", "approximateInvokeCount"},
     "requestPayload": <the original event>,
     "responseContext": {"statusCode", "executedVersion", "functionError"},
     "responsePayload": <the function's error>}

`FailedEventQueue.replay` reads that queue and invokes `requestContext.functionArn` again,
asynchronously (InvocationType "Event"), with `requestPayload`; a message is deleted only once
Lambda accepted the invocation (202). Both controllers are idempotent on the event (the state
change, the alarm transition), so a replay that is delivered twice is applied once.

Teardown (`mlops teardown`): CloudFormation never owned the endpoint, its endpoint configs or
its models (the deployment controller creates them), so `cdk destroy` leaves them running and
billing. `StageTeardown` finds what the kit created for one endpoint and model group, by the
kit's own naming rules (`mlops_kit.aws.models.resource_name`), and deletes endpoint → configs →
models; anything outside those rules, or still used by a config that stays, is kept.

IAM: `REPLAY_IAM_ACTIONS`, `DISCARD_IAM_ACTIONS`, `TEARDOWN_IAM_ACTIONS` (checked against the
calls in this module by tests/aws/test_operations.py).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator, Mapping

from botocore.exceptions import BotoCoreError, ClientError

from mlops_kit.aws.clients import Backoff, default_client, error_code, error_message
from mlops_kit.aws.models import resource_name
from mlops_kit.core.rotation import version_of_variant

REPLAY_IAM_ACTIONS = ("sqs:GetQueueAttributes", "sqs:ReceiveMessage", "sqs:DeleteMessage",
                      "sqs:ChangeMessageVisibility", "lambda:InvokeFunction")
"""`mlops events replay` (and `list`, which needs all but DeleteMessage and InvokeFunction)."""
LIST_IAM_ACTIONS = ("sqs:GetQueueAttributes", "sqs:ReceiveMessage", "sqs:ChangeMessageVisibility")
DISCARD_IAM_ACTIONS = ("sqs:GetQueueAttributes", "sqs:ReceiveMessage", "sqs:DeleteMessage",
                       "sqs:ChangeMessageVisibility")
TEARDOWN_IAM_ACTIONS = ("sagemaker:DescribeEndpoint", "sagemaker:ListEndpointConfigs",
                        "sagemaker:DescribeEndpointConfig", "sagemaker:ListModels",
                        "sagemaker:DeleteEndpoint", "sagemaker:DeleteEndpointConfig",
                        "sagemaker:DeleteModel")
"""The List actions support no resource scoping (Resource "*"); the others can be scoped to
`endpoint/<endpoint>`, `endpoint-config/<endpoint>-*` and `model/<group>-v*`."""


class OperationInputError(ValueError):
    """Bad input for an operation (a malformed URL or name, a queue that cannot be reached,
    an endpoint the kit does not manage): nothing was changed. The message names the problem."""


def _default_client(service: str, region: str | None) -> Any:
    return default_client(service, region=region)


client_factory: Callable[[str, str | None], Any] = _default_client
"""How a client is made when none is injected (`service, region`); tests replace it."""


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _parse_time(value: Any) -> datetime | None:
    """ISO-8601 strings as Lambda, EventBridge and CloudWatch write them; None otherwise."""
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":  # +0000 → +00:00 (CloudWatch)
        text = text[:-2] + ":" + text[-2:]
    try:
        return _utc(datetime.fromisoformat(text))
    except ValueError:
        return None


# == the on-failure queue ========================================================================

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


class FailedEventQueue:
    """The stage's on-failure queue: list, replay or discard its invocation records.

    Messages are received with a visibility timeout that covers the run, so none is handled
    twice in one run; every message the run does not delete is made visible again at the end
    (ChangeMessageVisibility 0), so it stays in the queue for the next run and for the
    queue's alarm. Receiving counts as a receive for SQS (ApproximateReceiveCount), which only
    matters if someone gives this queue a redrive policy.
    """

    def __init__(self, queue_url: str, *, sqs_client: Any = None, lambda_client: Any = None,
                 wait_seconds: int = 2, visibility_timeout: int = 300,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 sleep: Callable[[float], None] = time.sleep):
        self.queue = parse_queue_url(queue_url)
        if not 0 <= wait_seconds <= 20:
            raise ValueError("wait_seconds must be 0..20 (SQS long polling)")
        self.wait_seconds = wait_seconds
        self.visibility_timeout = visibility_timeout
        self.clock = clock
        self._sqs_client = sqs_client
        self._lambda_client = lambda_client
        self._backoff = Backoff(max_attempts=4, base_delay=0.5, sleep=sleep)

    # -- clients ---------------------------------------------------------------------------
    def _sqs(self, operation: str, **kwargs: Any) -> Any:
        if self._sqs_client is None:
            # The queue's own region: a client of another region cannot reach it.
            self._sqs_client = client_factory("sqs", self.queue.region)
        return self._backoff.call(getattr(self._sqs_client, operation), **kwargs)

    def _lambda(self, operation: str, **kwargs: Any) -> Any:
        if self._lambda_client is None:
            self._lambda_client = client_factory("lambda", self.queue.region)
        return self._backoff.call(getattr(self._lambda_client, operation), **kwargs)

    def check_reachable(self) -> None:
        """OperationInputError when the queue does not exist or cannot be read with these
        credentials (nothing has been received yet)."""
        try:
            self._sqs("get_queue_attributes", QueueUrl=self.queue.url,
                      AttributeNames=["QueueArn"])
        except ClientError as exc:
            raise OperationInputError(f"queue {self.queue.url} cannot be reached: "
                                      f"{error_code(exc)}: {error_message(exc)}") from None
        except BotoCoreError as exc:  # no credentials, no network, no region
            raise OperationInputError(f"queue {self.queue.url} cannot be reached: {exc}") from None

    # -- the three operations --------------------------------------------------------------
    def list(self, *, max_messages: int | None = None) -> QueueReport:
        """What a replay would do, message by message; changes nothing."""
        return self._run("list", max_messages, None)

    def replay(self, *, max_messages: int | None = None,
               message_ids: Iterable[str] | None = None) -> QueueReport:
        return self._run("replay", max_messages, set(message_ids) if message_ids else None)

    def discard(self, message_ids: Iterable[str], *,
                max_messages: int | None = None) -> QueueReport:
        """Delete exactly these messages, unreplayed (an event on-call decided not to apply,
        e.g. an alarm of an incident that is over)."""
        selected = set(message_ids)
        if not selected:
            raise OperationInputError("discard needs at least one --message-id")
        return self._run("discard", max_messages, selected)

    # -- one run ---------------------------------------------------------------------------
    def _run(self, mode: str, max_messages: int | None, selected: set[str] | None
             ) -> QueueReport:
        if max_messages is not None and max_messages < 1:
            raise OperationInputError("--max must be at least 1")
        self.check_reachable()
        report = QueueReport(self.queue.url, mode)
        to_release: list[tuple[str, str]] = []
        try:
            for message in self._receive_all(max_messages, selected, report):
                event, delete = self._handle(mode, message, selected)
                if delete:
                    event = self._delete(message, event)
                if event.status not in ("replayed", "discarded"):
                    to_release.append((message["MessageId"], message["ReceiptHandle"]))
                report.events.append(event)
        finally:
            # Also on an interruption: what this run did not delete goes back to the queue now,
            # not after the visibility timeout.
            self._release(to_release, report)
        if selected is not None:
            found = {e.message_id for e in report.events}
            report.missing_message_ids = sorted(selected - found)
        return report

    def _receive_all(self, max_messages: int | None, selected: set[str] | None,
                     report: QueueReport) -> Iterator[dict[str, Any]]:
        seen: set[str] = set()
        while max_messages is None or len(seen) < max_messages:
            if selected is not None and selected <= seen:
                return  # every selected message found: no need to read the rest
            want = RECEIVE_BATCH if max_messages is None else min(RECEIVE_BATCH,
                                                                  max_messages - len(seen))
            try:
                response = self._sqs("receive_message", QueueUrl=self.queue.url,
                                     MaxNumberOfMessages=want, WaitTimeSeconds=self.wait_seconds,
                                     VisibilityTimeout=self.visibility_timeout)
            except ClientError as exc:
                if not seen:
                    raise OperationInputError(f"cannot receive from {self.queue.url}: "
                                              f"{error_code(exc)}: {error_message(exc)}") from None
                report.problems.append(f"receive failed after {len(seen)} message(s): "
                                       f"{error_code(exc)}: {error_message(exc)}; the rest "
                                       f"stays in the queue")
                return
            fresh = [m for m in response.get("Messages", []) if m["MessageId"] not in seen]
            if not fresh:
                # Long polling answers empty only when no message is visible: the messages
                # this run holds are invisible, so this is the end of the queue.
                return
            for message in fresh:
                seen.add(message["MessageId"])
                yield message

    def _handle(self, mode: str, message: Mapping[str, Any], selected: set[str] | None
                ) -> tuple[FailedEventReport, bool]:
        """(the report, whether to delete the message)."""
        message_id = message["MessageId"]
        try:
            record = parse_destination_record(message.get("Body", ""))
        except MalformedRecordError as exc:
            if mode == "discard" and selected is not None and message_id in selected:
                # On-call named it: a message that cannot be replayed can still be removed.
                return FailedEventReport(message_id, "discarded", f"malformed: {exc}"), True
            status = "not_selected" if selected is not None and message_id not in selected \
                else "malformed"
            return FailedEventReport(message_id, status, f"{exc}; left in the queue"), False
        base = self._describe(message_id, record)
        if selected is not None and message_id not in selected:
            return _with(base, "not_selected", "not among --message-id; left in the queue"), False
        if mode == "discard":
            return _with(base, "discarded", "deleted without replay (--message-id)"), True
        if (record.function_account, record.function_region) != (self.queue.account,
                                                                  self.queue.region):
            # The on-failure queue and its controllers live in one account and region; a record
            # naming another function is not one of theirs (anyone allowed to send to the
            # queue could otherwise choose what this operator invokes).
            return _with(base, "refused",
                         f"names a function in {record.function_account}/"
                         f"{record.function_region}, not the queue's {self.queue.account}/"
                         f"{self.queue.region}; left in the queue"), False
        if mode == "list":
            return _with(base, "would_replay", "would be invoked again (Event)"), False
        return self._invoke(base, record)

    def _describe(self, message_id: str, record: DestinationRecord) -> FailedEventReport:
        summary = summarize_event(record.request_payload)
        since = summary.event_time or record.failed_at
        age = (self.clock() - since).total_seconds() if since else None
        return FailedEventReport(
            message_id, "", function_arn=record.function_arn, function=record.function_name,
            detail_type=summary.detail_type, subject=summary.subject,
            condition=record.condition, invoke_count=record.approximate_invoke_count,
            event_time=summary.event_time, failed_at=record.failed_at, age_seconds=age,
            function_error=record.function_error, error_message=record.error_message)

    def _invoke(self, base: FailedEventReport, record: DestinationRecord
                ) -> tuple[FailedEventReport, bool]:
        payload = json.dumps(record.request_payload, separators=(",", ":"),
                             ensure_ascii=False).encode("utf-8")
        try:
            response = self._lambda("invoke", FunctionName=record.function_arn,
                                    InvocationType="Event", Payload=payload)
        except ClientError as exc:
            return _with(base, "invoke_failed", f"{error_code(exc)}: {error_message(exc)}; "
                                                f"left in the queue"), False
        except BotoCoreError as exc:
            return _with(base, "invoke_failed", f"{exc}; left in the queue"), False
        status = response.get("StatusCode")
        if status != 202:
            return _with(base, "invoke_failed", f"Lambda answered {status}, not 202 (queued); "
                                                f"left in the queue"), False
        return _with(base, "replayed", "invoked again (Event, 202)"), True

    def _delete(self, message: Mapping[str, Any], event: FailedEventReport) -> FailedEventReport:
        try:
            self._sqs("delete_message", QueueUrl=self.queue.url,
                      ReceiptHandle=message["ReceiptHandle"])
        except (ClientError, BotoCoreError) as exc:
            detail = (f"{error_code(exc)}: {error_message(exc)}" if isinstance(exc, ClientError)
                      else str(exc))
            if event.status == "replayed":
                # The event is on its way; its message will be seen again. Replaying it once
                # more is harmless: the controllers are idempotent on the event.
                return _with(event, "not_deleted", f"invoked (202) but the message could not "
                                                   f"be deleted ({detail}): a later replay "
                                                   f"delivers it again, which idempotency makes "
                                                   f"harmless")
            return _with(event, "discard_failed", f"could not delete: {detail}")
        return event

    def _release(self, handles: list[tuple[str, str]], report: QueueReport) -> None:
        for start in range(0, len(handles), RECEIVE_BATCH):
            chunk = handles[start:start + RECEIVE_BATCH]
            entries = [{"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                       for i, (_, handle) in enumerate(chunk)]
            try:
                response = self._sqs("change_message_visibility_batch",
                                     QueueUrl=self.queue.url, Entries=entries)
            except (ClientError, BotoCoreError) as exc:
                report.problems.append(f"could not make {len(chunk)} message(s) visible again "
                                       f"({exc}); they reappear after "
                                       f"{self.visibility_timeout} s")
                continue
            for failure in response.get("Failed", []):
                message_id = chunk[int(failure["Id"])][0]
                report.problems.append(f"message {message_id} stays invisible for up to "
                                       f"{self.visibility_timeout} s: "
                                       f"{failure.get('Code')}: {failure.get('Message', '')}")


def _with(event: FailedEventReport, status: str, reason: str) -> FailedEventReport:
    return replace(event, status=status, reason=reason)


# == teardown ====================================================================================

_NAME = re.compile(r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$")
MODEL_DIGEST_CHARS = 10
"""`models.model_name`: `<group>-v<N>-<10 hex digits>`."""
CONFIG_DIGEST_CHARS = 12
"""`sagemaker_endpoint.endpoint_config_name`: `<endpoint>-<12 hex digits>`."""
_MISSING = re.compile(r"could not find (endpoint|endpoint configuration|model)\b",
                      re.IGNORECASE)


def config_prefix(endpoint_name: str) -> str:
    """What every endpoint config the kit names for this endpoint starts with (`<head>-`)."""
    return resource_name(endpoint_name, "", digest_chars=CONFIG_DIGEST_CHARS)[:-CONFIG_DIGEST_CHARS]


def is_kit_config_name(name: str, endpoint_name: str) -> bool:
    return re.fullmatch(re.escape(config_prefix(endpoint_name)) + r"[0-9a-f]{12}", name) is not None


def model_head(model_group: str, version: int) -> str:
    """The readable part of the kit's model name for a version. The group comes lower-cased,
    as SageMaker writes it in model package ARNs, which `model_name` reads it from."""
    return resource_name(f"{model_group.lower()}-v{version}", "",
                         digest_chars=MODEL_DIGEST_CHARS)[:-MODEL_DIGEST_CHARS - 1]


def is_kit_model_name(name: str, model_group: str, version: int | None = None) -> bool:
    """Named by the kit for this group (and, given, this version)."""
    match = re.fullmatch(r"(.+)-[0-9a-f]{10}", name)
    if not match:
        return False
    head = match.group(1)
    if version is not None:
        return head == model_head(model_group, version)
    numbered = re.fullmatch(r".*-v(\d+)", head)
    if numbered and head == model_head(model_group, int(numbered.group(1))):
        return True
    # A group name so long that the version was cut off: every version has the same head.
    # (Two groups alike in their first 52 characters cannot be told apart by name: a limit of
    # the naming rule itself, which the controllers' IAM grants on `model/<group>-v*` share.)
    return head == model_head(model_group, 1) == model_head(model_group, 10 ** 9)


def _is_missing(exc: ClientError) -> bool:
    return error_code(exc) in ("ValidationException", "ResourceNotFound") and bool(
        _MISSING.search(error_message(exc)))


@dataclass
class TeardownItem:
    kind: str
    """endpoint | endpoint-config | model"""
    name: str
    delete: bool
    reason: str
    status: str = "planned"
    """planned | kept | deleted | already_gone | failed | not_attempted"""
    error: str = ""
    state: str = ""
    """The endpoint's status when planned (Deleting: the deletion only needs waiting for)."""
    referenced_by: tuple[str, ...] = ()
    """A model: the endpoint configs of this teardown that reference it."""

    def __post_init__(self) -> None:
        if not self.delete:
            self.status = "kept"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "delete": self.delete,
                "reason": self.reason, "status": self.status, "error": self.error,
                **({"state": self.state} if self.state else {}),
                **({"referenced_by": list(self.referenced_by)} if self.referenced_by else {})}


@dataclass
class TeardownReport:
    endpoint_name: str
    model_group: str
    applied: bool
    items: list[TeardownItem] = field(default_factory=list)

    def of(self, kind: str, *, delete: bool | None = None) -> list[TeardownItem]:
        return [i for i in self.items if i.kind == kind and (delete is None or i.delete == delete)]

    @property
    def to_delete(self) -> list[TeardownItem]:
        return [i for i in self.items if i.delete]

    @property
    def ok(self) -> bool:
        """Listing: always; applied: everything planned is deleted or was already gone."""
        return not self.applied or all(i.status in ("deleted", "already_gone")
                                       for i in self.to_delete)

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint_name, "model_group": self.model_group,
                "applied": self.applied, "ok": self.ok,
                "items": [i.to_dict() for i in self.items]}


class StageTeardown:
    """What the deployment controller created for one endpoint and model group.

    Deleted: the endpoint (only if every variant is named after a model version, as the
    kit names them); each endpoint config the endpoint uses (current and pending) or whose
    name is the kit's for this endpoint (`<endpoint>-<12 hex>`), if its variants are the kit's;
    each model those configs reference that carries the kit's name for the group and the
    variant's version (`<group>-v<N>-<10 hex>`), and kit-named models of the group no config
    references (left by an earlier, interrupted teardown or a failed deploy). Kept, with the
    reason: configs and models outside those rules, and models an endpoint config that stays
    still references (e.g. another endpoint serving the same group's versions). To know the
    latter, every endpoint config of the region is described once.
    """

    def __init__(self, endpoint_name: str, model_group: str, *, sagemaker_client: Any = None,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic,
                 wait_timeout_seconds: float = 1800.0, poll_seconds: float = 15.0):
        for option, value in (("--endpoint", endpoint_name), ("--model-group", model_group)):
            if not _NAME.match(value or ""):
                raise OperationInputError(f"{option} {value!r} is not a SageMaker name "
                                          f"(1-63 letters, digits or hyphens)")
        self.endpoint_name = endpoint_name
        self.model_group = model_group
        self._client = sagemaker_client
        self.sleep = sleep
        self.monotonic = monotonic
        self.wait_timeout_seconds = wait_timeout_seconds
        self.poll_seconds = poll_seconds
        self._backoff = Backoff(max_attempts=5, base_delay=0.5, sleep=sleep)

    def _sagemaker(self, operation: str, **kwargs: Any) -> Any:
        if self._client is None:
            self._client = client_factory("sagemaker", None)
        return self._backoff.call(getattr(self._client, operation), **kwargs)

    # -- plan ------------------------------------------------------------------------------
    def plan(self) -> TeardownReport:
        """What `apply` would delete, and what it keeps and why; changes nothing."""
        try:
            return self._plan()
        except BotoCoreError as exc:  # no credentials, no region, no network
            raise OperationInputError(f"cannot reach SageMaker: {exc}") from None

    def _plan(self) -> TeardownReport:
        report = TeardownReport(self.endpoint_name, self.model_group, applied=False)
        endpoint = self._describe_endpoint()
        configs = self._describe_all_configs()
        in_use: list[str] = []
        if endpoint is not None:
            where = f"endpoint {self.endpoint_name}"
            variants = [v["VariantName"] for v in endpoint.get("ProductionVariants") or []]
            in_use = [name for name in (
                endpoint.get("EndpointConfigName"),
                (endpoint.get("PendingDeploymentSummary") or {}).get("EndpointConfigName"))
                if name]
            # A Creating endpoint lists no variants yet: its config says what it will serve.
            for name in in_use:
                variants += [v.get("VariantName", "") for v in
                             (configs.get(name) or {}).get("ProductionVariants") or []]
            for variant in variants:
                self._require_kit_variant(variant, where)
            status = endpoint.get("EndpointStatus", "")
            serving = ", ".join(v["VariantName"] for v in endpoint.get("ProductionVariants") or [])
            report.items.append(TeardownItem(
                "endpoint", self.endpoint_name, True,
                "already being deleted" if status == "Deleting"
                else f"{status}, serving {serving or 'no variant yet'}", state=status))

        deleting: list[str] = []
        referenced: dict[str, list[str]] = {}
        """kit-named model → the configs being deleted that reference it."""
        foreign: dict[str, str] = {}
        """model referenced by a config being deleted but not named by the kit → why kept."""
        candidates = set(in_use) | {n for n in configs if is_kit_config_name(n, self.endpoint_name)}
        for name in sorted(candidates):
            config = configs.get(name)
            if config is None:
                continue  # named by the endpoint but already deleted
            why_not = self._not_kit_config(config)
            if why_not:
                report.items.append(TeardownItem("endpoint-config", name, False, why_not))
                continue
            deleting.append(name)
            report.items.append(TeardownItem(
                "endpoint-config", name, True,
                "used by the endpoint" if name in in_use
                else f"named by the kit for {self.endpoint_name}"))
            for variant in config.get("ProductionVariants") or []:
                model = variant.get("ModelName", "")
                version = version_of_variant(variant["VariantName"])
                if is_kit_model_name(model, self.model_group, version):
                    referenced.setdefault(model, []).append(name)
                elif model:
                    foreign.setdefault(model, f"referenced by {name} but not named by the kit "
                                              f"for {self.model_group} v{version}")

        # A model that an endpoint config which stays references must stay too.
        kept_by: dict[str, str] = {}
        for name, config in configs.items():
            if name not in deleting:
                for variant in config.get("ProductionVariants") or []:
                    kept_by.setdefault(variant.get("ModelName", ""), name)
        orphans = [m for m in self._kit_models_of_group()
                   if m not in referenced and m not in kept_by]
        for model in sorted(set(referenced) | set(orphans) | set(foreign)):
            if model in foreign and model not in referenced:
                report.items.append(TeardownItem("model", model, False, foreign[model]))
            elif model in kept_by:
                report.items.append(TeardownItem(
                    "model", model, False,
                    f"also referenced by endpoint config {kept_by[model]}, which stays"))
            elif model in referenced:
                report.items.append(TeardownItem(
                    "model", model, True, f"referenced by {', '.join(referenced[model])}",
                    referenced_by=tuple(referenced[model])))
            else:
                report.items.append(TeardownItem(
                    "model", model, True, f"named by the kit for {self.model_group}, referenced "
                                          f"by no endpoint config (left by an interrupted "
                                          f"teardown or a failed deploy)"))
        return report

    def _require_kit_variant(self, variant: str, where: str) -> None:
        try:
            version_of_variant(variant)
        except ValueError:
            raise OperationInputError(
                f"{where} serves variant {variant!r}, not named after a model version (v<N>): "
                f"not an endpoint the kit deployed; teardown deletes nothing") from None

    def _not_kit_config(self, config: Mapping[str, Any]) -> str:
        variants = config.get("ProductionVariants") or []
        if not variants:
            return "has no production variants: not one of the kit's"
        for variant in variants:
            try:
                version_of_variant(variant.get("VariantName", ""))
            except ValueError:
                return (f"variant {variant.get('VariantName')!r} is not named after a model "
                        f"version: not one of the kit's")
        return ""

    def _describe_endpoint(self) -> dict[str, Any] | None:
        try:
            return self._sagemaker("describe_endpoint", EndpointName=self.endpoint_name)
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise

    def _describe_all_configs(self) -> dict[str, dict[str, Any]]:
        names: list[str] = []
        token: str | None = None
        while True:
            page = self._sagemaker("list_endpoint_configs", MaxResults=100,
                                   **({"NextToken": token} if token else {}))
            names += [c["EndpointConfigName"] for c in page.get("EndpointConfigs", [])]
            token = page.get("NextToken")
            if not token:
                break
        described: dict[str, dict[str, Any]] = {}
        for name in names:
            try:
                described[name] = self._sagemaker("describe_endpoint_config",
                                                  EndpointConfigName=name)
            except ClientError as exc:
                if not _is_missing(exc):  # deleted since it was listed: nothing to keep
                    raise
        return described

    def _kit_models_of_group(self) -> list[str]:
        # Server-side filter on the group's readable part, exact rule match here.
        needle = model_head(self.model_group, 1)[:40].rstrip("-")
        names: list[str] = []
        token: str | None = None
        while True:
            page = self._sagemaker("list_models", MaxResults=100, NameContains=needle,
                                   **({"NextToken": token} if token else {}))
            names += [m["ModelName"] for m in page.get("Models", [])
                      if is_kit_model_name(m["ModelName"], self.model_group)]
            token = page.get("NextToken")
            if not token:
                return names

    # -- apply -----------------------------------------------------------------------------
    def apply(self, report: TeardownReport, *, wait: bool = True) -> TeardownReport:
        """Delete what `report` (from `plan`) marks for deletion: the endpoint (waiting until
        it is gone, unless `wait` is False), then the configs, then the models. Already gone
        counts as deleted; a step that fails stops what depends on it (`not_attempted`)."""
        report.applied = True
        try:
            return self._apply(report, wait)
        except BotoCoreError as exc:
            for item in report.to_delete:
                if item.status == "planned":
                    item.status, item.error = "not_attempted", f"cannot reach SageMaker: {exc}"
            return report

    def _apply(self, report: TeardownReport, wait: bool) -> TeardownReport:
        for item in report.of("endpoint", delete=True):
            if item.state == "Deleting":
                item.status = "deleted"  # deletion already under way: only wait for it
            else:
                self._delete(item, "delete_endpoint", EndpointName=item.name)
            if item.status == "deleted" and wait:
                self._wait_gone(item)
            if item.status not in ("deleted", "already_gone"):
                for rest in report.to_delete:
                    if rest.status == "planned":
                        rest.status = "not_attempted"
                        rest.error = f"endpoint {item.name} was not deleted"
                return report
        undeleted: set[str] = set()
        for item in report.of("endpoint-config", delete=True):
            self._delete(item, "delete_endpoint_config", EndpointConfigName=item.name)
            if item.status not in ("deleted", "already_gone"):
                undeleted.add(item.name)
        for item in report.of("model", delete=True):
            blocking = sorted(undeleted & set(item.referenced_by))
            if blocking:
                # Its config still exists: deleting the model would leave a config that cannot
                # be deployed; the next run finds the model again through that config.
                item.status = "not_attempted"
                item.error = f"endpoint config {blocking[0]} was not deleted"
                continue
            self._delete(item, "delete_model", ModelName=item.name)
        return report

    def _delete(self, item: TeardownItem, operation: str, **kwargs: Any) -> None:
        try:
            self._sagemaker(operation, **kwargs)
        except ClientError as exc:
            if _is_missing(exc):
                item.status = "already_gone"
                return
            item.status, item.error = "failed", f"{error_code(exc)}: {error_message(exc)}"
            return
        item.status = "deleted"

    def _wait_gone(self, item: TeardownItem) -> None:
        """DeleteEndpoint only starts the deletion; until it ends the endpoint still uses the
        serving role and writes capture, which `cdk destroy` may delete."""
        deadline = self.monotonic() + self.wait_timeout_seconds
        while True:
            described = self._describe_endpoint()
            if described is None:
                return
            status = described.get("EndpointStatus", "")
            if status == "Failed":
                item.status = "failed"
                item.error = (f"endpoint deletion failed: "
                              f"{described.get('FailureReason', 'no reason given')}")
                return
            if self.monotonic() >= deadline:
                item.status = "failed"
                item.error = (f"still {status} after {self.wait_timeout_seconds:.0f} s: run "
                              f"the teardown again once it is gone")
                return
            self.sleep(self.poll_seconds)
