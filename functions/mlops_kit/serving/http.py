"""HTTP/1.1 for asyncio: the server protocol the endpoint's workers run (keep-alive and
pipelining, Content-Length and chunked bodies, `Expect: 100-continue`, HTTP/1.0 clients), its
limits (head 64 KiB: 431; body above `max_body_bytes`, SageMaker's 6 MB: 413) and its
connection lifecycle. The response framing every answer shares (`x-amzn-RequestId`, `Date`,
SageMaker's JSON error shape) is `mlops_kit.serving.framing`; what is answered lives in
`mlops_kit.serving.wire.EndpointApp`.

Parsing is llhttp (Node's parser, through `httptools`, as uvicorn uses it), fed from an asyncio
Protocol: it frames requests (Content-Length, chunked), and refuses what would let a proxy and
this server read different requests from the same bytes: a duplicate Content-Length, both
Content-Length and Transfer-Encoding, malformed chunk sizes (`0x10`, `+1`, `1_0`, ` 1`, `-1`),
bare LF line ends, obsolete line folding. On top of it, this module keeps:

- the head limit, counted on the wire: the bytes from the request line to the empty line,
  whether they come in one read, byte by byte or split anywhere (a head of exactly 64 KiB is
  served, one byte more is 431). llhttp does not limit heads (Node counts them itself);
- the body limit: a Content-Length above `max_body_bytes` is 413 before any of the body is
  read; a chunked body is 413 as soon as its running total passes the limit. Body bytes are
  appended in place as llhttp hands them over (never re-parsed), so a large upload costs O(n)
  and each read is a bounded step of the event loop: other clients of the worker are not
  stalled. A chunked body's framing (sizes, extensions, trailers) may take about twice the
  limit on the wire (413 past that);
- repeated header fields (RFC 9110 section 5.3): a field the endpoint reads as one value
  (`REFUSED_WHEN_REPEATED`: Host, Content-Type, Expect, and every `X-Amzn-SageMaker-*`) sent
  twice is 400, since either copy could be the one a proxy in front acted on; any other field
  is joined with ", " in arrival order, as RFC 9110 allows for list-valued fields (Accept);
- 501 for a Transfer-Encoding other than `chunked`, 505 for a version other than HTTP/1.0 or
  1.1; every other parse error is 400 with llhttp's reason (an unknown method included: llhttp
  cannot tell one from a garbled request line, and uvicorn and Node answer 400 too).

Scoring runs inline, in the llhttp callback that completes a request (it is CPU-bound and
short); the answers a read produces go out in one write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

import httptools

from mlops_kit.serving.framing import (  # noqa: F401 - re-exported: the framing every answer shares
    CONTINUE, ERROR_CODES, JSON_TYPE, REASONS, Response, error_response, format_response,
    http_date, new_request_id)

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024
DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024

class ConnectionRegistry:
    """The live connections of one worker: for idle sweeps and graceful draining."""

    def __init__(self, on_close: Callable[[], None] | None = None, *,
                 keepalive_seconds: float = 60.0, request_seconds: float = 30.0):
        self.connections: set[HttpProtocol] = set()
        self.draining = False
        self.on_close = on_close
        self.keepalive_seconds = keepalive_seconds
        self.request_seconds = request_seconds

    def sweep(self) -> None:
        now = time.monotonic()
        for connection in list(self.connections):
            connection.expire(now, self.keepalive_seconds, self.request_seconds)

    def drain(self) -> None:
        """Stop keeping connections alive: idle ones close now, busy ones after responding."""
        self.draining = True
        for connection in list(self.connections):
            connection.drain()

    def abort_all(self) -> None:
        for connection in list(self.connections):
            connection.abort()


REFUSED_WHEN_REPEATED = frozenset({b"host", b"content-type", b"content-length",
                                   b"transfer-encoding", b"expect"})
"""Header fields (lower-case) that are refused with 400 when repeated; so is every field named
`x-amzn-sagemaker-*` (target variant, custom attributes, inference id, ...). Content-Length and
Transfer-Encoding are llhttp's own refusals (request smuggling); Host is RFC 9112's MUST."""
SAGEMAKER_FIELD_PREFIX = b"x-amzn-sagemaker-"

READ_SLACK_BYTES = 1024 * 1024
"""More than one read holds (asyncio reads 256 KiB at most)."""

_IDLE, _HEAD, _BODY = 0, 1, 2  # where the parser is: between requests, in a head, in a body


class _Refused(Exception):
    """Raised in a parser callback: answer `status` with `message` and close."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class _Closing(Exception):
    """Raised in a parser callback after an answer that closes the connection: parse no further."""


