"""The HTTP/1.1 protocol's limits and framing, read by read (serving/http.py over llhttp), and a
large upload against a real `mlops serve --workers 1`: other clients of the worker are not
stalled."""

from __future__ import annotations

import json
import re
import socket
import threading
import time

import pytest

from mlops_kit.serving.http import MAX_HEAD_BYTES, ConnectionRegistry, HttpProtocol

from .conftest import Transport, start_server

OK = (200, b"text/plain", b"ok", b"")


class Recorder:
    """A handler that records each request it is given and answers 200 "ok"."""

    def __init__(self):
        self.requests: list[tuple[bytes, bytes, dict, bytes]] = []

    def __call__(self, method, target, headers, body):
        self.requests.append((method, target, dict(headers), body))
        return OK


def connect(max_body: int = 1024):
    handler = Recorder()
    protocol = HttpProtocol(handler, ConnectionRegistry(), max_body)
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport, handler


def feed(stream: bytes, cuts=(), max_body: int = 1024):
    """Deliver `stream` in the pieces `cuts` makes; (statuses answered, transport, handler)."""
    protocol, transport, handler = connect(max_body)
    start = 0
    for cut in [*sorted(cuts), len(stream)]:
        if cut > start:
            protocol.data_received(stream[start:cut])
            start = cut
    return statuses(transport.data), transport, handler


def statuses(data: bytes) -> list[int]:
    return [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]


def head_of_size(size: int, *, header_bytes: int | None = None) -> bytes:
    """A GET head of exactly `size` bytes (request line to the empty line), padded by one
    header (or by headers of `header_bytes` each)."""
    base = b"GET /ping HTTP/1.1\r\nHost: x\r\n"
    pad = size - len(base) - 2
    lines = []
    chunk = header_bytes or pad
    while pad > 0:
        take = min(chunk, pad)
        if pad - take and pad - take < 8:  # keep the last line long enough for "Xn: v\r\n"
            take = pad - 8
        name = b"X-%d" % len(lines)
        lines.append(name + b": " + b"a" * (take - len(name) - 4) + b"\r\n")
        pad -= take
    head = base + b"".join(lines) + b"\r\n"
    assert len(head) == size
    return head


def chunked(body: bytes, piece: int, path: bytes = b"/ping") -> bytes:
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + piece]), body[i:i + piece])
                      for i in range(0, len(body), piece))
    return b"POST %s HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n%s0\r\n\r\n" % (path, chunks)


# -- the head limit -----------------------------------------------------------------------------

def test_a_100_kb_header_in_one_read_is_431():
    answered, transport, handler = feed(b"GET /ping HTTP/1.1\r\nX: " + b"a" * 100_000 +
                                        b"\r\n\r\n")
    assert answered == [431] and transport.closed and handler.requests == []
    assert json.loads(transport.data.split(b"\r\n\r\n", 1)[1])["ErrorCode"] == "HeaderTooLarge"


@pytest.mark.parametrize("size,expected", [(MAX_HEAD_BYTES, 200), (MAX_HEAD_BYTES + 1, 431)])
def test_the_head_limit_is_the_same_wherever_the_head_is_split(size, expected):
    head = head_of_size(size)
    assert feed(head)[0] == [expected]
    for cut in range(MAX_HEAD_BYTES - 70, size):  # two reads, split around the limit
        assert feed(head, [cut])[0] == [expected], cut
    for cut in range(1, 200, 7):  # and near the start, and in three reads
        assert feed(head, [cut])[0] == [expected], cut
        assert feed(head, [cut, size - cut])[0] == [expected], cut


@pytest.mark.parametrize("size,expected", [(MAX_HEAD_BYTES, 200), (MAX_HEAD_BYTES + 1, 431)])
def test_the_head_limit_holds_byte_by_byte(size, expected):
    head = head_of_size(size, header_bytes=200)
    assert feed(head, range(1, size))[0] == [expected]


@pytest.mark.parametrize("size,expected", [(MAX_HEAD_BYTES, 200), (MAX_HEAD_BYTES + 1, 431)])
def test_the_head_limit_holds_for_a_pipelined_head(size, expected):
    first = b"GET /ping HTTP/1.1\r\n\r\n"
    assert feed(first + head_of_size(size))[0] == [200, expected]
    assert feed(first + head_of_size(size), [len(first) + 100])[0] == [200, expected]


