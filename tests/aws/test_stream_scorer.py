"""The streaming scorer with real Kinesis event shapes: the Stubber stands in for
sagemaker-runtime (moto's InvokeEndpoint returns canned data and never fails), moto for the
Kinesis and Firehose outputs."""

from __future__ import annotations

import base64
import csv
import io
import json
from dataclasses import dataclass

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

import builders
ENDPOINT = "fraud-scorer-prod"
FEATURES = "amount,hour,merchant_risk,card_age_days"
STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/transactions"


@dataclass
class LambdaContext:
    function_name: str = "stream-scorer"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:stream-scorer"
    aws_request_id: str = "5e0b7c1e-8a3c-4c4e-9d51-6f6f1a2b3c4d"


def kinesis_event(*payloads: bytes) -> dict:
    """The event Lambda's Kinesis event source mapping delivers (data base64-encoded)."""
    records = []
    for i, data in enumerate(payloads):
        sequence = f"49590338271490256608559692538361571095921575989136588{i:03d}"
        records.append({
            "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": f"card-{i}",
                        "sequenceNumber": sequence,
                        "data": base64.b64encode(data).decode("ascii"),
                        "approximateArrivalTimestamp": 1763562131.482},
            "eventSource": "aws:kinesis", "eventVersion": "1.0",
            "eventID": f"shardId-000000000000:{sequence}", "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::123456789012:role/stream-scorer",
            "awsRegion": "us-east-1", "eventSourceARN": STREAM_ARN})
    return {"Records": records}


def sequence(event: dict, index: int) -> str:
    return event["Records"][index]["kinesis"]["sequenceNumber"]


@pytest.fixture()
def load_handler(monkeypatch):
    """A fresh copy of the handler module per test, with its environment set by monkeypatch:
    module state (settings, clients) cannot leak between tests."""
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "stream-scorer")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "MLOpsKit/Scoring")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")

    def load(**env: str):
        for name in ("ENDPOINT_NAME", "OUTPUT_STREAM_NAME", "OUTPUT_DELIVERY_STREAM_NAME",
                     "FEATURE_ORDER", "RECORD_ID_FIELD", "ID_COLUMNS", "LABEL_COLUMN",
                     "DATA_COLUMNS"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return builders.load_handler("stream_scorer", monkeypatch)
    return load


@pytest.fixture()
def runtime(make_client):
    client = make_client("sagemaker-runtime", slot="stub")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def scored(stubber, body: str, line: str, inference_id: str, variant: str = "v7"):
    data = body.encode()
    stubber.add_response(
        "invoke_endpoint",
        {"Body": StreamingBody(io.BytesIO(data), len(data)), "ContentType": "text/csv",
         "InvokedProductionVariant": variant},
        {"EndpointName": ENDPOINT, "ContentType": "text/csv", "Accept": "text/csv",
         "Body": line.encode(), "InferenceId": inference_id})


def read_stream(kinesis, name: str) -> list[dict]:
    shard = kinesis.list_shards(StreamName=name)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName=name, ShardId=shard,
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    return [json.loads(r["Data"]) for r in kinesis.get_records(ShardIterator=iterator)["Records"]]


def test_records_are_scored_and_failures_reported_one_by_one(load_handler, runtime, aws,
                                                             make_client, capsys):
    kinesis = make_client("kinesis")
    kinesis.create_stream(StreamName="scores", ShardCount=1)
    handler = load_handler(ENDPOINT_NAME=ENDPOINT, OUTPUT_STREAM_NAME="scores",
                           FEATURE_ORDER=FEATURES, RECORD_ID_FIELD="transaction_id")
    client, stubber = runtime
    handler.clients.inject("sagemaker-runtime", client)
    handler.clients.inject("kinesis", kinesis)
    event = kinesis_event(
        json.dumps({"transaction_id": "tx-1", "hour": 3, "amount": 812.5, "merchant_risk": 0.9,
                    "card_age_days": 12}).encode(),
        b'{"transaction_id": "tx-2", "amount": ',                       # torn JSON
        b"15.0,14,0.1,800",                                             # raw CSV
        json.dumps({"transaction_id": "tx-4", "amount": 1, "hour": 2, "merchant_risk": 0.2,
                    "card_age_days": 5}).encode(),                      # endpoint says 4xx
        json.dumps({"transaction_id": "tx-5", "amount": 3}).encode(),   # missing features
    )
    scored(stubber, "0.93\n", "812.5,3,0.9,12", "tx-1")
    scored(stubber, "0.02", "15,14,0.1,800", sequence(event, 2), variant="v6")
    stubber.add_client_error("invoke_endpoint", "ModelError",
                             "Received client error (400) from primary with message "
                             "\"feature_names mismatch\"", 424)

    response = handler.lambda_handler(event, LambdaContext())

    assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == sorted(
        [sequence(event, 1), sequence(event, 3), sequence(event, 4)])
    out = read_stream(kinesis, "scores")
    assert [(o["id"], o["score"], o["variant"], o["endpoint"]) for o in out] == [
        ("tx-1", 0.93, "v7", ENDPOINT), (None, 0.02, "v6", ENDPOINT)]
    assert out[1]["sequence_number"] == sequence(event, 2)
    assert out[0]["partition_key"] == "card-0"
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines()
              if line.startswith("{")]
    reasons = {entry["sequence_number"]: entry["reason"] for entry in logged
               if entry.get("message") == "record not scored"}
    assert reasons[sequence(event, 1)].startswith("not valid JSON")
    assert "424 ModelError" in reasons[sequence(event, 3)]
    assert reasons[sequence(event, 4)] == "missing feature(s): hour, merchant_risk, card_age_days"
    emf = next(entry for entry in logged if "_aws" in entry)
    assert (emf["RecordsReceived"], emf["RecordsScored"], emf["RecordsNotScored"],
            emf["EndpointName"]) == ([5.0], [2.0], [3.0], ENDPOINT)


