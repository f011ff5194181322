"""Fault and abuse suite [E]: property-based fuzzing of every Lambda handler's event.

Each handler gets arbitrary JSON values and mutations of the real event shapes (keys dropped,
wrong types, huge/negative/NaN numbers, odd strings). The property: no unhandled exception, a
result that names why the event was refused, and no state change (endpoint weights, model
packages, the DynamoDB ledger, metrics) unless the event was one the handler may act on.

The moto world is built once per module (a registry and an endpoint cost seconds to set up),
so every hypothesis example costs only the handler call and a state snapshot.
"""

from __future__ import annotations

import base64
import copy
import csv
import io
import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from mlops_kit.aws.ledger import create_table_request

from builders import load_handler, registration

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "fixtures" / "events"
REGION, ACCOUNT = "us-east-1", "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/sagemaker-execution"
IMAGE_URI = f"683313688378.dkr.ecr.{REGION}.amazonaws.com/sagemaker-xgboost:3.0-5"
# The names the fixture events carry, so mutations of them reach the controllers' decisions.
GROUP, ENDPOINT = "fraud-scorer", "fraud-scorer-prod"
LEDGER, IDEMPOTENCY, BUCKET = "mlops-ledger", "mlops-idempotency", "kit-artifacts"

FUZZ = settings(max_examples=20, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def fixture_event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


class Context:
    function_name = "fuzz"
    memory_limit_in_mb = 256
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:fuzz"
    aws_request_id = "req-fuzz"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


# -- strategies --------------------------------------------------------------------------

json_scalars = (st.none() | st.booleans() | st.integers() | st.floats()
                | st.text(max_size=30))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=4),
    max_leaves=15)
weird_values = st.one_of(
    json_scalars,
    st.integers(min_value=-(2 ** 80), max_value=2 ** 80),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -1e308, 0, -1, 2 ** 63,
                     "", " ", "NaN", "inf", "-1", "1e400", "9" * 40, "ALARM", "OK", "Approved",
                     "2026-13-45T99:99:99Z", "0001-01-01T00:00:00", "9999-12-31T23:59:59Z",
                     "2026-11-20T09:16:40.402+0000", "\u202e\x00\ufeff", "💥" * 10, "a" * 5000,
                     "fraud-scorer-prod", "{\"version\": [", [], {}, [None], {"": None}]),
    st.lists(json_scalars, max_size=3),
    st.dictionaries(st.text(max_size=8), json_scalars, max_size=3))


def _paths(value: Any, prefix: tuple = ()):
    for key, child in (value.items() if isinstance(value, dict)
                       else enumerate(value) if isinstance(value, list) else ()):
        yield prefix + (key,)
        yield from _paths(child, prefix + (key,))


@st.composite
def mutations_of(draw, base: dict) -> dict:
    """The real event with one to four of its fields dropped or replaced by a wrong value."""
    event = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(event))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = event
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(draw(weird_values))  # the samples are shared
    return event


def names_a_problem(reason: Any) -> bool:
    return isinstance(reason, str) and len(reason.strip()) > 3


# -- the moto world, once per module -----------------------------------------------------

@pytest.fixture(scope="module")
def world():
    """Registry (versions 1-3 in SageMaker + ledger), idempotency table, S3 baselines and an
    endpoint serving v1 at 1 with v2 warm at 0, after a rollback to v1 a moment ago (so a
    well-formed alarm finds the cooldown and a well-formed approval finds nothing to do)."""
    with pytest.MonkeyPatch.context() as mp, mock_aws():
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_LAMBDA_FUNCTION_NAME"):
            mp.delenv(name, raising=False)
        env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION,
               "AWS_REGION": REGION, "POWERTOOLS_TRACE_DISABLED": "true",
               "POWERTOOLS_METRICS_NAMESPACE": "MLOpsKit/Fuzz",
               "ENDPOINT_NAME": ENDPOINT, "MLOPS_MODEL_GROUP": GROUP,
               "LEDGER_TABLE_NAME": LEDGER, "IDEMPOTENCY_TABLE_NAME": IDEMPOTENCY,
               "SAGEMAKER_EXECUTION_ROLE_ARN": ROLE_ARN,
               "DATA_CAPTURE_S3_URI": f"s3://{BUCKET}/capture",
               "DATA_CAPTURE_SAMPLING_PERCENT": "100", "ENDPOINT_INSTANCE_TYPE": "ml.m5.large",
               "CHAMPION_INSTANCE_COUNT": "1", "FALLBACK_INSTANCE_COUNT": "1",
               "WARM_FALLBACKS": "2", "SCHEDULE_MINUTES": "10",
               "OUTPUT_STREAM_NAME": "scores",
               "FEATURE_ORDER": "amount,hour,merchant_risk,card_age_days",
               "RECORD_ID_FIELD": "transaction_id"}
        for name, value in env.items():
            mp.setenv(name, value)
        yield build_world(mp)


