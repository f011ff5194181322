# Frozen copy of the hand-written HTTP/1.1 protocol class (functions/mlops_kit/serving/http.py
# before llhttp), for the side-by-side benchmark only: benchmarks/serving/baseline/sitecustomize.py.
# The response framing, request ids, dates and connection registry are imported from the kit.
"""HTTP/1.1 for asyncio: the server protocol the endpoint's workers run (keep-alive and
pipelining, Content-Length and chunked bodies, `Expect: 100-continue`, HTTP/1.0 clients), its
limits (head 64 KiB: 431; body above `max_body_bytes`, SageMaker's 6 MB: 413) and the response
framing every answer shares (`x-amzn-RequestId`, `Date`, SageMaker's JSON error shape).
What is answered lives in `mlops_kit.serving.wire.EndpointApp`.

Why not http.server, or uvicorn: the request path is a one-row model call of ~60 µs, so the
HTTP layer must cost about as much, not ten times more. This parser handles what the SageMaker
runtime contract needs and nothing else: keep-alive and pipelining, Content-Length and chunked
bodies, `Expect: 100-continue`, HTTP/1.0 clients; it answers malformed requests with 400,
oversized headers with 431 and bodies above `max_body_bytes` (SageMaker's 6 MB) with 413,
and it never blocks: scoring runs inline in `data_received` (it is CPU-bound and short).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

# Everything but the parser is the kit's own, so the benchmark compares parsers and nothing else.
from mlops_kit.serving.framing import REASONS, Response, error_response, http_date, new_request_id
from mlops_kit.serving.http import DEFAULT_MAX_BODY_BYTES, MAX_HEAD_BYTES, ConnectionRegistry

log = logging.getLogger(__name__)


class HttpProtocol(asyncio.Protocol):
    __slots__ = ("_handle", "_registry", "_transport", "_head", "_request", "_parts", "_need",
                 "_got", "_close_after", "_max_body", "last_active", "_continue_sent")

    def __init__(self, handle: Callable[[bytes, bytes, dict, bytes], Response],
                 registry: ConnectionRegistry, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES):
        self._handle = handle
        self._registry = registry
        self._transport: asyncio.Transport | None = None
        self._head = b""          # bytes of an incomplete request head (or chunked request)
        self._request = None      # parsed head waiting for a Content-Length body
        self._parts: list[bytes] = []
        self._need = 0
        self._got = 0
        self._close_after = False
        self._max_body = max_body_bytes
        self._continue_sent = False
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
        self.last_active = time.monotonic()
        out: list[bytes] = []
        try:
            self._receive(data, out)
        except Exception:  # never let one bad request kill the worker
            log.exception("unexpected error while handling a request")
            out.append(self._format(*error_response(500, "InternalFailure",
                                                    "internal error while handling the request"),
                                    keep_alive=False))
            self._close_after = True
        transport = self._transport
        if transport is None:
            return
        if out:
            transport.write(out[0] if len(out) == 1 else b"".join(out))
        if self._close_after:
            transport.close()

    # -- parsing -------------------------------------------------------------------------------
    def _receive(self, data: bytes, out: list[bytes]) -> None:
        if self._need:
            self._parts.append(data)
            self._got += len(data)
            if self._got < self._need:
                return
            data = b"".join(self._parts)
            self._parts = []
            need, self._need, self._got = self._need, 0, 0
            request, self._request = self._request, None
            self._continue_sent = False
            if not self._respond(request, data[:need], out):
                return
            data = data[need:]
        elif self._head:
            data = self._head + data
            self._head = b""
        pos = 0
        size = len(data)
        while pos < size:
            while data.startswith(b"\r\n", pos):  # tolerated before a request line
                pos += 2
            if pos >= size:
                break
            end = data.find(b"\r\n\r\n", pos)
            if end < 0:
                if size - pos > MAX_HEAD_BYTES:
                    self._fail(out, 431, "request head larger than 64 KiB")
                    return
                self._head = data[pos:]
                return
            request = self._parse_head(data, pos, end, out)
            if request is None:
                return
            headers = request[3]
            start = end + 4
            if b"transfer-encoding" in headers:
                decoded = self._dechunk(data, start, out)
                if decoded is None:
                    if self._close_after:
                        return
                    if size - start > self._max_body + MAX_HEAD_BYTES:  # chunk framing abuse
                        self._fail(out, 413, f"payload exceeds the {self._max_body}-byte limit")
                        return
                    self._head = data[pos:]
                    self._maybe_continue(headers)
                    return
                body, pos = decoded
            else:
                length = request[4]
                if size - start < length:
                    self._request = request
                    self._need = length
                    self._parts = [data[start:]]
                    self._got = size - start
                    self._maybe_continue(headers)
                    return
                body = data[start:start + length] if length else b""
                pos = start + length
            if not self._respond(request, body, out):
                return

    def _parse_head(self, data: bytes, pos: int, end: int, out: list[bytes]):
        lines = data[pos:end].split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            if len(parts) == 3 and parts[2].startswith(b"HTTP/"):
                self._fail(out, 505, "only HTTP/1.x is supported")
            else:
                self._fail(out, 400, "malformed request line")
            return None
        method, target, version = parts
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name[-1:] in (b" ", b"\t"):
                self._fail(out, 400, "malformed header line")
                return None
            headers[name.lower()] = value.strip()
        length = 0
        if b"transfer-encoding" in headers:
            if b"content-length" in headers or headers[b"transfer-encoding"].lower() != b"chunked":
                self._fail(out, 501 if b"content-length" not in headers else 400,
                           "only 'Transfer-Encoding: chunked' without Content-Length is supported")
                return None
        else:
            raw_length = headers.get(b"content-length")
            if raw_length is not None:
                if not raw_length.isdigit():
                    self._fail(out, 400, "Content-Length is not a number")
                    return None
                length = int(raw_length)
                if length > self._max_body:
                    self._fail(out, 413, f"payload of {length} bytes exceeds the "
                                         f"{self._max_body}-byte limit")
                    return None
        if version == b"HTTP/1.1":
            keep_alive = headers.get(b"connection", b"").lower() != b"close"
        else:
            keep_alive = headers.get(b"connection", b"").lower() == b"keep-alive"
        return method, target, version, headers, length, keep_alive

    def _dechunk(self, data: bytes, pos: int, out: list[bytes]) -> tuple[bytes, int] | None:
        chunks: list[bytes] = []
        total = 0
        while True:
            line_end = data.find(b"\r\n", pos)
            if line_end < 0:
                return None
            size_text = data[pos:line_end].split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                self._fail(out, 400, "malformed chunk size")
                return None
            total += size
            if total > self._max_body:
                self._fail(out, 413, f"payload exceeds the {self._max_body}-byte limit")
                return None
            if size == 0:  # then optional trailer fields, then an empty line
                after = line_end + 2
                if data.startswith(b"\r\n", after):
                    return b"".join(chunks), after + 2
                trailers_end = data.find(b"\r\n\r\n", after)
                if trailers_end < 0:
                    return None
                return b"".join(chunks), trailers_end + 4
            chunk_end = line_end + 2 + size
            if len(data) < chunk_end + 2:
                return None
            chunks.append(data[line_end + 2:chunk_end])
            pos = chunk_end + 2

    def _maybe_continue(self, headers: dict[bytes, bytes]) -> None:
        if not self._continue_sent and headers.get(b"expect", b"").lower() == b"100-continue":
            self._continue_sent = True
            if self._transport is not None:
                self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    # -- responding ----------------------------------------------------------------------------
    def _respond(self, request, body: bytes, out: list[bytes]) -> bool:
        """Handle one request; False when the connection closes after it."""
        method, target, _version, headers, _length, keep_alive = request
        self._continue_sent = False
        status, content_type, payload, extra = self._handle(method, target, headers, body)
        if self._registry.draining:
            keep_alive = False
        if method == b"HEAD":
            out.append(self._format(status, content_type, b"", extra, keep_alive,
                                    length=len(payload)))
        else:
            out.append(self._format(status, content_type, payload, extra, keep_alive))
        if not keep_alive:
            self._close_after = True
            return False
        return True

    @staticmethod
    def _format(status: int, content_type: bytes, body: bytes, extra: bytes = b"",
                keep_alive: bool = True, length: int | None = None) -> bytes:
        return (b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nDate: %s\r\n"
                b"x-amzn-RequestId: %s\r\n%s%s\r\n%s") % (
            REASONS.get(status) or b"%d Error" % status, content_type,
            len(body) if length is None else length, http_date(), new_request_id(), extra,
            b"" if keep_alive else b"Connection: close\r\n", body)

    def _fail(self, out: list[bytes], status: int, message: str) -> None:
        code = {400: "BadRequest", 413: "PayloadTooLarge", 431: "HeaderTooLarge",
                501: "NotImplemented", 505: "VersionNotSupported"}.get(status, "BadRequest")
        out.append(self._format(*error_response(status, code, message), keep_alive=False))
        self._close_after = True
        self._head = b""
        self._need = 0

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """A request is partly received."""
        return bool(self._head or self._need)

    def expire(self, now: float, keepalive_seconds: float, request_seconds: float) -> None:
        transport = self._transport
        if transport is None:
            return
        idle = now - self.last_active
        if self.busy:
            if idle > request_seconds:
                transport.write(self._format(*error_response(
                    408, "RequestTimeout", "request not completed in time"), keep_alive=False))
                transport.close()
        elif idle > keepalive_seconds:
            transport.close()

    def drain(self) -> None:
        if self._transport is None:
            return
        if not self.busy:  # a busy one closes after its response (the registry is draining)
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