def test_scores_go_to_firehose_in_batches(load_handler, runtime, aws, make_client):
    s3 = make_client("s3")
    s3.create_bucket(Bucket="scores")
    firehose = make_client("firehose")
    firehose.create_delivery_stream(
        DeliveryStreamName="scores", DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={"RoleARN": "arn:aws:iam::123456789012:role/fh",
                                            "BucketARN": "arn:aws:s3:::scores",
                                            "Prefix": "scored/"})
    handler = load_handler(ENDPOINT_NAME=ENDPOINT, OUTPUT_DELIVERY_STREAM_NAME="scores",
                           FEATURE_ORDER=FEATURES)
    client, stubber = runtime
    handler.clients.inject("sagemaker-runtime", client)
    handler.clients.inject("firehose", firehose)
    lines = [f"{i}.5,{i},0.{i},{i * 10}" for i in range(1, 6)]
    event = kinesis_event(*(line.encode() for line in lines))
    calls = []
    firehose.meta.events.register("provide-client-params.firehose.PutRecordBatch",
                                  lambda params, **_: calls.append(len(params["Records"])))
    for i, line in enumerate(lines):
        scored(stubber, f"0.{i}", line, sequence(event, i))

    assert handler.lambda_handler(event, LambdaContext()) == {"batchItemFailures": []}
    assert calls == [5]
    (key,) = [o["Key"] for o in s3.list_objects_v2(Bucket="scores")["Contents"]]
    body = s3.get_object(Bucket="scores", Key=key)["Body"].read().decode()
    assert [json.loads(line)["score"] for line in body.splitlines()] == [0.0, 0.1, 0.2, 0.3, 0.4]


def test_output_entries_that_fail_are_retried_then_reported(load_handler, runtime, make_client):
    handler = load_handler(ENDPOINT_NAME=ENDPOINT, OUTPUT_STREAM_NAME="scores")
    client, stubber = runtime
    kinesis = make_client("kinesis", slot="stub")
    handler.clients.inject("sagemaker-runtime", client)
    handler.clients.inject("kinesis", kinesis)
    sleeps = builders.Sleeps()
    handler.sleep = sleeps
    event = kinesis_event(b"1,2,3", b"4,5,6")
    scored(stubber, "0.5", "1,2,3", sequence(event, 0))
    scored(stubber, "0.6", "4,5,6", sequence(event, 1))
    throttled = {"ErrorCode": "ProvisionedThroughputExceededException",
                 "ErrorMessage": "Rate exceeded for shard shardId-000000000000"}
    ok = {"SequenceNumber": "1", "ShardId": "shardId-000000000000"}
    with Stubber(kinesis) as out:
        out.add_response("put_records", {"FailedRecordCount": 1, "Records": [ok, throttled]})
        for _ in range(2):  # the second record keeps failing
            out.add_response("put_records", {"FailedRecordCount": 1, "Records": [throttled]},
                             {"StreamName": "scores", "Records": [
                                 {"Data": ANY, "PartitionKey": "card-1"}]})
        response = handler.lambda_handler(event, LambdaContext())
        out.assert_no_pending_responses()
    assert response == {"batchItemFailures": [{"itemIdentifier": sequence(event, 1)}]}
    assert len(sleeps) == 2


