"""Fault and abuse cases of the local endpoint (issue [E]), against a real `mlops serve`:

* a rollback under sustained keep-alive load, driven the way the product drives it (an alarm
  event through the local control plane to the rollback controller), then a manual roll-forward
  and a promotion to a new variant set: no request fails, every score is the serving variant's,
  and each client sees the champion change once per shift, never back;
* a restart of the endpoint mid-run (SIGTERM, start again on the same port) and a SIGKILL of a
  worker, with capture at 100 %: every answered request is captured exactly once, with its
  variant, input and score, and the capture files parse cleanly. A send on a kept-alive
  connection idle for the drain's idle limit or longer, which the draining worker may already
  have closed, is a stale keep-alive: resent on a new connection and counted apart, and shown
  not to have reached the server.
"""

from __future__ import annotations

import ast
import http.client
import importlib.util
import json
import math
import os
import random
import signal
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

from mlops_kit.config import LocalSettings
from mlops_kit.core.rotation import VariantWeight
from mlops_kit.endpoints import ModelSource
from mlops_kit.deploy.local_endpoint import LocalEndpoints
from mlops_kit.local.control_plane import publish, rollback_controller, single_writer
from mlops_kit.monitoring.alarm_events import alarm_state_change_event
from mlops_kit.serving.capture import iter_capture
from mlops_kit.endpoint_state import load_state

from .conftest import ENDPOINT, RunningServer, start_server, worker_pids, write_state

VARIANT_HEADER = "X-Amzn-Invoked-Production-Variant"
CLIENTS = 4
SCORE_TOLERANCE = 1e-6   # CSV answers carry 8 significant digits
DISTINCT_BY = 1e-3       # rows kept only if every two variants differ by more than this


# -- payloads and expected scores -----------------------------------------------------------------
@dataclass(frozen=True)
class Payload:
    body: bytes
    content_type: str
    accept: str
    rows: tuple[int, ...]


def payloads(sample_rows, rows: list[int]) -> list[Payload]:
    """CSV and JSON requests (rows as values or as {feature: value}) of one and two rows,
    answered as CSV or JSON."""
    lines, objects, _ = sample_rows
    made = []
    for i, row in enumerate(rows):
        other = rows[(i + 1) % len(rows)]
        made += [
            Payload(lines[row].encode(), "text/csv", "text/csv", (row,)),
            Payload(json.dumps([objects[row]]).encode(), "application/json", "application/json",
                    (row,)),
            Payload(json.dumps(list(objects[row].values())).encode(), "application/json",
                    "text/csv", (row,)),
            Payload(f"{lines[row]}\n{lines[other]}".encode(), "text/csv", "application/json",
                    (row, other)),
            Payload(json.dumps({"instances": [objects[row], objects[other]]}).encode(),
                    "application/json", "text/csv", (row, other)),
        ]
    return made


def parse_scores(body: bytes, content_type: str) -> tuple[float, ...]:
    if content_type.startswith("application/json"):
        return tuple(float(p["score"]) for p in json.loads(body)["predictions"])
    return tuple(float(line) for line in body.decode().splitlines())


def handler_scores(model_dirs: dict[str, Path], sample_rows) -> dict[str, dict[int, float]]:
    """Each variant's score of the first 100 sample rows by the container's own handlers
    (`model_fn`, `input_fn`, `predict_fn`), in this process: the oracle the answers are held to."""
    from mlops_pipelines.steps import inference

    lines = sample_rows[0][:100]
    scores = {}
    for variant, model_dir in model_dirs.items():
        model = inference.model_fn(str(model_dir))
        predicted = inference.predict_fn(inference.input_fn("\n".join(lines), "text/csv"), model)
        scores[variant] = {row: float(score) for row, score in enumerate(predicted)}
    return scores


def distinct_rows(scores: dict[str, dict[int, float]], wanted: int = 12) -> list[int]:
    """Rows whose score tells every variant apart, so a score names the model that made it."""
    names = list(scores)
    rows = [row for row in scores[names[0]]
            if all(abs(scores[a][row] - scores[b][row]) > DISTINCT_BY
                   for i, a in enumerate(names) for b in names[i + 1:])]
    assert len(rows) >= wanted, f"only {len(rows)} rows tell the variants apart"
    return rows[:wanted]


def matches(scores: tuple[float, ...], expected: tuple[float, ...]) -> bool:
    return len(scores) == len(expected) and all(
        math.isclose(s, e, rel_tol=SCORE_TOLERANCE, abs_tol=1e-9) for s, e in zip(scores, expected))


