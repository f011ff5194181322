"""The local endpoint as a real process: the SageMaker runtime contract, live weight flips,
capture durability across a worker crash, graceful shutdown."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import threading
import time
from collections import Counter

import pytest

from mlops_kit.serving.capture import read_capture
from mlops_kit.endpoint_state import load_state, save_state
from mlops_pipelines.steps import inference

from .conftest import ENDPOINT, client_pool, start_server, wait_for_workers, write_state

VARIANT_HEADER = "X-Amzn-Invoked-Production-Variant"


def test_ping_and_invocations_speak_the_runtime_contract(server, sample_rows, model_versions):
    lines, objects, _ = sample_rows
    status, _, body = server.request("GET", "/ping")
    assert status == 200 and json.loads(body)["variants"] == {"v3": 1.0, "v2": 0.0, "v1": 0.0}
    model = inference.model_fn(str(model_versions[3]))
    expected = inference.predict_fn(inference.input_fn("\n".join(lines[:5]), "text/csv"), model)

    status, headers, body = server.invoke(lines[0])
    assert (status, headers["Content-Type"], headers[VARIANT_HEADER]) == (200, "text/csv", "v3")
    assert float(body) == pytest.approx(float(expected[0]), rel=1e-6)

    status, _, body = server.invoke("\n".join(lines[:5]) + "\n")
    assert [float(x) for x in body.decode().split("\n")] == pytest.approx(expected.tolist(),
                                                                         rel=1e-6)
    status, headers, body = server.invoke(json.dumps({"instances": objects[:5]}),
                                          "application/json", Accept="application/json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert [p["score"] for p in json.loads(body)["predictions"]] == \
        pytest.approx(expected.tolist(), rel=1e-6)
    status, headers, _ = server.invoke(lines[0], **{"X-Amzn-SageMaker-Target-Variant": "v1"})
    assert (status, headers[VARIANT_HEADER]) == (200, "v1")


@pytest.mark.parametrize("body,content_type,extra,original_status,reason", [
    ("1,2,3", "text/csv", {}, 400, "expected 16 values"),
    ("abc" + ",1" * 15, "text/csv", {}, 400, "must be numeric"),
    ("{bad json", "application/json", {}, 400, "not valid JSON"),
    ("AAAA", "application/x-npy", {}, 415, "unsupported content type"),
    (None, "text/csv", {"Accept": "image/png"}, 406, "unsupported accept type"),
])
def test_a_bad_payload_is_a_model_error_with_the_handlers_status_and_reason(
        server, sample_rows, body, content_type, extra, original_status, reason):
    generation = json.loads(server.request("GET", "/ping")[2])["generation"]
    got, headers, payload = server.invoke(body or sample_rows[0][0], content_type, **extra)
    error = json.loads(payload)
    assert (got, headers["X-Amzn-ErrorType"], error["ErrorCode"]) == (424, "ModelError",
                                                                      "ModelError")
    assert error["OriginalStatusCode"] == original_status
    assert reason in error["OriginalMessage"] and error["OriginalMessage"] in error["Message"]
    assert headers["Content-Type"] == "application/json" and headers["x-amzn-RequestId"]
    assert VARIANT_HEADER not in headers
    assert json.loads(server.request("GET", "/ping")[2])["generation"] == generation


def test_an_unknown_pinned_variant_is_a_400_validation_error(server, sample_rows):
    got, headers, payload = server.invoke(sample_rows[0][0], **{
        "X-Amzn-SageMaker-Target-Variant": "v9"})
    assert (got, headers["X-Amzn-ErrorType"]) == (400, "ValidationError")
    assert "'v9' is not served" in json.loads(payload)["Message"]
    assert VARIANT_HEADER not in headers


def test_unknown_endpoint_and_routes(server, sample_rows):
    status, headers, body = server.request("POST", "/endpoints/other/invocations",
                                           sample_rows[0][0], {"Content-Type": "text/csv"})
    assert (status, headers["X-Amzn-ErrorType"]) == (400, "ValidationError")
    assert json.loads(body)["Message"].startswith(
        "Endpoint other of account 000000000000 not found.")
    assert server.request("GET", "/nope")[0] == 404
    assert server.request("GET", server.path)[0] == 405


def test_every_response_has_its_own_request_id(server, sample_rows):
    seen = [server.invoke(sample_rows[0][0])[1]["x-amzn-RequestId"] for _ in range(3)]
    seen += [server.request("GET", "/ping")[1]["x-amzn-RequestId"],
             server.invoke("1,2")[1]["x-amzn-RequestId"]]
    assert len(set(seen)) == len(seen)
    assert all(re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", rid) for rid in seen)


def test_keep_alive_pipelining_and_chunked_bodies(server, sample_rows):
    line = sample_rows[0][0].encode()
    request = (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: %d\r\n"
               b"\r\n%s" % (server.path.encode(), len(line), line))
    chunked = (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
               b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n%x\r\n%s\r\n%x\r\n%s\r\n"
               b"0\r\n\r\n" % (server.path.encode(), 10, line[:10], len(line) - 10, line[10:]))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request + request[:40])  # two pipelined requests, the second split
        time.sleep(0.05)
        sock.sendall(request[40:] + chunked)
        received = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            received += data
    assert received.count(b"HTTP/1.1 200 OK") == 3
    assert received.count(b"X-Amzn-Invoked-Production-Variant: v3") == 3


def test_weight_flip_and_new_variant_set_under_load_drop_nothing(server, server_home,
                                                                model_versions, sample_rows):
    lines = [line.encode() for line in sample_rows[0][:50]]
    stop = threading.Event()
    results: list[tuple[float, int, str]] = []
    lock = threading.Lock()

    def client(seed: int) -> None:
        connection = server.connection(timeout=10)
        mine = []
        i = seed
        while not stop.is_set():
            connection.request("POST", server.path, body=lines[i % len(lines)],
                               headers={"Content-Type": "text/csv"})
            response = connection.getresponse()
            response.read()
            mine.append((time.monotonic(), response.status,
                         response.getheader(VARIANT_HEADER) or ""))
            i += 1
        connection.close()
        with lock:
            results.extend(mine)

    try:
        with client_pool(client, 8, stop) as futures:
            time.sleep(0.4)
            flipped = load_state(server_home, ENDPOINT).with_weights({"v3": 0.0, "v2": 1.0})
            save_state(server_home, flipped)
            flip_time = time.monotonic()
            time.sleep(0.4)
            # A new variant set: v1 becomes champion, v2 stays warm, v3 leaves.
            new_set_time = time.monotonic()
            new_set = write_state(server_home, model_versions, {1: 1.0, 2: 0.0})
            server.wait_generation(new_set.generation)
            swapped_time = time.monotonic()
            time.sleep(0.3)
        for future in futures:
            future.result(timeout=30)
    finally:
        write_state(server_home, model_versions, {3: 1.0, 2: 0.0, 1: 0.0})
    assert len(results) > 200
    assert Counter(status for _, status, _ in results) == {200: len(results)}
    before = {v for t, _, v in results if t < flip_time - 0.05}
    between = Counter(v for t, _, v in results if flip_time + 0.05 < t < new_set_time)
    after = {v for t, _, v in results if t > swapped_time + 0.05}
    assert before == {"v3"}
    assert set(between) == {"v2"}  # the weight flip applies at once, on every worker
    assert after == {"v1"}


def test_a_worker_crash_loses_no_capture_of_an_answered_request(tmp_path, model_versions,
                                                                sample_rows):
    home = tmp_path / "home"
    write_state(home, model_versions, {3: 0.5, 2: 0.5, 1: 0.0})
    running = start_server(home, "--capture-percent", "100", log_dir=tmp_path)
    lines = [line.encode() for line in sample_rows[0][:50]]
    answered: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def client(seed: int) -> None:
        connection = running.connection(timeout=5)
        counter = 0
        while not stop.is_set():
            inference_id = f"c{seed}-{counter}"
            counter += 1
            try:
                connection.request("POST", running.path, body=lines[counter % len(lines)],
                                   headers={"Content-Type": "text/csv",
                                            "X-Amzn-SageMaker-Inference-Id": inference_id})
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = running.connection(timeout=5)
                time.sleep(0.01)
                continue
            if response.status == 200:
                with lock:
                    answered.add(inference_id)
        connection.close()

    try:
        with client_pool(client, 4, stop) as futures:
            workers = wait_for_workers(running, 2)
            time.sleep(0.5)
            os.kill(workers[0], signal.SIGKILL)
            wait_for_workers(running, 2)
            time.sleep(0.5)
            assert running.stop() == 0  # SIGTERM while the clients are still sending
        for future in futures:
            future.result(timeout=30)
    finally:
        if running.process.poll() is None:
            running.stop()
    records, skipped = read_capture(home / "capture")
    captured = {r.inference_id for r in records}
    assert len(answered) > 100
    assert answered <= captured
    assert skipped == 0
    assert {r.variant for r in records} == {"v3", "v2"}
    assert all(r.endpoint == ENDPOINT and r.input.encoding == "CSV" for r in records)
    assert "restarting" in running.logs()


def test_sigterm_finishes_the_request_in_flight(tmp_path, model_versions, sample_rows):
    home = tmp_path / "home"
    write_state(home, model_versions, {3: 1.0})
    running = start_server(home, "--capture-percent", "0", log_dir=tmp_path)
    line = sample_rows[0][0].encode()
    try:
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
            sock.sendall(b"POST %s HTTP/1.1\r\nContent-Type: text/csv\r\nContent-Length: %d\r\n"
                         b"\r\n%s" % (running.path.encode(), len(line), line[:10]))
            time.sleep(0.3)  # the request is in flight: head received, body incomplete
            running.process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            sock.sendall(line[10:])
            response = b""
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                response += data
        assert response.startswith(b"HTTP/1.1 200 OK")
        assert b"Connection: close" in response
        assert running.process.wait(timeout=20) == 0
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", running.port), timeout=2)
    finally:
        if running.process.poll() is None:
            running.stop()