def test_a_batch_where_nothing_scores_fails_whole(load_handler, runtime):
    handler = load_handler(ENDPOINT_NAME=ENDPOINT, OUTPUT_STREAM_NAME="scores",
                           FEATURE_ORDER=FEATURES)
    client, _ = runtime
    handler.clients.inject("sagemaker-runtime", client)
    with pytest.raises(BatchProcessingError):
        handler.lambda_handler(kinesis_event(b"{not json", b"1,2"), LambdaContext())


def test_settings_are_read_once_and_fail_with_the_names_of_what_is_missing(load_handler):
    handler = load_handler(OUTPUT_STREAM_NAME="a", OUTPUT_DELIVERY_STREAM_NAME="b")
    with pytest.raises(handler.SettingsError, match="ENDPOINT_NAME.*exactly one"):
        handler.settings()
    settings = handler.Settings.from_env({"ENDPOINT_NAME": "e", "OUTPUT_DELIVERY_STREAM_NAME": "d",
                                          "FEATURE_ORDER": " a, b ,c"})
    assert (settings.output_kind, settings.output_name, settings.feature_order,
            settings.record_id_field) == ("firehose", "d", ("a", "b", "c"), "id")


def test_a_cold_start_in_lambda_fails_fast(load_handler, monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "stream-scorer")
    with pytest.raises(Exception, match="ENDPOINT_NAME"):
        load_handler(OUTPUT_STREAM_NAME="scores")


@pytest.mark.parametrize("data,expected", [
    (b'{"amount": "12.50", "hour": 3, "merchant_risk": null, "card_age_days": true}',
     "12.5,3,,1"),
    (b'{"features": {"amount": 1, "hour": 2, "merchant_risk": 0.5, "card_age_days": 9}}',
     "1,2,0.5,9"),
    (b"[1, 2, 0.5, 9]", "1,2,0.5,9"),
    (b" 1.0, 2 ,0.5,9\n", "1,2,0.5,9"),
    # Categorical values travel as text, quoted when CSV needs it.
    (b'{"amount": 1, "hour": "night", "merchant_risk": "a,b", "card_age_days": 2}',
     '1,night,"a,b",2'),
])
def test_features_become_one_csv_line_in_order(load_handler, data, expected):
    handler = load_handler(ENDPOINT_NAME=ENDPOINT, OUTPUT_STREAM_NAME="s", FEATURE_ORDER=FEATURES)
    line, _ = handler.to_csv(data, handler.settings())
    assert line == expected


@pytest.mark.parametrize("data,match", [
    (b'{"amount": "a\\nb", "hour": 1, "merchant_risk": 1, "card_age_days": 1}', "line break"),
    (b'{"amount": [1', "not valid JSON"),
    (b'["a", 1]', "2 values for 4"),
    (b'"just a string"', "1 CSV values for 4"),
    (b"1,2,3", "3 CSV values for 4"),
    (b"1,2\n3,4", "one line"),
    (b"\xff\xfe", "UTF-8"),
    (b"   ", "empty"),
])
def test_records_that_cannot_be_scored_say_why(load_handler, data, match):
    handler = load_handler(ENDPOINT_NAME=ENDPOINT, OUTPUT_STREAM_NAME="s", FEATURE_ORDER=FEATURES)
    with pytest.raises(handler.BadRecord, match=match):
        handler.to_csv(data, handler.settings())


# -- the one id/label rule ------------------------------------------------------------------

class RecordingRuntime:
    """sagemaker-runtime that scores any features line 0.5 and keeps what it was sent."""

    def __init__(self):
        self.calls: list[tuple[str, str]] = []

    def invoke_endpoint(self, *, EndpointName, ContentType, Accept, Body, InferenceId):
        self.calls.append((Body.decode(), InferenceId))
        return {"Body": io.BytesIO(b"0.5"), "InvokedProductionVariant": "v3"}


