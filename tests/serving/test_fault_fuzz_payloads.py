"""Fault and abuse suite [E]: property-based fuzzing of the endpoint's payloads.

In-process (fast, many examples): the endpoint app answers every body and content type with a
200 or, as SageMaker does for a model's refusal, a 424 ModelError whose OriginalStatusCode is the
handlers' 4xx naming the problem, never a 5xx (the one 5xx the deployed container gives, the
toolkit's own UTF-8 decoding of a `text/csv` or `application/json` body, is reproduced and
nothing else); its fast CSV path agrees with the canonical `inference.input_fn` + `encode`; only
answered requests are captured; raw bytes on the wire never break the HTTP protocol. Against a
real `mlops serve` process: the same bodies over HTTP get no 5xx, no model 5xx beyond that one
and no dropped connection, the server still scores a good row afterwards, and its data capture
holds exactly the requests it answered with 200.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mlops_kit.serving.capture import read_capture
from mlops_kit.serving.router import ScoringRouter
from mlops_kit.serving.wire import ConnectionRegistry, EndpointApp, HttpProtocol

from .conftest import ENDPOINT, Transport, start_server, write_state

PATH = f"/endpoints/{ENDPOINT}/invocations".encode()


def toolkit_refuses_undecodable(body: bytes, content_type: str) -> bool:
    """The container's toolkit decodes exactly these content types as UTF-8 before input_fn:
    its UnicodeDecodeError is a 500 no handler sees (tests/serving/test_conformance.py)."""
    if content_type not in ("text/csv", "application/json"):
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def assert_a_model_refusal(status: int, error: dict, body: bytes, content_type: str) -> None:
    """A 424 ModelError carrying the handlers' 4xx (or the toolkit's decoding 500) and why."""
    assert (status, error["ErrorCode"]) == (424, "ModelError"), error
    original = error["OriginalStatusCode"]
    if toolkit_refuses_undecodable(body, content_type):
        assert original == 500 and "can't decode" in error["OriginalMessage"], error
    else:
        assert 400 <= original < 500, error
    assert len(error["OriginalMessage"]) > 5 and error["OriginalMessage"] in error["Message"]
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])


# -- payload strategies ------------------------------------------------------------------

json_scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12))
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.text(max_size=10), inner, max_size=5), max_leaves=20)
odd_fields = st.sampled_from([
    "", " ", "NaN", "nan", "inf", "-Infinity", "1e400", "-1e39", "3.5e38", "9" * 400, "0x10",
    "1_000", "１２", "💥", "\u202e", "\x00", '"', '""', "a,b", "\r", "null", "true", "[]"])
content_types = st.one_of(
    st.sampled_from(["text/csv", "application/json", "text/csv; charset=utf-8",
                     "APPLICATION/JSON", "application/jsonlines", "text/plain",
                     "application/x-npy", "", "*/*", "text/csv;;;", "multipart/form-data"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30))


@st.composite
def perturbed_rows(draw, lines: list[str], objects: list[dict]) -> tuple[bytes, str]:
    """Real rows with some fields replaced by odd values, in CSV or JSON."""
    count = draw(st.integers(1, 5))
    if draw(st.booleans()):
        rows = []
        for line in lines[:count]:
            fields = line.split(",")
            for _ in range(draw(st.integers(0, 3))):
                at = draw(st.integers(0, len(fields)))  # == len: one field too many
                value = draw(odd_fields | st.text(max_size=6))
                if at == len(fields):
                    fields.append(value)
                else:
                    fields[at] = value
            rows.append(",".join(fields))
        return "\n".join(rows).encode("utf-8", "surrogatepass"), "text/csv"
    rows = []
    for document in objects[:count]:
        document = dict(document)
        for _ in range(draw(st.integers(0, 3))):
            name = draw(st.sampled_from(sorted(document) + ["not_a_feature"]))
            document[name] = draw(json_scalars | odd_fields
                                  | st.integers(-(10 ** 400), 10 ** 400))
        rows.append(document)
    shape = draw(st.sampled_from(["instances", "list", "one"]))
    body = {"instances": rows} if shape == "instances" else rows if shape == "list" else rows[0]
    return json.dumps(body).encode(), "application/json"


def payloads(lines: list[str], objects: list[dict]):
    return st.one_of(
        st.tuples(st.binary(max_size=200), content_types),
        st.tuples(st.lists(st.lists(odd_fields | st.text(max_size=6), max_size=12), max_size=4)
                  .map(lambda rows: "\n".join(",".join(r) for r in rows).encode(
                      "utf-8", "surrogatepass")), st.just("text/csv")),
        st.tuples(json_values.map(lambda v: json.dumps(v).encode()),
                  st.sampled_from(["application/json", "text/csv"])),
        st.tuples(json_values.map(lambda v: json.dumps({"instances": v}).encode()),
                  st.just("application/json")),
        perturbed_rows(lines, objects),
        st.integers(1, 400).map(lambda n: ("\n".join(lines[:1] * n).encode(), "text/csv")),
    )


# -- in-process --------------------------------------------------------------------------

@dataclass
class RecordingCapture:
    """Stands in for CaptureWriter at 100%: what the app would write to the capture."""
    percent: float = 100.0
    written: list[bytes] = field(default_factory=list)

    def sampled(self) -> bool:
        return True

    def write(self, variant_name, input_body, input_type, output_body, output_type,
              inference_id=None) -> None:
        self.written.append(input_body)

    def health(self):
        from mlops_kit.serving.capture import CaptureHealth

        return CaptureHealth(failing=False, dropped=0, written=len(self.written))


@pytest.fixture(scope="module")
def app(tmp_path_factory, model_versions):
    home = tmp_path_factory.mktemp("fuzz-home")
    write_state(home, model_versions, {3: 1.0, 2: 0.0, 1: 0.0})
    return EndpointApp(ScoringRouter(home, ENDPOINT), capture=RecordingCapture())


@pytest.fixture(scope="module")
def good(app, sample_rows):
    """A good request and the score the endpoint gives it before any abuse."""
    body = sample_rows[0][0].encode()
    status, _, answer, _ = app.handle(b"POST", PATH, {b"content-type": b"text/csv"}, body)
    assert status == 200
    return body, answer


def canonical_scores(app, body: bytes, content_type: str):
    """The SageMaker handlers' own path (input_fn + encode + predict) for v3, or the
    PayloadError it raises."""
    from mlops_pipelines.steps import inference

    model = app.router.current().variants["v3"].model
    return inference.predict_fn(inference.input_fn(body, content_type), model)


SAMPLE: dict[str, list] = {}
"""Real rows, filled by the fixture below; hypothesis draws from the strategy lazily."""
real_payloads = st.deferred(lambda: payloads(SAMPLE["lines"], SAMPLE["objects"]))


@pytest.fixture(scope="module", autouse=True)
def _sample(sample_rows):
    SAMPLE.update(lines=sample_rows[0][:10], objects=sample_rows[1][:10])


@FUZZ
@given(case=real_payloads)
# Regressions: a JSON integer beyond float range (OverflowError) and deep nesting
# (RecursionError) were 500s.
@example(case=(b'{"amount": 1' + b"0" * 400 + b"}", "application/json"))
@example(case=(b"[" * 100_000, "application/json"))
@example(case=(b"", "text/csv"))
@example(case=(b"\xff\xfe", "text/csv"))
def test_every_payload_gets_a_score_or_a_model_error_naming_the_problem(app, good, case):
    from mlops_pipelines.steps.inference import PayloadError

    body, content_type = case
    captured = len(app.capture.written)
    headers = {b"content-type": content_type.encode("latin-1"),
               b"x-amzn-sagemaker-target-variant": b"v3"}

    status, produced, answer, _ = app.handle(b"POST", PATH, headers, body)

    if status == 200:
        scores = [float(s) for s in answer.decode().split("\n")]
        expected = canonical_scores(app, body, content_type)  # must not raise either
        assert len(scores) == len(expected)
        assert all(0.0 <= s <= 1.0 for s in scores)
        assert scores == pytest.approx([float(s) for s in expected], rel=1e-6)
        assert app.capture.written[captured:] == [body]
    else:
        assert_a_model_refusal(status, json.loads(answer), body, content_type)
        assert app.capture.written[captured:] == []  # a refused request is not traffic
        with pytest.raises(PayloadError):  # the fast path refuses what the canonical path does
            canonical_scores(app, body, content_type)
    # The endpoint is unharmed: the good request still gets its score.
    assert app.handle(b"POST", PATH, {b"content-type": b"text/csv"}, good[0])[2] == good[1]





http_heads = st.lists(st.one_of(
    st.sampled_from([b"POST " + PATH + b" HTTP/1.1", b"GET /ping HTTP/1.1", b"POST /x HTTP/1.0",
                     b"POST " + PATH + b" HTTP/2.0", b"BREW " + PATH + b" HTTP/1.1",
                     b"Content-Length: 5", b"Content-Length: -1", b"Content-Length: 99999999999",
                     b"Content-Length: abc", b"Transfer-Encoding: chunked",
                     b"Transfer-Encoding: gzip", b"Expect: 100-continue",
                     b"Content-Type: application/json", b"Connection: close", b": empty",
                     b"no colon here", b"5\r\nab", b"0\r\n", b"\x00\xff"]),
    st.binary(max_size=20)), min_size=1, max_size=8)


@settings(FUZZ, max_examples=300)
@given(head=http_heads, body=st.binary(max_size=40), cuts=st.lists(st.integers(0, 400),
                                                                       max_size=3))
def test_raw_bytes_on_the_wire_never_break_the_protocol(app, head, body, cuts):
    protocol = HttpProtocol(app.handle, ConnectionRegistry(), max_body_bytes=1024)
    transport = Transport()
    protocol.connection_made(transport)
    stream = b"\r\n".join(head) + b"\r\n\r\n" + body
    start = 0
    for cut in sorted(cuts) + [len(stream)]:  # delivered in pieces, as TCP may
        protocol.data_received(stream[start:cut])
        start = max(start, cut)
    protocol.connection_lost(None)

    for line in transport.data.split(b"\r\n"):
        if line.startswith(b"HTTP/1.") and line[8:9] == b" " and line[9:12].isdigit():
            # 501 (unknown method / transfer coding) and 505 (HTTP version) are the
            # protocol's own answers; a server error (500, 503) never is.
            assert int(line[9:12]) < 500 or int(line[9:12]) in (501, 505), transport.data


# -- a real server -----------------------------------------------------------------------

def test_the_server_answers_abuse_with_4xx_stays_up_and_captures_only_answered_requests(
        tmp_path, model_versions, sample_rows):
    home = tmp_path / "home"
    home.mkdir()
    write_state(home, model_versions, {3: 1.0, 2: 0.0, 1: 0.0})
    server = start_server(home, "--capture-percent", "100", log_dir=tmp_path)
    answered, refused = set(), set()
    good = sample_rows[0][0]

    @settings(FUZZ, max_examples=60)
    @given(case=real_payloads)
    @example(case=(b'[{"amount": 1' + b"0" * 400 + b"}]", "application/json"))
    def abuse(case):
        body, content_type = case
        inference_id = f"fuzz-{len(answered) + len(refused)}"
        try:
            status, _, answer = server.invoke(body, content_type.encode("latin-1"),
                                              **{"X-Amzn-SageMaker-Inference-Id": inference_id})
        except (http.client.HTTPException, OSError) as exc:
            raise AssertionError(f"connection dropped for {case!r}: {exc!r}") from exc
        assert status < 500, (status, answer)
        if status == 200:
            answered.add(inference_id)
        else:
            assert_a_model_refusal(status, json.loads(answer), body, content_type)
            refused.add(inference_id)

    try:
        abuse()
        status, _, answer = server.invoke(good)
        assert status == 200 and 0.0 <= float(answer) <= 1.0
        assert server.process.poll() is None
    finally:
        assert server.stop() == 0
    records, corrupt = read_capture(home / "capture")
    captured = {r.inference_id for r in records if r.inference_id}
    assert corrupt == 0
    assert refused, "the fuzzing sent no bad request: the property was not exercised"
    assert captured == answered  # every answered request, and no refused one