def build_world(mp: pytest.MonkeyPatch) -> dict[str, Any]:
    from mlops_kit.aws.monitoring import S3Documents
    from mlops_kit.core import drift
    from mlops_kit.core.rotation import VariantWeight
    from mlops_kit.deploy.sagemaker_endpoint import SageMakerEndpoints
    from mlops_kit.registry.base import DeploymentRecord
    from mlops_kit.registry.sagemaker import SageMakerRegistry

    def client(service: str):
        return boto3.client(service, region_name=REGION)

    sagemaker, dynamodb, s3 = client("sagemaker"), client("dynamodb"), client("s3")
    dynamodb.create_table(**create_table_request(LEDGER))
    dynamodb.create_table(TableName=IDEMPOTENCY, BillingMode="PAY_PER_REQUEST",
                          KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
    s3.create_bucket(Bucket=BUCKET)
    baseline = {"features": {"amount": drift.numeric_baseline([float(i) for i in range(200)], 5),
                             "channel": drift.categorical_baseline(["pos"] * 7 + ["web"] * 3)},
                "schema": {"numeric": ["amount"], "categorical": ["channel"], "target": "y"}}
    evaluation = {"score_baseline": drift.numeric_baseline([i / 200 for i in range(200)], 5)}
    s3.put_object(Bucket=BUCKET, Key="runs/baseline.json", Body=json.dumps(baseline))
    s3.put_object(Bucket=BUCKET, Key="runs/evaluation.json", Body=json.dumps(evaluation))

    registry = SageMakerRegistry(GROUP, ledger_table=LEDGER, image_uri=IMAGE_URI,
                                 sagemaker_client=sagemaker, dynamodb_client=dynamodb)
    for run in (1, 2, 3):
        registry.register(registration(
            run, group=GROUP, artifact=f"s3://{BUCKET}/runs/{run}/model.tar.gz",
            lineage={"data": {}, "code": {}, "parameters": {}, "libraries": {},
                     "evaluation_uri": f"s3://{BUCKET}/runs/evaluation.json",
                     "drift_baseline": f"s3://{BUCKET}/runs/baseline.json"}))
    for version in (1, 2):
        registry.approve(version, actor="bob", reason="ship")
    endpoints = SageMakerEndpoints(sagemaker, execution_role_arn=ROLE_ARN)
    rolled_back = (VariantWeight("v1", 1, 1.0), VariantWeight("v2", 2, 0.0))
    endpoints.deploy(ENDPOINT, rolled_back, {v: registry.model_source(v) for v in (1, 2)})
    now = datetime.now(timezone.utc)
    history = [("promote-1", "promote", 1, (VariantWeight("v1", 1, 1.0),), now - timedelta(2)),
               ("promote-2", "promote", 2, (VariantWeight("v2", 2, 1.0),
                                            VariantWeight("v1", 1, 0.0)), now - timedelta(1)),
               ("rollback-0", "rollback", 1, rolled_back, now - timedelta(minutes=1))]
    for deployment_id, kind, version, variants, at in history:
        registry.record_deployment(DeploymentRecord(
            deployment_id, ENDPOINT, kind, version, variants, "bob", "setup",
            at.isoformat(timespec="milliseconds").replace("+00:00", "Z")))

    def load(function: str):
        return load_handler(function, mp, alias=f"fuzz_{function}_handler")

    world = {"sagemaker": sagemaker, "dynamodb": dynamodb, "s3": s3, "registry": registry,
             "endpoints": endpoints, "documents": S3Documents(s3),
             "cloudwatch": client("cloudwatch"), "load": load}
    # No handler call of this module may change it: every example compares against this.
    world["state"] = aws_state(world)
    return world


def table_items(dynamodb, table: str) -> list[str]:
    items = dynamodb.scan(TableName=table)["Items"]
    return sorted(json.dumps(item, sort_keys=True) for item in items)


def traffic(world) -> list[tuple]:
    view = world["endpoints"].describe(ENDPOINT)
    return sorted((v.variant_name, v.version, v.weight) for v in view.variants)


def aws_state(world) -> dict[str, Any]:
    """What a handler must not change when it refuses an event: traffic, versions, ledger."""
    sagemaker = world["sagemaker"]
    packages = sagemaker.list_model_packages(ModelPackageGroupName=GROUP)
    return {
        "variants": traffic(world),
        "endpoint_configs": sorted(c["EndpointConfigName"] for c in
                                   sagemaker.list_endpoint_configs()["EndpointConfigs"]),
        "packages": sorted((p["ModelPackageArn"], p["ModelApprovalStatus"])
                           for p in packages["ModelPackageSummaryList"]),
        "ledger": table_items(world["dynamodb"], LEDGER),
    }


# -- deployment controller ---------------------------------------------------------------


def control_handler(world, function: str, controller):
    """A control Lambda's handler on this world: its idempotency on the world's table, and the
    world's controller in place of the one it would build."""
    handler = world["load"](function)
    handler.persistence.client = world["dynamodb"]
    handler.controller.inject(controller)
    return handler

APPROVED = fixture_event("sagemaker-model-package-state-change.approved.json")
WRITEBACK = fixture_event("sagemaker-model-package-state-change.metadata-writeback.json")


@pytest.fixture(scope="module")
def deployment_handler(world):
    from mlops_kit.deploy.controller import DeploymentController, DeploymentSettings

    return control_handler(world, "deployment_controller", DeploymentController(
        world["registry"], world["endpoints"], DeploymentSettings(ENDPOINT)))


def approved(**detail: Any) -> dict:
    event = copy.deepcopy(APPROVED)
    event["detail"].update(detail)
    return event


@FUZZ
@given(event=json_values | mutations_of(APPROVED) | mutations_of(WRITEBACK))
# Regressions: each raised OverflowError/ValueError/OSError, or deployed a version nobody named.
@example(event=approved(ModelPackageVersion=float("inf")))
@example(event=approved(ModelPackageVersion=True))
@example(event=approved(ModelPackageVersion=1.5))
@example(event=approved(LastModifiedTime=1e300))
@example(event=approved(LastModifiedTime=float("nan")))
@example(event=approved(LastModifiedTime=-1e20))
@example(event=approved(ModelPackageVersion=2 ** 40))  # no such version: was UnknownVersionError
def test_deployment_controller_refuses_bad_events_without_touching_anything(
        world, deployment_handler, event):
    idempotency_before = table_items(world["dynamodb"], IDEMPOTENCY)

    result = deployment_handler.lambda_handler(event, Context())

    # Nothing in this world may deploy: v1 is serving ("unchanged"), v2 was rolled back and
    # v3 is not approved ("ignored"), any other version does not exist ("rejected").
    assert result["action"] in {"rejected", "ignored", "unchanged"}, result
    assert names_a_problem(result["reason"]), result
    assert aws_state(world) == world["state"]
    if result["action"] == "rejected":  # a rejection must not consume an idempotency key
        assert table_items(world["dynamodb"], IDEMPOTENCY) == idempotency_before


# -- rollback controller -----------------------------------------------------------------

ALARM_EVENTBRIDGE = fixture_event("cloudwatch-alarm-state-change.eventbridge.json")
ALARM_ACTION = fixture_event("cloudwatch-alarm.lambda-action.json")


@pytest.fixture(scope="module")
def rollback_handler(world):
    from mlops_kit.deploy.rollback import RollbackController

    return control_handler(world, "rollback_controller", RollbackController(
        world["registry"], world["endpoints"], managed_endpoints=[ENDPOINT]))


def with_value(event: dict, path: tuple, value: Any) -> dict:
    event = copy.deepcopy(event)
    parent = event
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return event


METRIC = ("configuration", "metrics", 0, "metricStat", "metric")


@FUZZ
@given(event=json_values | mutations_of(ALARM_EVENTBRIDGE) | mutations_of(ALARM_ACTION))
# Regressions: each raised AttributeError or TypeError while parsing.
@example(event=with_value(ALARM_ACTION, ("alarmData",), []))
@example(event=with_value(ALARM_ACTION, ("alarmData",), "fraud-scorer-prod-prediction-drift"))
@example(event=with_value(ALARM_EVENTBRIDGE, ("detail",), ["x"]))
@example(event=with_value(ALARM_EVENTBRIDGE, ("resources",), 5))
@example(event=with_value(ALARM_EVENTBRIDGE, ("resources",), {"a": 1}))
@example(event=with_value(ALARM_EVENTBRIDGE, ("detail", "configuration"), []))
@example(event=with_value(ALARM_EVENTBRIDGE, ("detail", "configuration", "metrics"), 5))
@example(event=with_value(ALARM_EVENTBRIDGE, ("detail",) + METRIC + ("dimensions",), [1]))
def test_rollback_controller_refuses_bad_alarms_without_shifting_traffic(
        world, rollback_handler, event):
    result = rollback_handler.lambda_handler(event, Context())

    # "none" / "no_healthy_fallback": a well-formed alarm of ours met the cooldown after the
    # rollback a minute ago (v2 is blocked anyway): decided, and nothing shifted.
    assert result["action"] in {"ignored", "none", "no_healthy_fallback"}, result
    assert names_a_problem(result["reason"]), result
    assert aws_state(world) == world["state"]


def test_the_rollback_world_is_one_where_a_real_alarm_is_decided_not_ignored(
        world, rollback_handler):
    """Guards the property above: the fixture alarm must reach the decision (cooldown), so
    the fuzzing covers both refusals and decisions that leave traffic alone."""
    result = rollback_handler.lambda_handler(copy.deepcopy(ALARM_EVENTBRIDGE), Context())
    assert result["action"] in {"none", "no_healthy_fallback"}, result


# -- drift monitor and probe -------------------------------------------------------------

class Sink(list):
    def put(self, data):
        self.extend(data)


SCHEDULED_AT = datetime(2026, 11, 20, 9, 15, tzinfo=timezone.utc)


def _runs_on(event: Any) -> bool:
    """Independent oracle: a scheduled event of EventBridge, stamped at most two 10-minute
    intervals before the function's clock and not more than 5 minutes after it."""
    if not (isinstance(event, dict) and event.get("source") == "aws.events"
            and event.get("detail-type") == "Scheduled Event"):
        return False
    try:
        at = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
    except (AttributeError, KeyError, TypeError, ValueError):
        return False
    at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    clock = SCHEDULED_AT + timedelta(minutes=1)
    return -timedelta(minutes=5) <= clock - at <= timedelta(minutes=20)


@pytest.fixture(scope="module")
def drift_handler(world):
    handler = world["load"]("drift_monitor")
    handler.clock = lambda: SCHEDULED_AT + timedelta(minutes=1)
    handler._deps.update(registry=world["registry"], endpoints=world["endpoints"],
                         documents=world["documents"], cloudwatch=world["cloudwatch"],
                         sink=Sink())
    return handler


SCHEDULED = {"version": "0", "id": "5f8e2c3a", "detail-type": "Scheduled Event",
             "source": "aws.events", "account": ACCOUNT, "time": "2026-11-20T09:15:00Z",
             "region": REGION, "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/drift"],
             "detail": {}}


