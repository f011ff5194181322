"""The endpoint's request handling over the HTTP protocol of `mlops_kit.serving.http`.

Routes (`EndpointApp`):
  POST /endpoints/{name}/invocations   score, answering as SageMaker's InvokeEndpoint does
  POST /invocations                    score, answering as the model container does
  GET  /ping                           200 once the models are loaded ("Degraded" naming any
                                       variant that failed to load, a newer state that was
                                       not applied, or data capture failing), else 503

Data capture is an observer: a record that cannot be written (full disk, read-only folder) is
dropped and counted by the CaptureWriter, the request is still answered 200, and /ping says
"Degraded" with the cause under "capture" until writing works again.

The two invocation paths differ only when the handlers refuse a request. The container answers
the handler's status (400, 406, 415; 500 for any other exception) with its message; SageMaker's
runtime turns any such non-2xx answer into HTTP 424 `ModelError` with `OriginalStatusCode` and
`OriginalMessage` (botocore's ModelError shape). Every response carries `x-amzn-RequestId`;
errors are JSON with the error code in `X-Amzn-ErrorType`, where botocore's rest-json parser
reads it. docs/serving.md ("One serving contract") lists every answer.
"""

from __future__ import annotations

import json
import logging

from mlops_pipelines.steps.inference import DEFAULT_CONTENT_TYPE, PayloadError

from mlops_kit.serving.capture import CaptureWriter
from mlops_kit.serving.http import (  # noqa: F401 - HttpProtocol, ConnectionRegistry re-exported
    DEFAULT_MAX_BODY_BYTES, JSON_TYPE, ConnectionRegistry, HttpProtocol, Response, error_response)
from mlops_kit.serving.router import (EndpointUnavailable, ScoringRouter, ServingError,
                                      negotiate_accept)

log = logging.getLogger(__name__)

CONTAINER_ERROR_TYPE = b"text/plain"
"""The content type of the container's own error answer (POST /invocations). SageMaker replaces
that answer with its JSON ModelError, so a runtime caller never sees it."""
TOOLKIT_DECODED_TYPES = (b"text/csv", b"application/json")
"""Content-Type values (exactly these strings, as sagemaker-inference's `content_types.UTF8_TYPES`)
whose body the container's toolkit decodes as UTF-8 itself, before `input_fn` runs: a body that
is not UTF-8 is then the toolkit's own 500 (the UnicodeDecodeError's text), which the handlers
never see. With any other spelling (`text/csv; charset=utf-8`, none) `input_fn` gets the bytes
and refuses them with its 400."""
LOCAL_ACCOUNT = "000000000000"
"""The account the local home answers for (`mlops_kit.deploy.events.LOCAL_ACCOUNT`, not imported:
that module pulls in aws-lambda-powertools). SageMaker names the account in its message for an
endpoint that does not exist."""


def model_error(original_status: int, original_message: str) -> Response:
    """SageMaker's answer when the model container answered `original_status` (not 2xx): 424
    ModelError with the container's status and message. On AWS, `OriginalMessage` is the
    container's whole body (the toolkit appends a traceback after the message's line), and
    `Message` ends with where the CloudWatch log is; `LogStreamArn` is left out here."""
    kind = "client" if original_status < 500 else "server"
    return error_response(
        424, "ModelError",
        f'Received {kind} error ({original_status}) from primary with message '
        f'"{original_message}".',
        OriginalStatusCode=original_status, OriginalMessage=original_message)


