"""Streaming scorer Lambda: Kinesis Data Streams -> SageMaker endpoint -> Kinesis or Firehose.

Each record is one transaction (a JSON object or list, or one CSV line), read by the one
id/label rule (`mlops_kit.aws.stream_records`) and scored by `mlops_kit.aws.stream_scoring`;
unscorable and unwritten records are reported in `batchItemFailures`. Give the event source
mapping ReportBatchItemFailures, MaximumRetryAttempts, BisectBatchOnFunctionError and an
on-failure destination so a poison record cannot block its shard.

Environment (read once, at cold start in Lambda, into `Settings`; stated in
`mlops_kit.contract.FUNCTIONS["stream_scorer"]`, with its IAM):
    ENDPOINT_NAME                 required
    OUTPUT_STREAM_NAME            Kinesis output stream  } exactly one of the two
    OUTPUT_DELIVERY_STREAM_NAME   Firehose delivery stream }
    FEATURE_ORDER                 comma-separated feature names; required for JSON records
    RECORD_ID_FIELD               JSON field carried to the output as `id` (default: id)
    ID_COLUMNS, LABEL_COLUMN, DATA_COLUMNS   the data's ids, label and column order (default:
                                  the sample schema's; `mlops_kit.aws.stream_records`)
    POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE (default MLOpsKit/Scoring), LOG_LEVEL
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops_kit.aws.clients import default_client
from mlops_kit.aws.lambda_runtime import Clients
# What tests and callers reach through the handler: the record rule and the batch check.
from mlops_kit.aws.stream_records import BadRecord, to_csv  # noqa: F401
from mlops_kit.aws.stream_scoring import CLIENT_CONFIG, StreamScorer, batch_problem  # noqa: F401
# SettingsError: what a cold start raises, re-exported for callers of `settings()`.
from mlops_kit.contract import SCORING_NAMESPACE, SettingsError, StreamScorerSettings  # noqa: F401

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace=os.getenv("POWERTOOLS_METRICS_NAMESPACE") or SCORING_NAMESPACE)
clients = Clients(lambda service: default_client(service, CLIENT_CONFIG))
"""Made once per container; tests inject stubbed or moto-backed ones (`clients.inject`)."""
sleep: Callable[[float], None] = time.sleep
Settings = StreamScorerSettings
_settings: Settings | None = None


def settings() -> Settings:
    global _settings
    _settings = _settings or Settings.from_env()
    return _settings


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    scorer = StreamScorer(settings(), clients, logger=logger, metrics=metrics, sleep=sleep)
    return scorer.handle(event, context)


if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
    # Cold start in Lambda: fail fast on missing settings, and make the client once.
    settings()
    clients("sagemaker-runtime")
