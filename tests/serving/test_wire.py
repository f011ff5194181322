"""The HTTP/1.1 protocol in-process, with a recording transport (no sockets)."""

from __future__ import annotations

import json

import pytest

from mlops_kit.serving.router import ScoringRouter
from mlops_kit.serving.wire import ConnectionRegistry, EndpointApp, HttpProtocol

from .conftest import ENDPOINT, Transport

PATH = f"/endpoints/{ENDPOINT}/invocations".encode()





@pytest.fixture()
def connect(home):
    app = EndpointApp(ScoringRouter(home, ENDPOINT))
    registry = ConnectionRegistry()

    def open_connection(max_body: int = 1024):
        protocol = HttpProtocol(app.handle, registry, max_body)
        transport = Transport()
        protocol.connection_made(transport)
        return protocol, transport

    open_connection.registry = registry
    return open_connection


def post(body: bytes, *headers: bytes, version: bytes = b"HTTP/1.1") -> bytes:
    head = [b"POST %s %s" % (PATH, version), b"Content-Type: text/csv",
            b"Content-Length: %d" % len(body), *headers]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def test_a_request_split_anywhere_gives_the_same_answer(connect, sample_rows):
    request = post(sample_rows[0][0].encode())
    protocol, whole = connect()
    protocol.data_received(request)
    for cut in (1, 20, len(request) - 5):
        protocol, transport = connect()
        protocol.data_received(request[:cut])
        assert transport.data == b""
        protocol.data_received(request[cut:])
        assert transport.data.split(b"\r\n\r\n")[1] == whole.data.split(b"\r\n\r\n")[1]
        assert not transport.closed


def test_http_1_0_closes_and_expect_continue_is_answered(connect, sample_rows):
    body = sample_rows[0][0].encode()
    protocol, transport = connect()
    protocol.data_received(post(body, version=b"HTTP/1.0"))
    assert b"Connection: close" in transport.data and transport.closed
    protocol, transport = connect()
    request = post(body, b"Expect: 100-continue")
    protocol.data_received(request[:-len(body)])
    assert transport.data == b"HTTP/1.1 100 Continue\r\n\r\n"
    protocol.data_received(body)
    assert b"200 OK" in transport.data


@pytest.mark.parametrize("request_bytes,status", [
    (b"GARBAGE\r\n\r\n", b"400"),
    (b"POST / HTTP/2.0\r\n\r\n", b"505"),
    (b"POST %s HTTP/1.1\r\nContent-Length: 5000\r\n\r\n" % PATH, b"413"),
    (b"POST %s HTTP/1.1\r\nContent-Length: x\r\n\r\n" % PATH, b"400"),
    (b"POST %s HTTP/1.1\r\nBad Header\r\n\r\n" % PATH, b"400"),
    (b"POST %s HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n" % PATH, b"501"),
    (b"GET /ping HTTP/1.1\r\nX: " + b"a" * 70_000, b"431"),
])
def test_malformed_requests_are_refused_and_the_connection_closed(connect, request_bytes,
                                                                  status):
    protocol, transport = connect()
    protocol.data_received(request_bytes)
    assert transport.data.startswith(b"HTTP/1.1 " + status) and transport.closed
    assert json.loads(transport.data.split(b"\r\n\r\n", 1)[1])["Message"]


def test_head_ping_has_no_body(connect):
    protocol, transport = connect()
    protocol.data_received(b"HEAD /ping HTTP/1.1\r\n\r\n")
    head, body = transport.data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK") and body == b"" and b"Content-Length: " in head


def test_draining_closes_idle_connections_and_answers_pending_ones(connect, sample_rows):
    body = sample_rows[0][0].encode()
    idle, idle_transport = connect()
    busy, busy_transport = connect()
    busy.data_received(post(body)[:30])
    connect.registry.drain()
    assert idle_transport.closed and not busy_transport.closed
    busy.data_received(post(body)[30:])
    assert b"200 OK" in busy_transport.data and b"Connection: close" in busy_transport.data
    assert busy_transport.closed


def test_slow_and_idle_connections_expire(connect):
    slow, slow_transport = connect()
    slow.data_received(b"POST / HTTP/1.1\r\n")
    idle, idle_transport = connect()
    slow.last_active -= 31
    idle.last_active -= 61
    connect.registry.sweep()
    assert slow_transport.data.startswith(b"HTTP/1.1 408") and slow_transport.closed
    assert idle_transport.closed


def test_pipelined_invocations_in_one_read_or_byte_by_byte_score_the_same(connect, sample_rows):
    lines = [line.encode() for line in sample_rows[0][:3]]
    stream = b"".join(post(line) for line in lines)
    whole, whole_transport = connect()
    whole.data_received(stream)
    split, split_transport = connect()
    for i in range(len(stream)):
        split.data_received(stream[i:i + 1])
    scores = [part.split(b"\r\n\r\n", 1)[1]
              for part in whole_transport.data.split(b"HTTP/1.1 ")[1:]]
    assert len(scores) == 3 and whole_transport.data.count(b"200 OK") == 3
    assert [s.split(b"\r\n\r\n", 1)[1] for s in split_transport.data.split(b"HTTP/1.1 ")[1:]] \
        == scores
    assert not whole_transport.closed and not split_transport.closed


def test_a_repeated_content_type_is_refused_before_scoring(connect, sample_rows):
    protocol, transport = connect()
    protocol.data_received(post(sample_rows[0][0].encode(), b"Content-Type: application/json"))
    assert transport.data.startswith(b"HTTP/1.1 400") and transport.closed
    assert "content-type" in json.loads(transport.data.split(b"\r\n\r\n", 1)[1])["Message"]