@pytest.fixture(scope="module")
def fourth_version(trained, model_versions):
    """v4 for a promotion: the trained booster cut at 5 rounds (v1, v2, v3 have 10, 25 and all
    of its rounds), so its scores differ from the others'."""
    import xgboost as xgb

    from mlops_pipelines.steps import inference, train

    model_dir, _ = trained
    spec_text = (model_dir / inference.SPEC_FILE).read_text()
    spec = inference.FeatureSpec.from_dict(json.loads(spec_text))
    booster = xgb.Booster()
    booster.load_model(str(model_dir / inference.MODEL_FILE))
    target = model_versions[3].parent / "v4"
    if not target.exists():
        train.save_model(booster[:5], spec, target)
    return target


def local_settings(home: Path) -> LocalSettings:
    return LocalSettings(home=home, model_group="fraud-detector", use_case="fault-suite",
                         owner="fault-suite", endpoint_name=ENDPOINT)


def record_healthy_probes(home: Path, variants: list[str]) -> None:
    """The local monitor's probe verdicts (its file format): the rollback policy only trusts a
    fallback whose last probe passed."""
    path = home / "probes" / f"{ENDPOINT}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"at": datetime.now(timezone.utc).isoformat(),
                                "variants": {v: {"ok": True} for v in variants}}))


def feature_drift_alarm() -> dict:
    """The event the local alarm evaluator (and CloudWatch) emits when feature drift alarms."""
    return alarm_state_change_event(
        f"{ENDPOINT}-feature-drift", "ALARM", "OK",
        reason="Threshold Crossed: 2 out of the last 3 datapoints were greater than 0.25",
        namespace="MLOpsKit/Monitoring", metric="FeaturePSIMax",
        dimensions={"EndpointName": ENDPOINT}, statistic="Maximum", period=300,
        threshold=0.25, recent_datapoints=[0.61, 0.74], at=datetime.now(timezone.utc))


# -- 1. rollback, roll-forward and promotion under sustained load --------------------------------
@dataclass
class Answer:
    sent: float
    received: float
    status: int
    variant: str
    payload: Payload
    scores: tuple[float, ...]