@settings(FUZZ, max_examples=20)
@given(event=json_values | mutations_of(SCHEDULED))
# Regressions: a list event raised AttributeError, a bad time ValueError, year 1 OverflowError;
# a time without offset compared naive with aware datetimes.
@example(event=["x"])
@example(event=dict(SCHEDULED, time="garbage"))
@example(event=dict(SCHEDULED, time="0001-01-01T00:00:00Z"))
@example(event=dict(SCHEDULED, time="2026-11-20T09:15:00"))
@example(event=dict(SCHEDULED, time=5))
def test_drift_monitor_publishes_nothing_for_a_bad_event(world, drift_handler, event):
    sink = drift_handler._deps["sink"]
    sink.clear()

    result = drift_handler.lambda_handler(event, Context())

    assert traffic(world) == world["state"]["variants"]  # the monitor only ever reads
    if _runs_on(event):  # its own schedule's recent run: the window is measured
        assert result["status"] == "published", result
        assert sink and {d.dimensions.get("EndpointName") for d in sink} == {ENDPOINT}
    else:  # foreign, malformed or stale: nothing published (it could flip an alarm)
        assert result["status"] == "rejected", result
        assert sink == []


class FakeRuntime:
    """sagemaker-runtime answering one score per CSV row (the probe checks the row count)."""

    def invoke_endpoint(self, **kwargs):
        rows = kwargs["Body"].decode().strip().splitlines()
        return {"Body": io.BytesIO("\n".join(["0.05"] * len(rows)).encode())}