class EndpointApp:
    """The SageMaker runtime contract for one endpoint, over a ScoringRouter."""

    def __init__(self, router: ScoringRouter, capture: CaptureWriter | None = None):
        self.router = router
        self.capture = capture if capture is not None and capture.percent > 0 else None
        name = router.endpoint_name.encode()
        self.endpoint_name = router.endpoint_name
        self._runtime_path = b"/endpoints/%s/invocations" % name
        self.requests = 0
        self.errors = 0

    def handle(self, method: bytes, target: bytes, headers: dict[bytes, bytes],
               body: bytes) -> Response:
        path = target.split(b"?", 1)[0] if b"?" in target else target
        runtime = path == self._runtime_path
        if runtime or path == b"/invocations":
            if method != b"POST":
                return error_response(405, "MethodNotAllowed", "use POST for invocations",
                                      b"Allow: POST\r\n")
            return self.invoke(headers, body, as_container=not runtime)
        if path == b"/ping":
            if method not in (b"GET", b"HEAD"):
                return error_response(405, "MethodNotAllowed", "use GET for /ping",
                                      b"Allow: GET, HEAD\r\n")
            return self.ping()
        if path.startswith(b"/endpoints/") and path.endswith(b"/invocations"):
            other = path[len(b"/endpoints/"):-len(b"/invocations")].decode("utf-8", "replace")
            # SageMaker's words for an endpoint that does not exist (400, ValidationError).
            return error_response(400, "ValidationError",
                                  f"Endpoint {other} of account {LOCAL_ACCOUNT} not found. "
                                  f"(This server serves '{self.endpoint_name}'.)")
        return error_response(404, "NotFound", f"no route for {path.decode('latin-1')}; use "
                              f"POST /endpoints/{self.endpoint_name}/invocations or GET /ping")

    def ping(self) -> Response:
        table = self.router.refresh()
        if table is None:
            reason = self.router.last_error or f"endpoint '{self.endpoint_name}' has no " \
                                               f"deployed state at {self.router.path}"
            return error_response(503, "ServiceUnavailable", reason)
        weights = table.weights()
        if table.unavailable and not any(weight > 0 for weight in weights.values()):
            # Unpinned requests would all get 503: a load balancer must not send traffic here.
            return error_response(503, "ServiceUnavailable", str(table.no_traffic_error()))
        # A newer state that was not applied (a promotion or rollback that did not take effect):
        # the old generation still answers (200), but it is not what the control plane wants.
        unapplied = self.router.unapplied
        # Data capture failing (disk full, read-only): the models serve, so 200, but Degraded
        # with the cause, as for a variant that did not load.
        capture = self.capture.health() if self.capture is not None else None
        capture_failing = capture is not None and capture.failing
        degraded = bool(table.unavailable) or unapplied is not None or capture_failing
        answer = {"status": "Degraded" if degraded else "Healthy",
                  "endpoint": self.endpoint_name, "generation": table.generation,
                  "variants": weights, "unavailable": table.unavailable}
        if unapplied is not None:
            answer["wanted_generation"] = unapplied.generation
            answer["not_applied"] = unapplied.as_dict()
        if capture is not None and (capture.failing or capture.dropped):
            answer["capture"] = capture.to_dict()
        return 200, JSON_TYPE, json.dumps(answer).encode(), b""

    def invoke(self, headers: dict[bytes, bytes], body: bytes, *,
               as_container: bool = False) -> Response:
        """Score one request. `as_container`: answer a handler's refusal as the container does
        (its status and message) rather than as SageMaker's runtime (424 ModelError)."""
        self.requests += 1
        raw_type = headers.get(b"content-type")
        content_type = raw_type.decode("latin-1") if raw_type else DEFAULT_CONTENT_TYPE
        target = headers.get(b"x-amzn-sagemaker-target-variant")
        try:
            invocation = self.router.invoke(
                body, content_type, negotiate_accept(headers.get(b"accept")),
                target.decode("latin-1") if target else None)
        except PayloadError as exc:
            self.errors += 1
            status, message = exc.status_code, exc.message
            if raw_type in TOOLKIT_DECODED_TYPES:  # checked only here, off the scoring path
                try:
                    body.decode("utf-8")
                except UnicodeDecodeError as undecodable:
                    status, message = 500, str(undecodable)
            return self._handler_failed(status, message, as_container)
        except EndpointUnavailable as exc:
            self.errors += 1
            return error_response(exc.status, exc.code, f"Endpoint {self.endpoint_name} of "
                                                        f"account {LOCAL_ACCOUNT} not found: {exc}")
        except ServingError as exc:
            self.errors += 1
            return error_response(exc.status, exc.code, str(exc))
        except Exception as exc:  # the toolkit answers any other handler exception with a 500
            self.errors += 1
            log.exception("scoring failed")
            return self._handler_failed(500, str(exc) or type(exc).__name__, as_container)
        capture = self.capture
        if capture is not None and capture.sampled():
            inference_id = headers.get(b"x-amzn-sagemaker-inference-id")
            try:  # `write` drops and counts what it cannot write; this guards anything else
                capture.write(invocation.variant.variant_name, body, content_type,
                              invocation.body, invocation.content_type,
                              inference_id.decode("utf-8", "replace") if inference_id else None)
            except Exception as exc:  # capture never fails the request it observes
                capture.note_failure(exc)
        return (200, invocation.content_type.encode(), invocation.body,
                invocation.variant.invoked_header)

    @staticmethod
    def _handler_failed(status: int, message: str, as_container: bool) -> Response:
        if as_container:
            return status, CONTAINER_ERROR_TYPE, message.encode("utf-8", "replace"), b""
        return model_error(status, message)


