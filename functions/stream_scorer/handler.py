"""Streaming scorer: Kinesis Data Streams -> SageMaker endpoint -> Kinesis or Firehose.

Each record is one transaction: a JSON object of features (put in the configured feature order
as one CSV line) or one raw CSV line. It is scored with InvokeEndpoint (text/csv, the record id
as InferenceId so data capture lines can be joined to labels later); the scores go to the
output stream in batches (PutRecords / PutRecordBatch) as JSON lines.

Records that cannot be scored (not JSON or CSV, missing features, an endpoint 4xx/5xx) and
records whose output could not be written are reported in `batchItemFailures` (the event source
mapping needs ReportBatchItemFailures). Kinesis retries from the lowest failed sequence number,
so delivery downstream is at least once. Give the mapping MaximumRetryAttempts,
BisectBatchOnFunctionError and an on-failure destination so a poison record cannot block its
shard.

Environment (read once, at cold start in Lambda, into `Settings`; stated in
`mlops_kit.contract`):
    ENDPOINT_NAME                 required
    OUTPUT_STREAM_NAME            Kinesis output stream  } exactly one of the two
    OUTPUT_DELIVERY_STREAM_NAME   Firehose delivery stream }
    FEATURE_ORDER                 comma-separated feature names; required for JSON records
    RECORD_ID_FIELD               JSON field carried to the output as `id` (default: id)
    POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE (default MLOpsKit/Scoring), LOG_LEVEL

IAM: sagemaker:InvokeEndpoint on the endpoint; kinesis:PutRecords on the output stream or
firehose:PutRecordBatch on the delivery stream; for the input stream's event source mapping
kinesis:DescribeStream, kinesis:DescribeStreamSummary, kinesis:GetRecords,
kinesis:GetShardIterator, kinesis:ListShards, kinesis:ListStreams (and kms:Decrypt if the stream
is encrypted with a customer key); xray:PutTraceSegments, xray:PutTelemetryRecords for tracing.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (BatchProcessor, EventType,
                                                   process_partial_response)
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

# SettingsError: what a cold start raises, re-exported for callers of `settings()`.
from mlops_kit.contract import SCORING_NAMESPACE, SettingsError, StreamScorerSettings  # noqa: F401

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace=os.getenv("POWERTOOLS_METRICS_NAMESPACE") or SCORING_NAMESPACE)
processor = BatchProcessor(event_type=EventType.KinesisDataStreams)

KINESIS_MAX_RECORDS, KINESIS_MAX_BYTES = 500, 5 * 1024 * 1024
FIREHOSE_MAX_RECORDS, FIREHOSE_MAX_BYTES = 500, 4 * 1024 * 1024
PUBLISH_ATTEMPTS = 3
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2,
                       read_timeout=20)
# What the handler calls, and its environment: mlops_kit.contract.FUNCTIONS["stream_scorer"].


class BadRecord(ValueError):
    """A record that cannot be scored as it is; retrying it will not help."""


class ScoringError(RuntimeError):
    """The endpoint refused or failed to score a record."""


Settings = StreamScorerSettings
"""Read once from the environment by the contract (`Settings.from_env()`), typed and checked."""


class Clients:
    """boto3 clients made once per container; tests inject stubbed or moto-backed ones."""

    def __init__(self, factory: Callable[..., Any] | None = None):
        self._factory = factory or (lambda service: boto3.client(service, config=CLIENT_CONFIG))
        self._made: dict[str, Any] = {}

    def __call__(self, service: str) -> Any:
        if service not in self._made:
            self._made[service] = self._factory(service)
        return self._made[service]

    def inject(self, service: str, client: Any) -> None:
        self._made[service] = client


clients = Clients()
_settings: Settings | None = None
sleep: Callable[[float], None] = time.sleep


def settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


@dataclass(frozen=True)
class Scored:
    sequence_number: str
    partition_key: str
    payload: bytes


# -- parsing -----------------------------------------------------------------------------

def _csv_value(name: str, value: Any) -> str:
    if value is None or value == "":
        return ""  # XGBoost reads an empty CSV field as missing
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # a JSON integer beyond float range
            raise BadRecord(f"feature '{name}' is out of range") from None
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            # A categorical value: passed on as text (quoted when CSV needs it); the endpoint
            # knows which features are categorical and answers 400 for a bad numeric one.
            if "\n" in value or "\r" in value:
                raise BadRecord(f"feature '{name}' holds a line break") from None
            return f'"{value.replace(chr(34), chr(34) * 2)}"' if any(
                c in value for c in ',"') else value
    else:
        raise BadRecord(f"feature '{name}' is not a number: {type(value).__name__}")
    if math.isnan(number):
        return ""
    if math.isinf(number):
        raise BadRecord(f"feature '{name}' is infinite")
    return repr(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)


def to_csv(data: bytes, cfg: Settings) -> tuple[str, str | None]:
    """The record as one CSV line in feature order, and its id when it carries one."""
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise BadRecord("record is not UTF-8 text") from None
    if not text:
        raise BadRecord("empty record")
    if text[0] in "{[":
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadRecord(f"not valid JSON: {exc.msg} at {exc.pos}") from None
        if not cfg.feature_order:
            raise BadRecord("JSON record but FEATURE_ORDER is not configured")
        if isinstance(parsed, list):
            if len(parsed) != len(cfg.feature_order):
                raise BadRecord(f"{len(parsed)} values for {len(cfg.feature_order)} features")
            return ",".join(_csv_value(n, v) for n, v in zip(cfg.feature_order, parsed)), None
        if not isinstance(parsed, dict):
            raise BadRecord("JSON record must be an object of features")
        features = parsed["features"] if isinstance(parsed.get("features"), dict) else parsed
        missing = [name for name in cfg.feature_order if name not in features]
        if missing:
            raise BadRecord(f"missing feature(s): {', '.join(missing)}")
        record_id = parsed.get(cfg.record_id_field)
        line = ",".join(_csv_value(name, features[name]) for name in cfg.feature_order)
        return line, None if record_id is None else str(record_id)
    if "\n" in text or "\r" in text:
        raise BadRecord("a CSV record must be one line")
    values = [v.strip() for v in text.split(",")]
    if cfg.feature_order and len(values) != len(cfg.feature_order):
        raise BadRecord(f"{len(values)} CSV values for {len(cfg.feature_order)} features")
    return ",".join(_csv_value(f"column {i}", v) for i, v in enumerate(values)), None


def parse_scores(body: str) -> list[float]:
    values = [v for v in re.split(r"[,\s]+", body.strip()) if v]
    try:
        return [float(v) for v in values]
    except ValueError:
        raise ScoringError(f"endpoint answered something other than scores: {body[:100]!r}") \
            from None


# -- scoring -----------------------------------------------------------------------------

@tracer.capture_method(capture_response=False)
def score(line: str, inference_id: str, cfg: Settings) -> tuple[list[float], str]:
    try:
        response = clients("sagemaker-runtime").invoke_endpoint(
            EndpointName=cfg.endpoint_name, ContentType="text/csv", Accept="text/csv",
            Body=line.encode("utf-8"), InferenceId=inference_id[:64])
    except ClientError as exc:
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        raise ScoringError(f"InvokeEndpoint failed ({status} {error.get('Code')}): "
                           f"{error.get('Message', '')}") from exc
    body = response["Body"].read().decode("utf-8")
    return parse_scores(body), response.get("InvokedProductionVariant", "")


def score_record(record: KinesisStreamRecord, cfg: Settings) -> Scored:
    payload = record.kinesis
    line, record_id = to_csv(payload.data_as_bytes(), cfg)
    inference_id = record_id or payload.sequence_number
    scores, variant = score(line, inference_id, cfg)
    output: dict[str, Any] = {
        "id": record_id, "sequence_number": payload.sequence_number,
        "partition_key": payload.partition_key, "endpoint": cfg.endpoint_name,
        "variant": variant, "scored_at": datetime.now(timezone.utc).isoformat(
            timespec="milliseconds").replace("+00:00", "Z")}
    if len(scores) == 1:
        output["score"] = scores[0]
    else:
        output["scores"] = scores
    return Scored(payload.sequence_number, payload.partition_key,
                  (json.dumps(output, separators=(",", ":")) + "\n").encode("utf-8"))


# -- publishing --------------------------------------------------------------------------

def _chunks(items: list[Scored], max_records: int, max_bytes: int) -> list[list[Scored]]:
    chunks: list[list[Scored]] = []
    current: list[Scored] = []
    size = 0
    for item in items:
        item_size = len(item.payload) + len(item.partition_key.encode())
        if current and (len(current) >= max_records or size + item_size > max_bytes):
            chunks.append(current)
            current, size = [], 0
        current.append(item)
        size += item_size
    if current:
        chunks.append(current)
    return chunks


def _put_chunk(chunk: list[Scored], cfg: Settings) -> list[Scored]:
    """Write one chunk; returns the entries that were not written."""
    try:
        if cfg.output_kind == "kinesis":
            response = clients("kinesis").put_records(
                StreamName=cfg.output_name,
                Records=[{"Data": s.payload, "PartitionKey": s.partition_key} for s in chunk])
            results = response.get("Records", [])
            failed_count = response.get("FailedRecordCount", 0)
        else:
            response = clients("firehose").put_record_batch(
                DeliveryStreamName=cfg.output_name, Records=[{"Data": s.payload} for s in chunk])
            results = response.get("RequestResponses", [])
            failed_count = response.get("FailedPutCount", 0)
    except (ClientError, BotoCoreError) as exc:
        logger.warning("output put failed for the whole chunk", extra={
            "records": len(chunk), "error": str(exc)})
        return chunk
    if not failed_count:
        return []
    failed = [s for s, result in zip(chunk, results) if result.get("ErrorCode")]
    logger.warning("output put failed for some records", extra={
        "failed": len(failed), "codes": sorted({r.get("ErrorCode") for r in results
                                                if r.get("ErrorCode")})})
    return failed


@tracer.capture_method(capture_response=False)
def publish(scored: list[Scored], cfg: Settings) -> list[str]:
    """Write scored records in batches, retrying failed entries a bounded number of times.
    Returns the input sequence numbers whose output could not be written."""
    limits = ((KINESIS_MAX_RECORDS, KINESIS_MAX_BYTES) if cfg.output_kind == "kinesis"
              else (FIREHOSE_MAX_RECORDS, FIREHOSE_MAX_BYTES))
    pending = list(scored)
    for attempt in range(1, PUBLISH_ATTEMPTS + 1):
        failed: list[Scored] = []
        for chunk in _chunks(pending, *limits):
            failed.extend(_put_chunk(chunk, cfg))
        if not failed:
            return []
        pending = failed
        if attempt < PUBLISH_ATTEMPTS:
            sleep(0.1 * 2 ** (attempt - 1))
    return [s.sequence_number for s in pending]


# -- handler -----------------------------------------------------------------------------

def batch_problem(event: Any) -> str | None:
    """Why the event is not a Kinesis batch (None when it is). The event source mapping only
    sends well-formed batches; anything else has no sequence numbers to report failures by."""
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
        return "event is not a Kinesis batch: no Records list"
    for i, record in enumerate(event["Records"]):
        kinesis = record.get("kinesis") if isinstance(record, dict) else None
        if not (isinstance(kinesis, dict) and isinstance(kinesis.get("sequenceNumber"), str)
                and isinstance(kinesis.get("data"), str)
                and isinstance(kinesis.get("partitionKey"), str)):
            return (f"event is not a Kinesis batch: record {i} lacks kinesis.sequenceNumber, "
                    "kinesis.partitionKey or kinesis.data")
    return None


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    cfg = settings()
    metrics.add_dimension(name="EndpointName", value=cfg.endpoint_name)
    problem = batch_problem(event)
    if problem:
        logger.warning("event rejected", extra={"reason": problem})
        metrics.add_metric(name="InvalidEvents", unit=MetricUnit.Count, value=1)
        return {"batchItemFailures": [], "rejected": problem}
    scored: list[Scored] = []

    def record_handler(record: KinesisStreamRecord) -> str:
        try:
            scored.append(score_record(record, cfg))
        except (BadRecord, ScoringError) as exc:
            logger.warning("record not scored", extra={
                "sequence_number": record.kinesis.sequence_number, "reason": str(exc)})
            raise
        return record.kinesis.sequence_number

    received = len(event.get("Records", []))
    try:
        response = process_partial_response(event=event, record_handler=record_handler,
                                             processor=processor, context=context)
    finally:
        metrics.add_metric(name="RecordsReceived", unit=MetricUnit.Count, value=received)
        metrics.add_metric(name="RecordsNotScored", unit=MetricUnit.Count,
                           value=received - len(scored))
    unpublished = publish(scored, cfg)
    if unpublished:
        response["batchItemFailures"].extend({"itemIdentifier": s} for s in unpublished)
    metrics.add_metric(name="RecordsScored", unit=MetricUnit.Count,
                       value=len(scored) - len(unpublished))
    metrics.add_metric(name="RecordsNotPublished", unit=MetricUnit.Count, value=len(unpublished))
    return response


if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
    # Cold start in Lambda: fail fast on missing settings, and make the client once.
    settings()
    clients("sagemaker-runtime")
