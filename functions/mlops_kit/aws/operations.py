"""Operator actions on a deployed stage that no controller takes by itself.

Replay (`mlops events ...`): the deployment and rollback controllers are invoked asynchronously
(EventBridge → Lambda). When an invocation fails all of Lambda's attempts, Lambda sends an
invocation record to the stage's on-failure queue (stack output `FailedEventsQueueUrl`; the
record, its parsing and the reports: `mlops_kit.aws.failed_events`).

`FailedEventQueue.replay` reads that queue and invokes `requestContext.functionArn` again,
asynchronously (InvocationType "Event"), with `requestPayload`; a message is deleted only once
Lambda accepted the invocation (202). Both controllers are idempotent on the event (the state
change, the alarm transition), so a replay that is delivered twice is applied once.

Teardown (`mlops teardown`): CloudFormation never owned the endpoint, its endpoint configs or
its models (the deployment controller creates them), so `cdk destroy` leaves them running and
billing. `StageTeardown` finds what the kit created for one endpoint and model group, by the
kit's own naming rules (`mlops_kit.aws.models.resource_name`), and deletes endpoint → configs →
models; anything outside those rules, or still used by a config that stays, is kept (the
rules and the plan: `mlops_kit.aws.teardown_plan`).

IAM: `REPLAY_IAM_ACTIONS`, `DISCARD_IAM_ACTIONS`, `TEARDOWN_IAM_ACTIONS` (checked against the
calls in this module by tests/aws/test_operations.py: every AWS call of the operations stays
here, the modules above are pure).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator, Mapping

from botocore.exceptions import BotoCoreError, ClientError

from mlops_kit.aws.clients import Backoff, default_client, error_code, error_message

# Re-exported: the operations' public names stay importable from here.
from .failed_events import (FAILED_STATUSES, RECEIVE_BATCH, DestinationRecord,  # noqa: F401
                            EventSummary, FailedEventReport, MalformedRecordError, QueueRef,
                            QueueReport, judge_message, parse_destination_record,
                            parse_queue_url, summarize_event, with_status)
from .operation_errors import OperationInputError
from .teardown_plan import (CONFIG_DIGEST_CHARS, MODEL_DIGEST_CHARS,  # noqa: F401
                            SAGEMAKER_NAME, TeardownItem, TeardownReport, config_prefix,
                            hold_back_model, is_kit_config_name, is_kit_model_name,
                            is_missing, model_head, plan_teardown)

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


def _default_client(service: str, region: str | None) -> Any:
    return default_client(service, region=region)


client_factory: Callable[[str, str | None], Any] = _default_client
"""How a client is made when none is injected (`service, region`); tests replace it."""


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
        verdict = judge_message(mode, message, selected, self.queue, self.clock)
        if verdict.replay is not None:
            return self._invoke(verdict.event, verdict.replay)
        return verdict.event, verdict.delete

    def _invoke(self, base: FailedEventReport, record: DestinationRecord
                ) -> tuple[FailedEventReport, bool]:
        payload = json.dumps(record.request_payload, separators=(",", ":"),
                             ensure_ascii=False).encode("utf-8")
        try:
            response = self._lambda("invoke", FunctionName=record.function_arn,
                                    InvocationType="Event", Payload=payload)
        except ClientError as exc:
            return with_status(base, "invoke_failed",
                               f"{error_code(exc)}: {error_message(exc)}; left in the queue"), False
        except BotoCoreError as exc:
            return with_status(base, "invoke_failed", f"{exc}; left in the queue"), False
        status = response.get("StatusCode")
        if status != 202:
            return with_status(base, "invoke_failed",
                               f"Lambda answered {status}, not 202 (queued); "
                               f"left in the queue"), False
        return with_status(base, "replayed", "invoked again (Event, 202)"), True

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
                return with_status(event, "not_deleted",
                                   f"invoked (202) but the message could not be deleted "
                                   f"({detail}): a later replay delivers it again, which "
                                   f"idempotency makes harmless")
            return with_status(event, "discard_failed", f"could not delete: {detail}")
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


class StageTeardown:
    """What the deployment controller created for one endpoint and model group: `plan` reads
    it (what goes and what stays: `mlops_kit.aws.teardown_plan`), `apply` deletes it."""

    def __init__(self, endpoint_name: str, model_group: str, *, sagemaker_client: Any = None,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic,
                 wait_timeout_seconds: float = 1800.0, poll_seconds: float = 15.0):
        for option, value in (("--endpoint", endpoint_name), ("--model-group", model_group)):
            if not SAGEMAKER_NAME.match(value or ""):
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
        return plan_teardown(self.endpoint_name, self.model_group, self._describe_endpoint(),
                             self._describe_all_configs(), self._kit_models_of_group)

    def _describe_endpoint(self) -> dict[str, Any] | None:
        try:
            return self._sagemaker("describe_endpoint", EndpointName=self.endpoint_name)
        except ClientError as exc:
            if is_missing(exc):
                return None
            raise

    def _describe_all_configs(self) -> dict[str, dict[str, Any]]:
        names = [c["EndpointConfigName"]
                 for c in self._list_sagemaker("list_endpoint_configs", "EndpointConfigs")]
        described: dict[str, dict[str, Any]] = {}
        for name in names:
            try:
                described[name] = self._sagemaker("describe_endpoint_config",
                                                  EndpointConfigName=name)
            except ClientError as exc:
                if not is_missing(exc):  # deleted since it was listed: nothing to keep
                    raise
        return described

    def _kit_models_of_group(self) -> list[str]:
        # Server-side filter on the group's readable part, exact rule match here.
        needle = model_head(self.model_group, 1)[:40].rstrip("-")
        return [m["ModelName"]
                for m in self._list_sagemaker("list_models", "Models", NameContains=needle)
                if is_kit_model_name(m["ModelName"], self.model_group)]

    def _list_sagemaker(self, operation: str, items: str, **kwargs: Any) -> list[dict[str, Any]]:
        """Every entry of a SageMaker List call, following NextToken."""
        found: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = self._sagemaker(operation, MaxResults=100, **kwargs,
                                   **({"NextToken": token} if token else {}))
            found += page.get(items, [])
            token = page.get("NextToken")
            if not token:
                return found

    # -- apply -----------------------------------------------------------------------------
    def apply(self, report: TeardownReport, *, wait: bool = True) -> TeardownReport:
        """Delete what `report` (from `plan`) marks for deletion: the endpoint (waiting until
        it is gone, unless `wait` is False), then the configs, then the models. Already gone
        counts as deleted; a step that fails stops what depends on it (`not_attempted`)."""
        report.applied = True
        try:
            return self._apply(report, wait)
        except BotoCoreError as exc:
            report.stop_planned(f"cannot reach SageMaker: {exc}")
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
                report.stop_planned(f"endpoint {item.name} was not deleted")
                return report
        undeleted: set[str] = set()
        for item in report.of("endpoint-config", delete=True):
            self._delete(item, "delete_endpoint_config", EndpointConfigName=item.name)
            if item.status not in ("deleted", "already_gone"):
                undeleted.add(item.name)
        for item in report.of("model", delete=True):
            if not hold_back_model(item, undeleted):
                self._delete(item, "delete_model", ModelName=item.name)
        return report

    def _delete(self, item: TeardownItem, operation: str, **kwargs: Any) -> None:
        try:
            self._sagemaker(operation, **kwargs)
        except ClientError as exc:
            if is_missing(exc):
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