@pytest.fixture(scope="module")
def probe_handler(world):
    handler = world["load"]("probe")
    handler.clock = lambda: SCHEDULED_AT + timedelta(minutes=1)
    handler._deps.update(registry=world["registry"], endpoints=world["endpoints"],
                         documents=world["documents"], sink=Sink(), runtime=FakeRuntime())
    return handler


@settings(FUZZ, max_examples=15)
@given(event=json_values | mutations_of(SCHEDULED))
@example(event=None)
@example(event=SCHEDULED)
@example(event={"version": "0", "detail-type": "ELB Health Check", "source": "aws.elb"})
def test_probe_runs_on_its_schedule_only(world, probe_handler, event):
    probe_handler._deps["sink"].clear()
    result = probe_handler.lambda_handler(event, Context())
    assert traffic(world) == world["state"]["variants"]
    if not _runs_on(event):
        assert result["status"] == "rejected", result
        assert probe_handler._deps["sink"] == []
        return
    assert result["status"] == "probed"
    assert {name: r["ok"] for name, r in result["variants"].items()} == {"v1": True, "v2": True}
    assert {d.name for d in probe_handler._deps["sink"]} >= {"ProbeSuccess", "ProbeLatency"}


# -- stream scorer -----------------------------------------------------------------------

FEATURES = ("amount", "hour", "merchant_risk", "card_age_days")


