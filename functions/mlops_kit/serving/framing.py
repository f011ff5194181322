"""The bytes every answer of the local endpoint shares, whichever parser read the request:
status lines, `Content-Length`, `Date`, a UUID-shaped `x-amzn-RequestId`, and SageMaker's JSON
error shape with its `X-Amzn-ErrorType` header."""

from __future__ import annotations

import itertools
import json
import os
import time

REASONS = {
    100: b"100 Continue", 200: b"200 OK", 400: b"400 Bad Request", 404: b"404 Not Found",
    405: b"405 Method Not Allowed", 406: b"406 Not Acceptable", 408: b"408 Request Timeout",
    411: b"411 Length Required", 413: b"413 Payload Too Large",
    415: b"415 Unsupported Media Type", 424: b"424 Failed Dependency",
    431: b"431 Request Header Fields Too Large", 500: b"500 Internal Server Error",
    501: b"501 Not Implemented", 503: b"503 Service Unavailable",
    505: b"505 HTTP Version Not Supported",
}
JSON_TYPE = b"application/json"

Response = tuple[int, bytes, bytes, bytes]
"""(status, content type, body, extra header lines)."""


def _request_id_head() -> bytes:
    digits = os.urandom(8).hex().encode()
    return b"%s-%s-%s-" % (digits[:8], digits[8:12], digits[12:16])


# x-amzn-RequestId is UUID-shaped: a random 64-bit head per process (each worker, each restart)
# and a counter. Unique like a random UUID, without drawing 128 random bits per request.
_REQUEST_ID_HEAD = _request_id_head()
_request_serial = itertools.count()


def new_request_id() -> bytes:
    serial = next(_request_serial)
    return b"%s%04x-%012x" % (_REQUEST_ID_HEAD, serial >> 48 & 0xFFFF, serial & 0xFFFFFFFFFFFF)


_date_second = -1
_date_text = b""


def http_date() -> bytes:
    global _date_second, _date_text
    now = int(time.time())
    if now != _date_second:
        _date_second = now
        _date_text = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)).encode()
    return _date_text


def error_response(status: int, code: str, message: str, extra: bytes = b"",
                   **fields: object) -> Response:
    """A SageMaker runtime error: JSON `{"ErrorCode", "Message", ...fields}` and the code in
    `X-Amzn-ErrorType`, from which botocore's rest-json parser takes the error code (it then
    reads the code's modeled fields, e.g. ModelError's `OriginalStatusCode`, from the body)."""
    body = json.dumps({"ErrorCode": code, "Message": message, **fields}).encode()
    return status, JSON_TYPE, body, extra + b"X-Amzn-ErrorType: %s\r\n" % code.encode()


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
ERROR_CODES = {400: "BadRequest", 408: "RequestTimeout", 413: "PayloadTooLarge",
               431: "HeaderTooLarge", 501: "NotImplemented", 505: "VersionNotSupported"}


def format_response(status: int, content_type: bytes, body: bytes, extra: bytes = b"",
                    connection: bytes = b"", length: int | None = None) -> bytes:
    """One HTTP/1.1 answer; `length` declares a body not sent (HEAD)."""
    return (b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nDate: %s\r\n"
            b"x-amzn-RequestId: %s\r\n%s%s\r\n%s") % (
        REASONS.get(status) or b"%d Error" % status, content_type,
        len(body) if length is None else length, http_date(), new_request_id(), extra,
        connection, body)
