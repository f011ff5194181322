"""Streaming scoring for one endpoint: a Kinesis input stream, the stream scorer Lambda
(`functions/stream_scorer`), a Kinesis output stream for the scores, and the queue a poison
batch lands in. A single stage adds it to its control functions; in a fleet, each model that
declares `stream_scoring` gets its own in its monitoring stack of every environment (a scorer
serves one endpoint: `ENDPOINT_NAME`).

`add_stream_scoring` adds the parts to the given scope itself, under the ids a single stage has
always had (`ScoringInput`, `ScoringOutput`, `StreamScorer`, `ScoringFailures`), so an existing
stage's streams are not replaced."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from mlops_kit import contract

from ..config import StageConfig
from .kit_function import FunctionSpec, grant_contract, kit_function

SCORER = FunctionSpec("stream_scorer", 256, Duration.minutes(1))


@dataclass(frozen=True)
class StreamScoringParts:
    input_stream: kinesis.Stream
    output_stream: kinesis.Stream
    function: lambda_.Function
    role: iam.Role
    failures: sqs.Queue


def scoring_streams(scope: Construct, key: kms.IKey) -> tuple[kinesis.Stream, kinesis.Stream]:
    # Streams hold scoring traffic only (24 h): destroyed with the stack in every stage, or
    # they bill per stream-hour after `cdk destroy`.
    common = dict(encryption=kinesis.StreamEncryption.KMS, encryption_key=key,
                  stream_mode=kinesis.StreamMode.ON_DEMAND, retention_period=Duration.hours(24),
                  removal_policy=RemovalPolicy.DESTROY)
    return (kinesis.Stream(scope, "ScoringInput", **common),
            kinesis.Stream(scope, "ScoringOutput", **common))


def add_stream_scoring(scope: Construct, *, cfg: StageConfig, endpoint_name: str,
                       feature_order: tuple[str, ...], streams: tuple[kinesis.Stream,
                                                                      kinesis.Stream],
                       layer: lambda_.ILayerVersion, functions_dir: Path,
                       requirements_dir: Path) -> StreamScoringParts:
    """The scorer of `endpoint_name` between `streams` (input, output), in `scope`. The caller
    grants the key's use (`ArtifactStore.grant_key_use`)."""
    input_stream, output_stream = streams
    environment = contract.function(SCORER.name).environment(
        endpoint_name=endpoint_name, output_stream_name=output_stream.stream_name,
        feature_order=feature_order or None)
    function, role = kit_function(scope, SCORER, cfg, layer=layer, functions_dir=functions_dir,
                                  requirements_dir=requirements_dir, environment=environment)
    arn = f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}"
    resources = {contract.ENDPOINT: [f"{arn}:endpoint/{endpoint_name.lower()}"],
                 contract.OUTPUT_STREAM: [output_stream.stream_arn], contract.ANY: ["*"]}
    grant_contract(SCORER.name, role, lambda key: resources[key])
    failures = sqs.Queue(scope, "ScoringFailures", encryption=sqs.QueueEncryption.SQS_MANAGED,
                         enforce_ssl=True, retention_period=Duration.days(14))
    function.add_event_source(sources.KinesisEventSource(
        input_stream, starting_position=lambda_.StartingPosition.LATEST, batch_size=100,
        bisect_batch_on_error=True, retry_attempts=3, report_batch_item_failures=True,
        max_record_age=Duration.hours(1), on_failure=sources.SqsDlq(failures)))
    return StreamScoringParts(input_stream, output_stream, function, role, failures)


class ModelStreamScoring(Construct):
    """A fleet model's streaming scoring in one environment (`add_stream_scoring` under its
    own id, with its own Powertools layer reference)."""

    def __init__(self, scope: Construct, id: str, *, cfg: StageConfig, endpoint_name: str,
                 feature_order: tuple[str, ...], key: kms.IKey, functions_dir: Path,
                 requirements_dir: Path) -> None:
        from .kit_function import powertools_layer

        super().__init__(scope, id)
        self.parts = add_stream_scoring(
            self, cfg=cfg, endpoint_name=endpoint_name, feature_order=feature_order,
            streams=scoring_streams(self, key), layer=powertools_layer(self),
            functions_dir=functions_dir, requirements_dir=requirements_dir)