def sample_transaction() -> dict:
    """A row of the sample data as `mlops data generate` writes it: id, features, label."""
    from mlops_pipelines.steps.schema import FRAUD_SAMPLE_SCHEMA as schema

    row = {name: 1.5 + i for i, name in enumerate(schema.numeric)}
    row.update({name: f"c{i}" for i, name in enumerate(schema.categorical)})
    return {"transaction_id": "tx-0001-00000007", **row, "is_fraud": 1}


def test_the_sample_defaults_are_the_sample_schemas():
    from mlops_pipelines.steps.schema import FRAUD_SAMPLE_SCHEMA

    from mlops_kit.aws import stream_records

    assert stream_records.SAMPLE_ID_COLUMNS == FRAUD_SAMPLE_SCHEMA.id_columns
    assert stream_records.SAMPLE_LABEL == FRAUD_SAMPLE_SCHEMA.target


def test_a_sample_record_is_scored_as_mlops_stream_scores_it_with_its_ids_passed_through(
        load_handler, aws, make_client):
    """Whichever layout a sample transaction comes in (a JSON object with its id and label,
    a CSV line in the data's column order with or without the label), the endpoint is sent
    the features RowReader (the `mlops stream` and endpoint rule) reads, and the output
    carries the id by name."""
    from mlops_pipelines.steps.inference import FeatureSpec, RowReader
    from mlops_pipelines.steps.schema import FRAUD_SAMPLE_SCHEMA as schema

    kinesis = make_client("kinesis")
    kinesis.create_stream(StreamName="scores", ShardCount=1)
    handler = load_handler(ENDPOINT_NAME=ENDPOINT, OUTPUT_STREAM_NAME="scores",
                           FEATURE_ORDER=",".join(schema.features))
    runtime = RecordingRuntime()
    handler.clients.inject("sagemaker-runtime", runtime)
    handler.clients.inject("kinesis", kinesis)
    row = sample_transaction()
    data_order = [row[c] for c in schema.data_columns]
    event = kinesis_event(
        json.dumps(row).encode(),
        ",".join(map(str, data_order)).encode(),
        ",".join(map(str, data_order[:-1])).encode(),     # without the label
        json.dumps({"inferenceId": "req-9", **row}).encode())

    assert handler.lambda_handler(event, LambdaContext()) == {"batchItemFailures": []}

    features, ids = RowReader(FeatureSpec(schema.features, {}, schema.target, schema.id_columns,
                                          schema.data_columns)).split_record(row)
    expected = [str(v) if name in schema.categorical else float(v)
                for name, v in zip(schema.features, features)]
    for line, _ in runtime.calls:
        sent = next(csv.reader([line]))
        assert [v if name in schema.categorical else float(v)
                for name, v in zip(schema.features, sent)] == expected
    assert [inference_id for _, inference_id in runtime.calls] == [
        ids[0], ids[0], ids[0], "req-9"]
    out = read_stream(kinesis, "scores")
    assert [(o["transaction_id"], o["id"], o["score"]) for o in out] == [
        ("tx-0001-00000007", "tx-0001-00000007", 0.5)] * 4
    assert "is_fraud" not in out[0] and out[3]["inferenceId"] == "req-9"


def test_a_key_that_is_no_feature_id_or_label_is_refused(load_handler):
    handler = load_handler(ENDPOINT_NAME=ENDPOINT, OUTPUT_STREAM_NAME="s", FEATURE_ORDER=FEATURES)
    record = {"amount": 1, "hour": 2, "merchant_risk": 0.5, "card_age_days": 9, "amonut": 3}
    with pytest.raises(handler.BadRecord, match="unknown feature.*amonut"):
        handler.to_csv(json.dumps(record).encode(), handler.settings())


def test_the_data_columns_come_from_the_environment(load_handler):
    handler = load_handler(ENDPOINT_NAME=ENDPOINT, OUTPUT_STREAM_NAME="s", FEATURE_ORDER="a,b",
                           ID_COLUMNS="key", LABEL_COLUMN="y", DATA_COLUMNS="b,key,y,a")
    assert handler.to_csv(b"2,k-1,0,1", handler.settings()) == ("1,2", "k-1")
    assert handler.to_csv(b"2,k-1,1", handler.settings()) == ("1,2", "k-1")
    with pytest.raises(handler.BadRecord, match="5 CSV values for 2 features.*b, key, y, a"):
        handler.to_csv(b"1,2,3,4,5", handler.settings())