def test_rollback_under_sustained_load_fails_no_request(tmp_path, model_versions, fourth_version,
                                                        sample_rows):
    home = tmp_path / "home"
    write_state(home, model_versions, {3: 1.0, 2: 0.0, 1: 0.0})
    record_healthy_probes(home, ["v3", "v2", "v1"])
    settings = local_settings(home)
    expected = handler_scores({"v1": model_versions[1], "v2": model_versions[2],
                               "v3": model_versions[3], "v4": fourth_version}, sample_rows)
    rows = distinct_rows(expected)
    running = start_server(home, "--capture-percent", "0", log_dir=tmp_path)
    answers: list[list[Answer]] = [[] for _ in range(CLIENTS)]
    failures: list[str] = []
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        mix = payloads(sample_rows, rows)

        def client(index: int) -> None:
            # One keep-alive connection per client for the whole run: a reconnection would
            # hide a connection the server dropped, so any exception is a failure.
            connection = running.connection(timeout=10)
            mine = answers[index]
            i = index
            try:
                while not stop.is_set():
                    payload = mix[i % len(mix)]
                    i += 1
                    sent = time.monotonic()
                    connection.request("POST", running.path, body=payload.body,
                                       headers={"Content-Type": payload.content_type,
                                                "Accept": payload.accept})
                    response = connection.getresponse()
                    body = response.read()
                    received = time.monotonic()
                    if response.status != 200:
                        failures.append(f"client {index}: {response.status} {body[:200]!r}")
                        continue
                    kind = response.getheader("Content-Type") or ""
                    mine.append(Answer(sent, received, response.status,
                                       response.getheader(VARIANT_HEADER) or "", payload,
                                       parse_scores(body, kind)))
            except Exception as exc:  # a reset, a timeout, a malformed answer: all failures
                failures.append(f"client {index}: {type(exc).__name__}: {exc}")
            finally:
                connection.close()

        def sustain(since: float, seconds: float, each: int, variant: str | None = None) -> None:
            """Keep the load on for `seconds`, and until every client has `each` answers sent
            after `since` (of `variant` if given): each phase is seen by every client, however
            slow the machine."""
            deadline = time.monotonic() + 60
            time.sleep(seconds)
            while not all(sum(1 for a in mine[-each:] if a.sent > since
                              and (variant is None or a.variant == variant)) >= each
                          for mine in answers):
                assert time.monotonic() < deadline and not failures, (failures, running.logs())
                time.sleep(0.05)

        threads = [threading.Thread(target=client, args=(n,), daemon=True)
                   for n in range(CLIENTS)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        sustain(started, 1.0, 300)

        # The alarm fires: the local control plane hands it to the rollback controller.
        alarm_at = time.monotonic()
        outcomes = publish(settings, feature_drift_alarm())
        rolled_back_at = time.monotonic()
        assert [(o.action, o.from_version, o.to_version) for o in outcomes] == \
            [("rolled_back", 3, 2)], outcomes
        sustain(rolled_back_at, 1.0, 300)

        # On-call sends the traffic back to v3 (what `mlops rollforward --to 3` runs).
        forward_at = time.monotonic()
        with single_writer(settings):
            forward = rollback_controller(settings).rollforward(
                ENDPOINT, 3, actor="on-call", reason="drift explained: seasonal")
        forwarded_at = time.monotonic()
        assert (forward.action, forward.from_version, forward.to_version) == \
            ("rolled_forward", 2, 3), forward
        sustain(forwarded_at, 1.0, 300)

        # A promotion: a new variant set (v4 champion, v3 and v2 warm, v1 retired), which the
        # workers load in the background while v3 keeps serving.
        promote_at = time.monotonic()
        LocalEndpoints(home).deploy(
            ENDPOINT,
            [VariantWeight("v4", 4, 1.0), VariantWeight("v3", 3, 0.0), VariantWeight("v2", 2, 0.0)],
            {4: ModelSource(4, str(fourth_version)), 3: ModelSource(3, str(model_versions[3])),
             2: ModelSource(2, str(model_versions[2]))})
        sustain(promote_at, 0.5, 100, "v4")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        stopped = time.monotonic()
        exit_code = running.stop()

    assert exit_code == 0
    assert failures == []
    everything = [a for mine in answers for a in mine]
    print(f"\n{len(everything)} requests in {stopped - started:.1f} s from {CLIENTS} clients, "
          f"{Counter(a.variant for a in everything)}, 0 failed")
    # Every answer is a valid score, and the very score of the variant its header names.
    wrong = [a for a in everything
             if not matches(a.scores, tuple(expected[a.variant][r] for r in a.payload.rows))]
    assert wrong == []
    # Weight changes apply to the next request on every worker: answered before the alarm →
    # v3; sent after the controller returned → the fallback, v2, until the roll-forward.
    assert {a.variant for a in everything if a.received < alarm_at} == {"v3"}
    assert {a.variant for a in everything
            if rolled_back_at < a.sent and a.received < forward_at} == {"v2"}
    assert {a.variant for a in everything
            if forwarded_at < a.sent and a.received < promote_at} == {"v3"}
    # Each client (one connection, so one worker) sees each shift once and never goes back.
    for index, mine in enumerate(answers):
        sequence = [a.variant for a in mine]
        changes = [v for n, v in enumerate(sequence) if n == 0 or v != sequence[n - 1]]
        assert changes == ["v3", "v2", "v3", "v4"], (index, changes)
    history = rollback_controller(settings).registry.deployments(ENDPOINT)
    assert [(d.kind, d.previous_version, d.version) for d in history] == \
        [("rollback", 3, 2), ("rollforward", 2, 3)]
    assert load_state(home, ENDPOINT).generation == 4


# -- 2. restart and worker crash with capture at 100 % --------------------------------------------
def free_port() -> int:
    """A free port below the ephemeral range, so no client socket of this machine takes it
    between the two servers' lives."""
    generator = random.Random()
    for _ in range(200):
        port = generator.randrange(20000, 30000)
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port between 20000 and 30000")


def answers_ping(server: RunningServer) -> bool:
    try:
        return server.request("GET", "/ping", timeout=5)[0] == 200
    except (OSError, http.client.HTTPException):
        # A connection handed to the worker just as it died is reset: the crash's cost.
        return False


def drain_idle_seconds() -> float:
    """`worker.DRAIN_IDLE_SECONDS`, read from the source: importing the worker module would hide
    pandas and scikit-learn from this whole test process (see its `_lean_imports`)."""
    source = Path(importlib.util.find_spec("mlops_kit.serving.worker").origin).read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == \
                ["DRAIN_IDLE_SECONDS"]:
            return float(ast.literal_eval(node.value))
    raise AssertionError("DRAIN_IDLE_SECONDS not found in mlops_kit/serving/worker.py")


STALE = "stale keep-alive"


class TimedConnection(http.client.HTTPConnection):
    """Notes when a request's first bytes go to the socket (`first_send_at`, reset by the
    caller before each request), so the connection's idle time before the send is known."""
    first_send_at: float | None = None

    def send(self, data) -> None:
        if self.first_send_at is None:
            self.first_send_at = time.monotonic()
        super().send(data)


@dataclass
class Sent:
    inference_id: str
    payload: Payload
    at: float
    status: int | None = None
    variant: str = ""
    body: bytes = b""
    error: str = ""
    idle: tuple[float, float] | None = None
    """For a stale keep-alive: seconds from the previous request's send, and from its answer,
    to this send on the same connection."""


def test_restart_and_worker_crash_lose_no_captured_record(tmp_path, model_versions, sample_rows):
    home = tmp_path / "home"
    write_state(home, model_versions, {3: 0.5, 2: 0.5, 1: 0.0})  # two variants take traffic
    port = free_port()
    serve_args = ("--port", str(port), "--capture-percent", "100")
    expected = handler_scores({"v3": model_versions[3], "v2": model_versions[2]}, sample_rows)
    mix = payloads(sample_rows, distinct_rows(expected))
    first = start_server(home, *serve_args, log_dir=tmp_path)
    assert first.port == port
    second: RunningServer | None = None
    idle_limit = drain_idle_seconds()
    sent: list[list[Sent]] = [[] for _ in range(CLIENTS)]
    refused = Counter()
    client_errors: list[str] = []
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        def client(index: int) -> None:
            connection: TimedConnection | None = None
            mine = sent[index]
            counter = 0
            # The previous exchange on `connection`: when its request went out, when its
            # answer was read (None: no kept-alive connection to reuse).
            previous: tuple[float, float] | None = None
            try:
                while not stop.is_set():
                    payload = mix[(index + counter) % len(mix)]
                    request = Sent(f"c{index}-{counter}", payload, time.monotonic())
                    counter += 1
                    mine.append(request)
                    while True:
                        if connection is None:
                            connection = TimedConnection("127.0.0.1", port, timeout=15)
                        # http.client drops the socket after a "Connection: close" answer.
                        kept_alive = previous if connection.sock is not None else None
                        connection.first_send_at = None
                        try:
                            connection.request("POST", first.path, body=payload.body, headers={
                                "Content-Type": payload.content_type, "Accept": payload.accept,
                                "X-Amzn-SageMaker-Inference-Id": request.inference_id})
                            response = connection.getresponse()
                            request.body = response.read()
                        except ConnectionRefusedError:
                            # Nothing listens (between the two servers): the request was never
                            # accepted, so sending it again cannot duplicate it.
                            connection.close()
                            connection = None
                            refused[index] += 1
                            if stop.is_set():
                                request.error = "refused"
                                return
                            time.sleep(0.02)
                            continue
                        except (OSError, http.client.HTTPException) as exc:
                            sent_at = connection.first_send_at
                            connection.close()
                            connection = None
                            previous = None
                            request.at = time.monotonic()
                            if (isinstance(exc, ConnectionError) and kept_alive is not None
                                    and sent_at is not None
                                    and sent_at - kept_alive[0] >= idle_limit):
                                # A stale keep-alive: the connection had been idle for the
                                # drain's limit (the server's idle clock starts when it gets a
                                # request, so it is measured from the previous send), so the
                                # draining worker may have closed it before this send. Clients
                                # resend such a request on a new connection; it goes again
                                # under a new id, so the check below that the server never
                                # captured this one stays possible.
                                request.error = STALE
                                request.idle = (sent_at - kept_alive[0],
                                                sent_at - kept_alive[1])
                                request = Sent(f"c{index}-{counter}", payload, time.monotonic())
                                counter += 1
                                mine.append(request)
                                continue
                            # Accepted, then cut off without an answer: never retried (the
                            # server may have seen it); the next request gets a new id.
                            request.error = type(exc).__name__
                            break
                        request.status = response.status
                        request.variant = response.getheader(VARIANT_HEADER) or ""
                        previous = (connection.first_send_at, time.monotonic())
                        break
            except Exception as exc:  # a bug in the client itself must fail the test
                client_errors.append(f"client {index}: {type(exc).__name__}: {exc}")
            finally:
                if connection is not None:
                    connection.close()

        def answered_count() -> int:
            return sum(1 for mine in sent for r in mine if r.status == 200)

        def wait_for_more(count: int, timeout: float = 30) -> None:
            target = answered_count() + count
            deadline = time.monotonic() + timeout
            while answered_count() < target:
                assert time.monotonic() < deadline and not client_errors, client_errors
                time.sleep(0.02)

        threads = [threading.Thread(target=client, args=(n,), daemon=True)
                   for n in range(CLIENTS)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        wait_for_more(1500)

        # Graceful restart while the clients keep sending: SIGTERM, then a new server on the
        # same port; the clients only retry what was refused.
        assert first.stop() == 0, first.logs()
        restart_began = time.monotonic()
        second = start_server(home, *serve_args, log_dir=tmp_path)
        restarted_in = time.monotonic() - restart_began
        wait_for_more(1500)

        # A worker of the new server dies mid-request (SIGKILL); the supervisor restarts it.
        workers = worker_pids(second.process.pid)
        assert len(workers) == 2
        killed_at = time.monotonic()
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while "restarting" not in second.logs() or len(worker_pids(second.process.pid)) < 2 \
                or not answers_ping(second):
            assert time.monotonic() < deadline, second.logs()
            time.sleep(0.05)
        wait_for_more(1000)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        exit_codes = [running.stop() for running in (first, second)
                      if running is not None and running.process.poll() is None]
    duration = time.monotonic() - started
    assert exit_codes == [0]  # the second server, stopped gracefully after the worker crash

    assert client_errors == []
    requests = [r for mine in sent for r in mine]
    answered = {r.inference_id: r for r in requests if r.status is not None}
    # "refused": sent at the very end; stale keep-alives were resent under a new id.
    unanswered = {r.inference_id: r for r in requests
                  if r.status is None and r.error not in ("refused", STALE)}
    stale = [r for r in requests if r.error == STALE]
    assert {r.status for r in answered.values()} == {200}

    skipped: list[tuple[Path, int]] = []
    records = list(iter_capture(home / "capture",
                                on_skip=lambda path, line, _reason: skipped.append((path, line))))
    cut_before_kill = sum(1 for r in unanswered.values() if r.at < killed_at)
    print(f"\n{len(answered)} answered, {len(unanswered)} cut off "
          f"({Counter(r.error for r in unanswered.values())}; {cut_before_kill} around the "
          f"restart, {len(unanswered) - cut_before_kill} around the kill), "
          f"{sum(refused.values())} refused "
          f"and resent, {len(stale)} stale keep-alive(s) resent on a new connection"
          + "".join(f" ({r.inference_id}: idle {r.idle[0]:.2f} s since its previous request, "
                    f"{r.idle[1]:.2f} s since its answer, "
                    f"{'before' if r.at < killed_at else 'after'} the kill)" for r in stale)
          + f", {len(records)} captured, {len(skipped)} skipped lines; restart took "
          f"{restarted_in:.1f} s, run {duration:.1f} s")
    # The files parse: a torn line could only be the last one a killed worker wrote.
    for path, line in skipped:
        assert line == len(path.read_bytes().splitlines()), (path, line)
    assert len(skipped) <= 1
    by_id = Counter(r.inference_id for r in records)
    assert [i for i, n in by_id.items() if n > 1] == []          # nothing captured twice
    assert set(by_id) <= set(answered) | set(unanswered)          # nothing invented
    assert [i for i in answered if i not in by_id] == []          # no answered request lost
    assert [r.inference_id for r in stale if r.inference_id in by_id] == []  # never received
    # The record is the exchange the client saw: variant, request and the very response.
    for record in records:
        request = answered.get(record.inference_id)
        if request is None:
            continue
        assert record.variant == request.variant
        assert record.endpoint == ENDPOINT
        assert record.input.content_type == request.payload.content_type
        assert record.input.payload() == request.payload.body
        assert record.output.payload() == request.body
        scores = parse_scores(request.body, record.output.content_type)
        assert matches(scores, tuple(expected[request.variant][r] for r in request.payload.rows))
    # A graceful restart cuts nothing off: every request was answered, or refused (and sent
    # again), or went out on a connection left idle past the drain's limit (a stale keep-alive,
    # which the server never got, sent again on a new connection). A SIGKILL cuts off the requests on the dead worker's connections, and at most
    # the one it was answering can have been captured.
    assert [r for r in unanswered.values() if r.at < killed_at] == []
    assert len([i for i in unanswered if i in by_id]) <= 1
    assert {r.variant for r in records} == {"v3", "v2"}
    assert sum(refused.values()) > 0  # the clients did send into the restart window
    assert "restarting" in second.logs()
