"""One capture record, as a SageMaker real-time endpoint writes it, both ways.

Each captured request is one JSON line:

    {"captureData": {"endpointInput":  {"observedContentType": "text/csv", "mode": "INPUT",
                                        "data": "412.5,3,...", "encoding": "CSV"},
                     "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT",
                                        "data": "0.0312", "encoding": "CSV"}},
     "eventMetadata": {"eventId": "<uuid4>", "inferenceId": "<X-Amzn-SageMaker-Inference-Id>",
                       "inferenceTime": "2026-11-20T09:02:11Z"},
     "eventVersion": "0"}

`data` is the payload text for CSV and JSON content types and base64 for anything else
(`encoding` says which), `inferenceId` only appears when the caller sent one. The variant is
not in the line: it is known from the file's key (see `capture_file`).
"""

from __future__ import annotations

import base64
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from mlops_kit.core.timestamps import epoch_iso_seconds
from mlops_kit.serving.kernel import CSV_TYPES, JSON_TYPES, media_type

_quote = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


def _encode(payload: bytes, content_type: str) -> tuple[str, str]:
    """(data, encoding) as SageMaker records a payload of this content type."""
    kind = media_type(content_type)
    if kind in CSV_TYPES or kind in JSON_TYPES:
        try:
            return payload.decode("utf-8"), "CSV" if kind in CSV_TYPES else "JSON"
        except UnicodeDecodeError:
            pass
    return base64.b64encode(payload).decode("ascii"), "BASE64"


def capture_line(input_body: bytes, input_type: str, output_body: bytes, output_type: str,
                 *, inference_id: str | None = None, event_id: str | None = None,
                 inference_time: str | None = None) -> bytes:
    """One capture record as a JSON line (newline included)."""
    in_data, in_encoding = _encode(input_body, input_type)
    out_data, out_encoding = _encode(output_body, output_type)
    inference = f',"inferenceId":{_quote(inference_id)}' if inference_id else ""
    return (
        '{"captureData":{"endpointInput":{"observedContentType":%s,"mode":"INPUT","data":%s,'
        '"encoding":"%s"},"endpointOutput":{"observedContentType":%s,"mode":"OUTPUT","data":%s,'
        '"encoding":"%s"}},"eventMetadata":{"eventId":"%s"%s,"inferenceTime":"%s"},'
        '"eventVersion":"0"}\n' % (
            _quote(input_type or ""), _quote(in_data), in_encoding, _quote(output_type or ""),
            _quote(out_data), out_encoding, event_id or new_event_id(), inference,
            inference_time or epoch_iso_seconds(int(time.time())))
    ).encode("ascii")


def new_event_id(bits: Callable[[int], int] = random.getrandbits) -> str:
    """A random (version 4) UUID string, several times cheaper than str(uuid.uuid4())."""
    value = (bits(128) & ~(0xF000 << 64) | (0x4000 << 64)) & ~(0xC << 60) | (0x8 << 60)
    text = "%032x" % value
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


@dataclass(frozen=True)
class CapturedPayload:
    content_type: str
    mode: str
    data: str
    encoding: str

    def payload(self) -> bytes:
        """The payload as the endpoint saw (or sent) it."""
        if self.encoding == "BASE64":
            return base64.b64decode(self.data, validate=True)
        return self.data.encode("utf-8")

    def text(self) -> str:
        return self.payload().decode("utf-8")


@dataclass(frozen=True)
class CaptureRecord:
    input: CapturedPayload
    output: CapturedPayload
    event_id: str
    inference_time: str
    inference_id: str | None
    event_version: str
    endpoint: str | None = None
    variant: str | None = None
    """From the file's key (…/{endpoint}/{variant}/yyyy/mm/dd/hh/file), when it follows it."""
    path: str = ""
    line: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


_ENCODINGS = {"CSV", "JSON", "BASE64"}


def _payload(raw: Any, mode: str) -> CapturedPayload:
    if not isinstance(raw, dict):
        raise ValueError(f"endpoint{mode.title()} is not an object")
    payload = CapturedPayload(raw["observedContentType"], raw.get("mode", mode), raw["data"],
                              raw["encoding"])
    if not isinstance(payload.data, str) or payload.encoding not in _ENCODINGS:
        raise ValueError(f"bad {mode} payload")
    if payload.encoding == "BASE64":
        base64.b64decode(payload.data, validate=True)
    return payload


def parse_capture_line(text: str | bytes, *, endpoint: str | None = None,
                       variant: str | None = None, path: str = "", line: int = 0
                       ) -> CaptureRecord:
    """One capture line; ValueError when it is torn or not in SageMaker's capture format."""
    document = json.loads(text)
    try:
        data = document["captureData"]
        meta = document["eventMetadata"]
        record = CaptureRecord(
            _payload(data["endpointInput"], "INPUT"), _payload(data["endpointOutput"], "OUTPUT"),
            str(meta["eventId"]), str(meta["inferenceTime"]), meta.get("inferenceId"),
            str(document.get("eventVersion", "")), endpoint, variant, path, line, document)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"not a capture record: {exc!r}") from None
    return record