class ScoringRuntime:
    """InvokeEndpoint as the model container behaves: one CSV row of 4 numbers (empty =
    missing) scores, anything else is a 4xx ModelError. Records every line it receives."""

    def __init__(self):
        self.lines: list[str] = []

    def invoke_endpoint(self, *, EndpointName, ContentType, Accept, Body, InferenceId):
        line = Body.decode("utf-8")
        self.lines.append(line)
        fields = next(csv.reader([line]))
        if len(fields) != len(FEATURES) or not all(_number_or_empty(f) for f in fields):
            raise ClientError({"Error": {"Code": "ModelError", "Message": "bad row"},
                               "ResponseMetadata": {"HTTPStatusCode": 424}}, "InvokeEndpoint")
        return {"Body": io.BytesIO(b"0.5"), "InvokedProductionVariant": "v1"}


def _number_or_empty(text: str) -> bool:
    try:
        return text == "" or math.isfinite(float(text))
    except ValueError:
        return False


class FakeKinesis:
    def __init__(self):
        self.records: list[dict] = []

    def put_records(self, *, StreamName, Records):
        self.records.extend(Records)
        return {"FailedRecordCount": 0,
                "Records": [{"SequenceNumber": str(n), "ShardId": "shardId-0"}
                            for n, _ in enumerate(Records)]}


@pytest.fixture(scope="module")
def stream_handler(world):
    handler = world["load"]("stream_scorer")
    handler.sleep = lambda seconds: None
    return handler


def kinesis_record(i: int, data: str) -> dict:
    sequence = f"4959033827149025660855969253836157109592157598913658{i:05d}"
    return {"kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": f"card-{i}",
                        "sequenceNumber": sequence, "data": data,
                        "approximateArrivalTimestamp": 1763562131.482},
            "eventSource": "aws:kinesis", "eventVersion": "1.0",
            "eventID": f"shardId-000000000000:{sequence}", "eventName": "aws:kinesis:record",
            "awsRegion": REGION,
            "eventSourceARN": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/transactions"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


feature_values = st.one_of(weird_values, st.floats(allow_nan=False, allow_infinity=False),
                           st.integers(-(10 ** 400), 10 ** 400))