def test_whitespace_padding_counts_towards_the_head():
    padded = b"GET /ping HTTP/1.1\r\nX:" + b" " * MAX_HEAD_BYTES + b"a\r\n\r\n"
    assert feed(padded)[0] == [431]
    assert feed(padded, range(1000, len(padded), 1000))[0] == [431]


# -- framing: request smuggling, chunk sizes, repeated fields -----------------------------------

@pytest.mark.parametrize("size", [b"0x10", b"+1", b"1_0", b" 1", b"-1", b"1 ", b"g"])
def test_malformed_chunk_sizes_are_400(size):
    request = (b"POST /ping HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + size + b"\r\n" +
               b"a" * 16 + b"\r\n0\r\n\r\n")
    answered, transport, handler = feed(request)
    assert answered == [400] and transport.closed and handler.requests == []


@pytest.mark.parametrize("framing", [
    b"Content-Length: 3\r\nContent-Length: 3",
    b"Content-Length: 3\r\nContent-Length: 4",
    b"Content-Length: 3\r\nTransfer-Encoding: chunked",
    b"Transfer-Encoding: chunked\r\nContent-Length: 3",
    b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
    b"Content-Length: 3, 3",
])
def test_ambiguous_body_framing_is_400(framing):
    request = b"POST /ping HTTP/1.1\r\n" + framing + b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    answered, transport, handler = feed(request)
    assert answered == [400] and transport.closed and handler.requests == []


@pytest.mark.parametrize("name", [b"Content-Type", b"X-Amzn-SageMaker-Custom-Attributes",
                                  b"X-Amzn-SageMaker-Target-Variant", b"Host", b"Expect"])
def test_a_repeated_field_the_endpoint_reads_as_one_value_is_400(name):
    request = b"POST /ping HTTP/1.1\r\n%s: a\r\n%s: b\r\nContent-Length: 0\r\n\r\n" % (name, name)
    answered, transport, handler = feed(request)
    assert answered == [400] and handler.requests == []
    assert name.lower() in json.loads(transport.data.split(b"\r\n\r\n", 1)[1])["Message"].encode()


def test_other_repeated_fields_are_joined_in_order():
    request = (b"POST /ping HTTP/1.1\r\nAccept: text/csv\r\nX-Other: 1 \r\naccept: application/json"
               b"\r\nX-Other: 2\r\nContent-Length: 0\r\n\r\n")
    answered, _, handler = feed(request)
    assert answered == [200]
    headers = handler.requests[0][2]
    assert headers[b"accept"] == b"text/csv, application/json"
    assert headers[b"x-other"] == b"1, 2"


# -- bodies -------------------------------------------------------------------------------------