class HttpProtocol(asyncio.Protocol):
    __slots__ = ("_handle", "_registry", "_transport", "_parser", "_max_body", "_max_raw_body",
                 "_state", "_target", "_headers", "_body", "_body_size", "_head_size",
                 "_head_raw", "_head_tail", "_raw_body", "_keep_alive", "_http10", "_method",
                 "_expect_continue", "_out", "_close_after", "_closed", "last_active")

    def __init__(self, handle: Callable[[bytes, bytes, dict, bytes], Response],
                 registry: ConnectionRegistry, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES):
        self._handle = handle
        self._registry = registry
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._max_body = max_body_bytes
        # Bytes on the wire a chunked body (framing, extensions, trailers) may take in all; a
        # read can hold the end of the request before as well: one read of slack.
        self._max_raw_body = 2 * max_body_bytes + MAX_HEAD_BYTES + READ_SLACK_BYTES
        self._state = _IDLE
        self._target = b""
        self._headers: dict[bytes, bytes] = {}
        self._body: bytes | bytearray = b""
        self._body_size = 0
        self._head_size = 0       # the head's size from what llhttp reported (a lower bound)
        self._head_raw = 0        # the head's bytes counted on the wire (a lower bound)
        self._head_tail = b""     # the last 3 bytes of an incomplete head: "\r\n\r\n" may straddle
        self._raw_body = 0
        self._keep_alive = True
        self._http10 = False
        self._method = b""
        self._expect_continue = False
        self._out: list[bytes] = []
        self._close_after = False
        self._closed = False
        self.last_active = time.monotonic()

    # -- asyncio callbacks ---------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self._transport = transport
        self._registry.connections.add(self)

    def connection_lost(self, exc) -> None:
        registry = self._registry
        if self in registry.connections:
            registry.connections.discard(self)
            if registry.on_close is not None:
                registry.on_close()
        self._transport = None

    def pause_writing(self) -> None:  # a client that does not read its responses
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self._closed or not data:  # after an answer that closes, the rest is not read
            return
        self.last_active = time.monotonic()
        state = self._state
        try:
            if state != _BODY:
                self._head_end(data, state)
            self._parser.feed_data(data)
            state = self._state
            if state == _HEAD:  # a head goes on in the next read
                self._head_tail = data[-3:] if len(data) >= 3 else (self._head_tail + data)[-3:]
            elif state == _BODY:
                raw = self._raw_body = self._raw_body + len(data)
                if raw > self._max_raw_body:
                    raise _Refused(413, f"the body's chunked framing exceeds "
                                        f"{self._max_raw_body} bytes")
        except httptools.HttpParserCallbackError as exc:
            self._callback_failed(exc.__context__)
        except httptools.HttpParserInvalidMethodError:
            self._refuse(400, "malformed request line or unsupported method")
        except httptools.HttpParserUpgrade:
            self._close_after = True  # answered (with Connection: close); nothing is upgraded
        except httptools.HttpParserError as exc:
            reason = str(exc)
            if reason == "Invalid HTTP version":
                self._refuse(505, "only HTTP/1.0 and HTTP/1.1 are supported")
            else:
                self._refuse(400, f"malformed request: {reason}")
        except _Refused as refused:
            self._refuse(refused.status, refused.message)
        out = self._out
        if self._expect_continue and self._state == _BODY and not self._close_after:
            self._expect_continue = False  # the client waits for this before sending the body
            out.append(CONTINUE)
        transport = self._transport
        if transport is None:
            out.clear()
            return
        if out:
            transport.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()
        if self._close_after:
            self._closed = True
            transport.close()

    def _head_end(self, data: bytes, state: int) -> None:
        """Count the bytes of the head `data` starts in or with, and refuse it past the limit.

        Exact for a head that starts a read or goes on from an earlier one (llhttp wants CRLF
        line ends, so the first empty line ends the head). A head that starts after another
        request in the same read is counted from what llhttp reports (`on_url`, `on_header`)
        and by its later reads: the same figure for canonical heads, a lower bound when it
        pads whitespace llhttp skips."""
        if state == _IDLE:
            start = 0
            if data[0] in b"\r\n":  # empty lines before a request line are skipped
                start = len(data) - len(data.lstrip(b"\r\n"))
            end = data.find(b"\r\n\r\n", start)
            size = (len(data) if end < 0 else end + 4) - start
        else:  # _HEAD, continued from an earlier read
            joined = self._head_tail + data[:3]
            end = joined.find(b"\r\n\r\n")
            if end >= 0:
                end -= len(self._head_tail)
            else:
                end = data.find(b"\r\n\r\n")
            size = self._head_raw + (len(data) if end < 0 else end + 4)
        if size > MAX_HEAD_BYTES:
            raise _Refused(431, "request head larger than 64 KiB")
        self._head_raw = size

    # -- llhttp callbacks ----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._state = _HEAD
        self._target = b""
        self._headers = {}
        self._head_size = 0
        self._raw_body = 0

    def on_url(self, url: bytes) -> None:
        self._target += url
        size = self._head_size = self._head_size + len(url)
        if size > MAX_HEAD_BYTES:
            raise _Refused(431, "request head larger than 64 KiB")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._state != _HEAD:
            return  # a chunked body's trailer fields: counted in the body's framing, not kept
        size = self._head_size = self._head_size + len(name) + len(value) + 4
        if size > MAX_HEAD_BYTES:
            raise _Refused(431, "request head larger than 64 KiB")
        name = name.lower()
        if value[-1:] in b" \t":  # llhttp drops the whitespace before a value, not after
            value = value.rstrip(b" \t")
        headers = self._headers
        if name in headers:
            if name in REFUSED_WHEN_REPEATED or name.startswith(SAGEMAKER_FIELD_PREFIX):
                raise _Refused(400, f"header field {name.decode('latin-1')!r} is repeated")
            value = headers[name] + b", " + value
        headers[name] = value

    def on_headers_complete(self) -> None:
        parser = self._parser
        method = self._method = parser.get_method()
        # request line + CRLF, the header lines (each counted with ": " and CRLF), the empty line
        if self._head_size + len(method) + 14 > MAX_HEAD_BYTES:
            raise _Refused(431, "request head larger than 64 KiB")
        version = parser.get_http_version()
        if version != "1.1":
            if version != "1.0":
                raise _Refused(505, "only HTTP/1.0 and HTTP/1.1 are supported")
            self._http10 = True
        else:
            self._http10 = False
        self._state = _BODY
        self._head_raw = 0
        self._head_tail = b""
        headers = self._headers
        keep_alive = parser.should_keep_alive()
        if b"upgrade" in headers or method == b"CONNECT":
            keep_alive = False  # nothing is upgraded: answer, then close
        self._keep_alive = keep_alive
        coding = headers.get(b"transfer-encoding")
        if coding is not None:
            if coding.lower() != b"chunked":
                raise _Refused(501, "only 'Transfer-Encoding: chunked' is supported")
        else:
            length = headers.get(b"content-length")
            if length is None or length == b"0":
                self._expect_continue = False
                return
            if int(length) > self._max_body:  # llhttp checked it is digits
                raise _Refused(413, f"payload of {int(length)} bytes exceeds the "
                                    f"{self._max_body}-byte limit")
        self._expect_continue = (not self._http10
                                 and headers.get(b"expect", b"").lower() == b"100-continue")

    def on_body(self, body: bytes) -> None:
        size = self._body_size = self._body_size + len(body)
        if size > self._max_body:
            raise _Refused(413, f"payload exceeds the {self._max_body}-byte limit")
        kept = self._body
        if not kept:  # the usual case: the whole body in one piece, kept as llhttp gave it
            self._body = body
        elif type(kept) is bytes:  # more pieces: appended in place (amortised O(1) per byte)
            self._body = bytearray(kept) + body
        else:
            kept += body

    def on_message_complete(self) -> None:
        self._state = _IDLE
        self._expect_continue = False
        body = self._body
        if type(body) is bytearray:
            body = bytes(body)
        self._body = b""
        self._body_size = 0
        method = self._method
        status, content_type, payload, extra = self._handle(method, self._target, self._headers,
                                                            body)
        keep_alive = self._keep_alive and not self._registry.draining
        if not keep_alive:
            connection = b"Connection: close\r\n"
        elif self._http10:
            connection = b"Connection: keep-alive\r\n"
        else:
            connection = b""
        if method == b"HEAD":
            self._out.append(format_response(status, content_type, b"", extra, connection,
                                          length=len(payload)))
        else:
            self._out.append(format_response(status, content_type, payload, extra, connection))
        if not keep_alive:
            self._close_after = True
            raise _Closing()  # pipelined requests after this one are not read

    # -- responding ----------------------------------------------------------------------------
    def _callback_failed(self, error: BaseException | None) -> None:
        if isinstance(error, _Closing):
            return
        if isinstance(error, _Refused):
            self._refuse(error.status, error.message)
            return
        log.error("unexpected error while handling a request", exc_info=error)
        self._refuse(500, "internal error while handling the request", "InternalFailure")

    def _refuse(self, status: int, message: str, code: str | None = None) -> None:
        self._out.append(format_response(*error_response(
            status, code or ERROR_CODES.get(status, "BadRequest"), message),
            connection=b"Connection: close\r\n"))
        self._close_after = True
        self._state = _IDLE

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """A request is partly received."""
        return self._state != _IDLE

    def expire(self, now: float, keepalive_seconds: float, request_seconds: float) -> None:
        transport = self._transport
        if transport is None:
            return
        idle = now - self.last_active
        if self.busy:
            if idle > request_seconds:
                transport.write(format_response(*error_response(
                    408, "RequestTimeout", "request not completed in time"),
                    connection=b"Connection: close\r\n"))
                self._closed = True
                transport.close()
        elif idle > keepalive_seconds:
            self._closed = True
            transport.close()

    def drain(self) -> None:
        if self._transport is None:
            return
        if not self.busy:  # a busy one closes after its response (the registry is draining)
            self._closed = True
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._closed = True
            self._transport.abort()
