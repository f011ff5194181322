"""Streaming scoring on AWS: a Kinesis batch → SageMaker endpoint → Kinesis or Firehose.

Each record is read by the one id/label rule (`mlops_kit.aws.stream_records`): its features go
to InvokeEndpoint as one CSV line (text/csv; the record's id, else its sequence number, as
InferenceId so data capture lines can be joined to labels later), its ids are passed through.
The scores go to the output stream in batches (PutRecords / PutRecordBatch) as JSON lines:

    {"transaction_id": "tx-1", "id": "tx-1", "sequence_number": "4959...",
     "partition_key": "card-0", "endpoint": "fraud-scorer-prod", "variant": "v7",
     "scored_at": "2026-11-20T10:00:00.000Z", "score": 0.93}

Records that cannot be scored (not JSON or CSV, missing features, an endpoint 4xx/5xx) and
records whose output could not be written are reported in `batchItemFailures` (the event source
mapping needs ReportBatchItemFailures). Kinesis retries from the lowest failed sequence number,
so delivery downstream is at least once.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (BatchProcessor, EventType,
                                                   process_partial_response)
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from mlops_kit.aws.stream_records import BadRecord, RecordLayout, read_record
from mlops_kit.contract import StreamScorerSettings

KINESIS_MAX_RECORDS, KINESIS_MAX_BYTES = 500, 5 * 1024 * 1024
FIREHOSE_MAX_RECORDS, FIREHOSE_MAX_BYTES = 500, 4 * 1024 * 1024
PUBLISH_ATTEMPTS = 3
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2,
                       read_timeout=20)
"""The stream scorer's clients: a short connect timeout, a read timeout within the batch's."""

tracer = Tracer()


class ScoringError(RuntimeError):
    """The endpoint refused or failed to score a record."""


@dataclass(frozen=True)
class Scored:
    sequence_number: str
    partition_key: str
    payload: bytes


def parse_scores(body: str) -> list[float]:
    values = [v for v in re.split(r"[,\s]+", body.strip()) if v]
    try:
        return [float(v) for v in values]
    except ValueError:
        raise ScoringError(f"endpoint answered something other than scores: {body[:100]!r}") \
            from None


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


class StreamScorer:
    """One batch's scoring: `handle(event, context)` answers the event source mapping."""

    def __init__(self, cfg: StreamScorerSettings, clients: Callable[[str], Any], *,
                 logger: Any, metrics: Any, sleep: Callable[[float], None] = time.sleep,
                 layout: RecordLayout | None = None):
        self.cfg, self.clients, self.logger, self.metrics = cfg, clients, logger, metrics
        self.sleep = sleep
        self.layout = layout or RecordLayout.from_settings(cfg)

    def handle(self, event: Any, context: Any) -> dict[str, Any]:
        self.metrics.add_dimension(name="EndpointName", value=self.cfg.endpoint_name)
        problem = batch_problem(event)
        if problem:
            self.logger.warning("event rejected", extra={"reason": problem})
            self.metrics.add_metric(name="InvalidEvents", unit=MetricUnit.Count, value=1)
            return {"batchItemFailures": [], "rejected": problem}
        scored: list[Scored] = []

        def record_handler(record: KinesisStreamRecord) -> str:
            try:
                scored.append(self.score_record(record))
            except (BadRecord, ScoringError) as exc:
                self.logger.warning("record not scored", extra={
                    "sequence_number": record.kinesis.sequence_number, "reason": str(exc)})
                raise
            return record.kinesis.sequence_number

        received = len(event["Records"])
        try:
            response = process_partial_response(
                event=event, record_handler=record_handler,
                processor=BatchProcessor(event_type=EventType.KinesisDataStreams),
                context=context)
        finally:
            self._count("RecordsReceived", received)
            self._count("RecordsNotScored", received - len(scored))
        unpublished = self.publish(scored)
        response["batchItemFailures"].extend({"itemIdentifier": s} for s in unpublished)
        self._count("RecordsScored", len(scored) - len(unpublished))
        self._count("RecordsNotPublished", len(unpublished))
        return response

    def _count(self, name: str, value: int) -> None:
        self.metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)

    # -- scoring -------------------------------------------------------------------------

    def score_record(self, record: KinesisStreamRecord) -> Scored:
        payload = record.kinesis
        read = read_record(payload.data_as_bytes(), self.layout)
        scores, variant = self.score(
            read.line, read.inference_id or read.record_id or payload.sequence_number)
        output: dict[str, Any] = {
            **read.ids, "id": read.record_id, "sequence_number": payload.sequence_number,
            "partition_key": payload.partition_key, "endpoint": self.cfg.endpoint_name,
            "variant": variant, "scored_at": datetime.now(timezone.utc).isoformat(
                timespec="milliseconds").replace("+00:00", "Z")}
        if read.inference_id is not None:
            output = {"inferenceId": read.inference_id, **output}
        if len(scores) == 1:
            output["score"] = scores[0]
        else:
            output["scores"] = scores
        return Scored(payload.sequence_number, payload.partition_key,
                      (json.dumps(output, separators=(",", ":")) + "\n").encode("utf-8"))

    @tracer.capture_method(capture_response=False)
    def score(self, line: str, inference_id: str) -> tuple[list[float], str]:
        try:
            response = self.clients("sagemaker-runtime").invoke_endpoint(
                EndpointName=self.cfg.endpoint_name, ContentType="text/csv", Accept="text/csv",
                Body=line.encode("utf-8"), InferenceId=inference_id[:64])
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
            raise ScoringError(f"InvokeEndpoint failed ({status} {error.get('Code')}): "
                               f"{error.get('Message', '')}") from exc
        body = response["Body"].read().decode("utf-8")
        return parse_scores(body), response.get("InvokedProductionVariant", "")

    # -- publishing ----------------------------------------------------------------------

    @tracer.capture_method(capture_response=False)
    def publish(self, scored: list[Scored]) -> list[str]:
        """Write scored records in batches, retrying failed entries a bounded number of times.
        Returns the input sequence numbers whose output could not be written."""
        limits = ((KINESIS_MAX_RECORDS, KINESIS_MAX_BYTES) if self.cfg.output_kind == "kinesis"
                  else (FIREHOSE_MAX_RECORDS, FIREHOSE_MAX_BYTES))
        pending = list(scored)
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            failed: list[Scored] = []
            for chunk in _chunks(pending, *limits):
                failed.extend(self._put_chunk(chunk))
            if not failed:
                return []
            pending = failed
            if attempt < PUBLISH_ATTEMPTS:
                self.sleep(0.1 * 2 ** (attempt - 1))
        return [s.sequence_number for s in pending]

    def _put_chunk(self, chunk: list[Scored]) -> list[Scored]:
        """Write one chunk; returns the entries that were not written."""
        try:
            if self.cfg.output_kind == "kinesis":
                response = self.clients("kinesis").put_records(
                    StreamName=self.cfg.output_name,
                    Records=[{"Data": s.payload, "PartitionKey": s.partition_key}
                             for s in chunk])
                results = response.get("Records", [])
                failed_count = response.get("FailedRecordCount", 0)
            else:
                response = self.clients("firehose").put_record_batch(
                    DeliveryStreamName=self.cfg.output_name,
                    Records=[{"Data": s.payload} for s in chunk])
                results = response.get("RequestResponses", [])
                failed_count = response.get("FailedPutCount", 0)
        except (ClientError, BotoCoreError) as exc:
            self.logger.warning("output put failed for the whole chunk", extra={
                "records": len(chunk), "error": str(exc)})
            return chunk
        if not failed_count:
            return []
        failed = [s for s, result in zip(chunk, results) if result.get("ErrorCode")]
        self.logger.warning("output put failed for some records", extra={
            "failed": len(failed), "codes": sorted({r.get("ErrorCode") for r in results
                                                    if r.get("ErrorCode")})})
        return failed