def test_a_content_length_above_the_limit_is_refused_before_the_body():
    answered, transport, handler = feed(b"POST /ping HTTP/1.1\r\nContent-Length: 1025\r\n"
                                        b"Expect: 100-continue\r\n\r\n")
    assert answered == [413] and transport.closed and handler.requests == []
    assert b"100 Continue" not in transport.data
    assert feed(b"POST /ping HTTP/1.1\r\nContent-Length: 1024\r\n\r\n" + b"a" * 1024)[0] == [200]


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit():
    protocol, transport, handler = connect(1024)
    protocol.data_received(b"POST /ping HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    protocol.data_received(b"400\r\n" + b"a" * 1024 + b"\r\n")  # exactly the limit: fine
    assert transport.data == b"" and protocol.busy
    protocol.data_received(b"1\r\na\r\n")
    assert statuses(transport.data) == [413] and transport.closed and handler.requests == []
    protocol.data_received(b"0\r\n\r\n")  # what the client still sends is not read
    assert statuses(transport.data) == [413]


def test_a_large_chunked_body_in_small_reads_costs_linear_time():
    body = b"x" * (6 * 1024 * 1024)
    stream = chunked(body, 4096)
    cuts = range(4096, len(stream), 4096)  # ~1,540 reads
    started = time.perf_counter()
    answered, _, handler = feed(stream, cuts, max_body=len(body))
    elapsed = time.perf_counter() - started
    assert answered == [200] and handler.requests[0][3] == body
    # The hand-written parser re-parsed the whole partial body on every read: ~3 s here.
    assert elapsed < 1.0, elapsed


# -- requests, read by read ---------------------------------------------------------------------

def test_pipelined_requests_in_one_read_are_answered_in_order():
    requests = (b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc" + chunked(b"defgh", 2, b"/b") +
                b"GET /c HTTP/1.1\r\n\r\nHEAD /d HTTP/1.1\r\nConnection: close\r\n\r\n"
                b"GET /never HTTP/1.1\r\n\r\n")
    answered, transport, handler = feed(requests)
    assert answered == [200, 200, 200, 200] and transport.closed
    assert [(m, t, b) for m, t, _, b in handler.requests] == [
        (b"POST", b"/a", b"abc"), (b"POST", b"/b", b"defgh"), (b"GET", b"/c", b""),
        (b"HEAD", b"/d", b"")]
    assert transport.data.endswith(b"Connection: close\r\n\r\n")  # HEAD: no body


def test_a_request_delivered_byte_by_byte_is_the_same_request():
    request = (b"POST /endpoints/e/invocations?x=1 HTTP/1.1\r\nContent-Type: text/csv\r\n"
               b"X-Amzn-SageMaker-Custom-Attributes: a=b\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3;ext=1\r\n1,2\r\n2\r\n,3\r\n0\r\nTrailer: t\r\n\r\n")
    whole = feed(request)
    split = feed(request, range(1, len(request)))
    assert whole[0] == split[0] == [200]
    assert whole[2].requests == split[2].requests == [(
        b"POST", b"/endpoints/e/invocations?x=1",
        {b"content-type": b"text/csv", b"x-amzn-sagemaker-custom-attributes": b"a=b",
         b"transfer-encoding": b"chunked"}, b"1,2,3")]


def test_100_continue_is_sent_once_and_only_while_the_body_is_awaited():
    head = b"POST /ping HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
    protocol, transport, handler = connect()
    protocol.data_received(head)
    assert transport.data == b"HTTP/1.1 100 Continue\r\n\r\n"
    protocol.data_received(b"ab")
    protocol.data_received(b"cd")
    assert transport.data.count(b"100 Continue") == 1 and statuses(transport.data) == [100, 200]
    assert handler.requests[0][3] == b"abcd"
    assert b"100 Continue" not in feed(head + b"abcd")[1].data  # the body came with the head
    http10 = head.replace(b"HTTP/1.1", b"HTTP/1.0")
    assert b"100 Continue" not in feed(http10, [len(http10)])[1].data


def test_http_1_0_closes_unless_asked_to_keep_alive():
    answered, transport, _ = feed(b"GET /ping HTTP/1.0\r\n\r\nGET /ping HTTP/1.0\r\n\r\n")
    assert answered == [200] and transport.closed and b"Connection: close" in transport.data
    answered, transport, _ = feed(b"GET /ping HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2)
    assert answered == [200, 200] and not transport.closed
    assert transport.data.count(b"Connection: keep-alive\r\n") == 2


@pytest.mark.parametrize("request_bytes,status", [
    (b"GET /ping HTTP/1.2\r\n\r\n", 505),
    (b"GET /ping HTTP/0.9\r\n\r\n", 505),
    (b"POST /ping HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    (b"GET /ping HTTP/1.1\nHost: x\n\n", 400),  # bare LF
    (b"GET /ping HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 400),  # obsolete line folding
    (b"GET /ping HTTP/1.1\r\nX : a\r\n\r\n", 400),
    (b"BREW /ping HTTP/1.1\r\n\r\n", 400),
])
def test_what_llhttp_refuses_gets_the_json_error_and_a_close(request_bytes, status):
    answered, transport, handler = feed(request_bytes)
    assert answered == [status] and transport.closed and handler.requests == []
    error = json.loads(transport.data.split(b"\r\n\r\n", 1)[1])
    assert error["Message"] and f"X-Amzn-ErrorType: {error['ErrorCode']}".encode() in \
        transport.data


def test_a_handler_that_raises_is_a_500_and_the_connection_closes():
    def broken(*_):
        raise RuntimeError("boom")

    protocol = HttpProtocol(broken, ConnectionRegistry())
    transport = Transport()
    protocol.connection_made(transport)
    protocol.data_received(b"GET /ping HTTP/1.1\r\n\r\nGET /ping HTTP/1.1\r\n\r\n")
    assert statuses(transport.data) == [500] and transport.closed


# -- a real server: a large upload does not stall the worker's other clients --------------------

def _upload(port: int, head: bytes, pieces, pause: float, result: dict) -> None:
    """Send `head` then each piece; note how it ended (the status, or the error)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(head)
            for piece in pieces:
                sock.sendall(piece)
                if pause:
                    time.sleep(pause)
        except OSError as exc:  # the server refused the body and closed
            result["send_error"] = type(exc).__name__
        try:
            answer = sock.recv(65536)
            result["status"] = int(answer[9:12]) if answer.startswith(b"HTTP/1.1 ") else None
        except OSError as exc:
            result["recv_error"] = type(exc).__name__


def _small_requests_while(port: int, upload: threading.Thread) -> list[float]:
    """GET /ping on a kept-alive connection until the upload ends: each latency, in seconds."""
    latencies = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        deadline = time.monotonic() + 60
        while (upload.is_alive() or len(latencies) < 50) and time.monotonic() < deadline:
            started = time.perf_counter()
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                data = sock.recv(65536)
                assert data, "the server closed the connection"
                answer += data
            latencies.append(time.perf_counter() - started)
            assert answer.startswith(b"HTTP/1.1 200 OK")
            time.sleep(0.002)
    return latencies


def test_large_uploads_do_not_stall_other_clients_of_the_worker(server_home, tmp_path):
    running = start_server(server_home, "--workers", "1", "--capture-percent", "0",
                           log_dir=tmp_path)
    chunked_head = b"POST /ping HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    tiny = b"10\r\n" + b"a" * 16 + b"\r\n"
    tiny_block = tiny * (65536 // len(tiny))  # 64 KiB on the wire of 16-byte chunks
    large = b"10000\r\n" + b"a" * 65536 + b"\r\n"
    cases = {
        # 200 MB chunked, in 16-byte chunks: refused (413) once it passes 6 MB. The
        # hand-written parser re-parsed the whole partial body on every read: its worst case.
        "chunked 200 MB, 16-byte chunks": (chunked_head, [tiny_block] * 9000, 0.0),
        "chunked 200 MB, 64 KiB chunks": (chunked_head, [large] * 3200, 0.0),
        # A legal 6 MB body sent slowly (64 KiB of 16-byte chunks every 5 ms); POST /ping
        # answers 405 once the whole body is in: the time is the protocol's, not scoring's.
        "chunked 6 MB, 16-byte chunks, slow": (chunked_head, [tiny_block] * 130 + [b"0\r\n\r\n"],
                                               0.005),
        # 200 MB announced by Content-Length: refused before the body is read.
        "Content-Length 200 MB": (b"POST /ping HTTP/1.1\r\nContent-Length: 209715200\r\n\r\n",
                                  [b"a" * 65536] * 3200, 0.0),
    }
    try:
        for name, (head, pieces, pause) in cases.items():
            result: dict = {}
            upload = threading.Thread(target=_upload, args=(running.port, head, pieces, pause,
                                                            result))
            upload.start()
            latencies = _small_requests_while(running.port, upload)
            upload.join(timeout=60)
            assert not upload.is_alive(), name
            expected = 405 if "6 MB" in name else 413
            assert result.get("status") in (expected, None), (name, result)
            if expected == 405:
                assert result["status"] == 405, (name, result)
            # Bound for a loaded 2-core CI machine; measured figures: docs/performance.md
            # (the hand-written parser stalled this client for up to 565 ms).
            assert max(latencies) < 0.2, (name, sorted(latencies)[-5:])
        assert running.request("GET", "/ping")[0] == 200
    finally:
        assert running.stop() == 0