json_transactions = st.fixed_dictionaries(
    {}, optional={name: feature_values for name in (*FEATURES, "transaction_id")}).map(
        lambda d: json.dumps(d).encode())
csv_lines = st.lists(st.one_of(st.text(max_size=8), st.floats().map(repr),
                               st.integers().map(str)), min_size=1, max_size=6).map(
    lambda values: ",".join(values).encode("utf-8", "surrogatepass"))
payloads = st.one_of(
    st.binary(max_size=60).map(b64),                      # random bytes
    json_transactions.map(b64), csv_lines.map(b64),       # JSON objects and CSV lines
    json_values.map(lambda v: b64(json.dumps(v).encode())),  # any JSON at all
    st.text(max_size=20),                                 # not base64 at all
)


@settings(FUZZ, max_examples=50)
@given(datas=st.lists(payloads, min_size=1, max_size=6))
@example(datas=[b64(b'{"amount": 1' + b"0" * 400 + b', "hour": 1, "merchant_risk": 1, '
                    b'"card_age_days": 1}')])  # was OverflowError, not a BadRecord
@example(datas=["!!!not base64", b64(b"1,2,3,4")])
def test_stream_scorer_reports_every_unscorable_record_and_outputs_only_scored_ones(
        stream_handler, datas):
    runtime, kinesis = ScoringRuntime(), FakeKinesis()
    stream_handler.clients.inject("sagemaker-runtime", runtime)
    stream_handler.clients.inject("kinesis", kinesis)
    event = {"Records": [kinesis_record(i, data) for i, data in enumerate(datas)]}
    sequences = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]

    try:
        response = stream_handler.lambda_handler(event, Context())
        failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    except BatchProcessingError:  # by design when no record of the batch scored
        failed = list(sequences)
    written = [json.loads(r["Data"])["sequence_number"] for r in kinesis.records]

    # Every record is accounted for exactly once: written out, or reported for a retry.
    assert sorted(failed + written) == sorted(sequences)
    # The endpoint only ever receives single CSV lines with one field per feature.
    for line in runtime.lines:
        assert "\n" not in line and "\r" not in line
        assert len(next(csv.reader([line]))) == len(FEATURES), line


@settings(FUZZ, max_examples=40)
@given(event=json_values | mutations_of({"Records": [kinesis_record(0, b64(b"1,2,3,4"))]}))
@example(event={})            # was UnexpectedBatchTypeError
@example(event={"Records": 5})     # was TypeError
@example(event=["x"])              # was AttributeError
@example(event={"Records": [{}, kinesis_record(1, b64(b"1,2,3,4"))]})
def test_stream_scorer_rejects_what_is_not_a_kinesis_batch_and_scores_nothing(
        stream_handler, event):
    runtime, kinesis = ScoringRuntime(), FakeKinesis()
    stream_handler.clients.inject("sagemaker-runtime", runtime)
    stream_handler.clients.inject("kinesis", kinesis)
    problem = stream_handler.batch_problem(event)

    try:
        response = stream_handler.lambda_handler(event, Context())
    except BatchProcessingError:
        assert problem is None  # a well-formed batch whose only record could not score
        assert kinesis.records == []
        return
    if problem:
        assert response == {"batchItemFailures": [], "rejected": problem}
        assert "Kinesis batch" in problem
        assert runtime.lines == [] and kinesis.records == []
    else:
        reported = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        assert len(kinesis.records) + len(reported) == len(event["Records"])


@settings(FUZZ, max_examples=200)
@given(data=st.binary(max_size=80) | json_transactions | csv_lines
       | json_values.map(lambda v: json.dumps(v).encode()))
def test_to_csv_gives_one_line_per_feature_or_a_bad_record_error(stream_handler, data):
    cfg = stream_handler.Settings.from_env({"ENDPOINT_NAME": ENDPOINT, "OUTPUT_STREAM_NAME": "s",
                                            "FEATURE_ORDER": ",".join(FEATURES)})
    try:
        line, _ = stream_handler.to_csv(data, cfg)
    except stream_handler.BadRecord as exc:
        assert names_a_problem(str(exc))
        return
    assert "\n" not in line and "\r" not in line
    assert len(next(csv.reader([line]))) == len(FEATURES)
