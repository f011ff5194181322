"""Drift monitor and probe Lambdas against moto (S3 capture, model package baselines) and the
Stubber (InvokeEndpoint): metrics come out as EMF, torn capture lines are counted."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from builders import baseline_documents
from mlops_kit.core.rotation import VariantWeight
from mlops_kit.registry.base import DeploymentRecord, RegistrationRequest
from mlops_kit.registry.sagemaker import SageMakerRegistry

from .conftest import IMAGE_URI, LEDGER, ROLE_ARN

ROOT = Path(__file__).resolve().parents[2]
GROUP, ENDPOINT, BUCKET = "fraud-scorer", "fraud-scorer-prod", "kit-artifacts"
FEATURES = ["amount", "channel"]


def capture_line(amount: float, channel: str, score: float, at: datetime) -> str:
    return json.dumps({"captureData": {
        "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
                          "data": f"{amount},{channel}", "encoding": "CSV"},
        "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT",
                           "data": f"{score}", "encoding": "CSV"}},
        "eventMetadata": {"eventId": "e", "inferenceTime": at.isoformat()}, "eventVersion": "0"})


@pytest.fixture()
def world(aws, sagemaker, dynamodb, make_client, monkeypatch):
    s3 = make_client("s3")
    s3.create_bucket(Bucket=BUCKET)
    baseline, evaluation, amounts = baseline_documents()
    s3.put_object(Bucket=BUCKET, Key="runs/1/baseline.json", Body=json.dumps(baseline))
    s3.put_object(Bucket=BUCKET, Key="runs/1/evaluation.json", Body=json.dumps(evaluation))
    registry = SageMakerRegistry(GROUP, ledger_table=LEDGER, image_uri=IMAGE_URI,
                                 sagemaker_client=sagemaker, dynamodb_client=dynamodb)
    registry.register(RegistrationRequest(
        model_group=GROUP, model_artifact="s3://kit-artifacts/runs/1/model.tar.gz",
        training_run_id="run-1", metrics={"aupr": 0.6}, latency={},
        gates=[{"gate": "min_aupr", "passed": True}],
        lineage={"data": {}, "code": {}, "parameters": {}, "libraries": {},
                 "evaluation_uri": f"s3://{BUCKET}/runs/1/evaluation.json",
                 "drift_baseline": f"s3://{BUCKET}/runs/1/baseline.json"},
        owner="alice", use_case="fraud"))
    registry.approve(1, actor="bob", reason="ship")
    from mlops_kit.deploy.sagemaker_endpoint import SageMakerEndpoints

    endpoints = SageMakerEndpoints(sagemaker, execution_role_arn=ROLE_ARN)
    variants = (VariantWeight("v1", 1, 1.0),)
    endpoints.deploy(ENDPOINT, variants, {1: registry.model_source(1)})
    registry.record_deployment(DeploymentRecord("p1", ENDPOINT, "promote", 1, variants, "bob",
                                                "ship", "2026-11-20T00:00:00.000Z"))
    now = datetime.now(timezone.utc)
    shifted = [capture_line(a * 3, "online", 0.2, now) for a in amounts[:400]]
    text = "\n".join(shifted) + '\n{"captureData": {"endpointInput"'  # torn last line
    s3.put_object(Bucket=BUCKET, Key=f"capture/{ENDPOINT}/v1/{now:%Y/%m/%d/%H}/a.jsonl",
                  Body=text)
    for name, value in {"ENDPOINT_NAME": ENDPOINT, "MLOPS_MODEL_GROUP": GROUP,
                        "LEDGER_TABLE_NAME": LEDGER, "DATA_CAPTURE_S3_URI": f"s3://{BUCKET}/capture",
                        "SCHEDULE_MINUTES": "10",
                        "POWERTOOLS_TRACE_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    from mlops_kit.aws.monitoring import S3Documents

    return registry, endpoints, S3Documents(s3), now


def load(monkeypatch, function: str):
    name = f"{function}_under_test"
    spec = importlib.util.spec_from_file_location(name, ROOT / "functions" / function / "handler.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


class Sink(list):
    def put(self, data):
        self.extend(data)


def test_drift_monitor_publishes_drift_of_the_champion(world, monkeypatch):
    registry, endpoints, documents, now = world
    handler = load(monkeypatch, "drift_monitor")
    sink = Sink()
    handler._deps.update(registry=registry, endpoints=endpoints, documents=documents, sink=sink)
    summary = handler.monitor(now + timedelta(minutes=1))
    assert summary["status"] == "published" and summary["records"] == {"v1": 401}
    from mlops_kit.monitoring.drift_monitor import UNREADABLE_LINE

    assert summary["skipped_reasons"] == {"v1": {UNREADABLE_LINE: 1}}
    by_name = {(d.name, tuple(sorted(d.dimensions.items()))): d.value for d in sink}
    assert by_name[("CaptureSkipped", (("EndpointName", ENDPOINT), ("VariantName", "v1")))] == 1
    worst = by_name[("FeaturePSIMax", (("EndpointName", ENDPOINT),))]
    assert worst > 0.25  # amounts tripled, all traffic online
    assert by_name[("PredictionPSI", (("EndpointName", ENDPOINT),))] > 0.25


def test_missing_settings_fail_at_cold_start(monkeypatch, world):
    monkeypatch.delenv("DATA_CAPTURE_S3_URI")
    with pytest.raises(Exception, match="DATA_CAPTURE_S3_URI"):
        load(monkeypatch, "drift_monitor")


def test_probe_invokes_every_variant_and_reports_failures(world, monkeypatch, make_client):
    registry, endpoints, documents, _ = world
    handler = load(monkeypatch, "probe")
    runtime = make_client("sagemaker-runtime", slot="probe")
    sink = Sink()
    handler._deps.update(registry=registry, endpoints=endpoints, documents=documents,
                         sink=sink, runtime=runtime)
    body = "\n".join(["0.05"] * 5)
    with Stubber(runtime) as stubber:
        stubber.add_response("invoke_endpoint", {
            "Body": StreamingBody(io.BytesIO(body.encode()), len(body)),
            "ContentType": "text/csv"}, {"EndpointName": ENDPOINT, "TargetVariant": "v1",
                                         "ContentType": "text/csv", "Accept": "text/csv",
                                         "Body": stubber_any()})
        result = handler.lambda_handler(scheduled(), _Context())
    assert result["variants"]["v1"]["ok"] is True
    assert [d.value for d in sink if d.name == "ProbeSuccess"] == [1.0]
    with Stubber(runtime) as stubber:
        stubber.add_client_error("invoke_endpoint", "ModelError", "boom", 424)
        result = handler.lambda_handler(scheduled(), _Context())
    assert result["variants"]["v1"]["ok"] is False
    assert "424" in result["variants"]["v1"]["detail"]


def scheduled() -> dict:
    """What the probe's EventBridge schedule delivers (only that runs it)."""
    return {"version": "0", "id": "s", "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "region": "us-east-1", "detail": {},
            "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/probe"]}


def test_the_probe_refuses_events_that_are_not_its_schedule(world, monkeypatch):
    handler = load(monkeypatch, "probe")
    sink = Sink()
    handler._deps.update(sink=sink)
    alb = {"requestContext": {"elb": {"targetGroupArn": "arn"}}, "httpMethod": "GET"}
    stale = dict(scheduled(), time="2026-01-01T00:00:00Z")
    for event in (None, [], alb, {}, stale):
        assert handler.lambda_handler(event, _Context())["status"] == "rejected"
    assert sink == []


def stubber_any():
    from botocore.stub import ANY

    return ANY


class _Context:
    function_name, memory_limit_in_mb, aws_request_id = "probe", 256, "r"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:probe"


def test_the_champions_sagemaker_metrics_are_republished_at_endpoint_level(make_client, aws):
    from mlops_kit.aws.monitoring import champion_service_metrics

    cloudwatch = make_client("cloudwatch")
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    for variant, errors in (("v2", 7.0), ("v1", 100.0)):
        cloudwatch.put_metric_data(Namespace="AWS/SageMaker", MetricData=[{
            "MetricName": "Invocation5XXErrors", "Value": errors, "Timestamp": now,
            "Dimensions": [{"Name": "EndpointName", "Value": ENDPOINT},
                           {"Name": "VariantName", "Value": variant}]}])
    data = champion_service_metrics(cloudwatch, ENDPOINT, "v2", now - timedelta(minutes=10),
                                    now + timedelta(minutes=1))
    errors = [d for d in data if d.name == "ChampionInvocation5XXErrors"]
    assert [d.value for d in errors] == [7.0]  # the champion's, not v1's
    assert errors[0].dimensions == {"EndpointName": ENDPOINT}


def test_the_drift_monitor_publishes_captured_records_and_invocations_without_capture(
        world, monkeypatch, make_client):
    """SageMaker's capture can stop silently (bucket policy, KMS): the monitor publishes what
    the capture held for the interval and the invocations SageMaker counted without any."""
    registry, endpoints, documents, now = world
    cloudwatch = make_client("cloudwatch")
    run = now.replace(second=0, microsecond=0) + timedelta(minutes=4)
    minutes = [run - timedelta(minutes=13 - i) for i in range(10)]  # [run - 13, run - 3)
    cloudwatch.put_metric_data(Namespace="AWS/SageMaker", MetricData=[{
        "MetricName": "Invocations", "Value": 30.0, "Timestamp": at, "Unit": "None",
        "Dimensions": [{"Name": "EndpointName", "Value": ENDPOINT},
                       {"Name": "VariantName", "Value": "v1"}]} for at in minutes])
    handler = load(monkeypatch, "drift_monitor")

    def published(at: datetime) -> dict:
        sink = Sink()
        handler._deps.clear()
        handler._deps.update(registry=registry, endpoints=endpoints, documents=documents,
                             sink=sink, cloudwatch=cloudwatch)
        summary = handler.monitor(at)
        assert summary["status"] == "published", summary
        return {d.name: d.value for d in sink if d.dimensions == {"EndpointName": ENDPOINT}}

    healthy = published(run)  # the capture of `world` was written within the window
    assert healthy["CaptureRecords"] == 401 and healthy["UncapturedInvocations"] == 0
    # An hour on, the same traffic but nothing captured: every invocation went uncaptured.
    later = run + timedelta(hours=1)
    cloudwatch.put_metric_data(Namespace="AWS/SageMaker", MetricData=[{
        "MetricName": "Invocations", "Value": 30.0, "Timestamp": at + timedelta(hours=1),
        "Unit": "None", "Dimensions": [{"Name": "EndpointName", "Value": ENDPOINT},
                                       {"Name": "VariantName", "Value": "v1"}]}
        for at in minutes])
    stopped = published(later)
    assert stopped["CaptureRecords"] == 0 and stopped["UncapturedInvocations"] == 300
    # No traffic, no capture: nothing is missing.
    quiet = published(later + timedelta(hours=1))
    assert quiet["CaptureRecords"] == 0 and quiet["UncapturedInvocations"] == 0


def test_the_drift_monitor_joins_landed_ground_truth_to_the_champions_scores(
        world, monkeypatch, make_client):
    """Labels landed in S3 during the run's interval, joined on inferenceId to the champion's
    captured scores: the AUPR datapoint is scikit-learn's on exactly those pairs."""
    from sklearn.metrics import average_precision_score

    from mlops_kit.aws.ground_truth import S3GroundTruth

    registry, endpoints, documents, now = world
    s3 = make_client("s3")
    rng = np.random.default_rng(3)
    y = [int(rng.random() < 0.3) for _ in range(120)]
    scores = [round(float(np.clip(0.4 * t + rng.normal(0.3, 0.2), 0, 1)), 3) for t in y]
    lines = []
    for i, score in enumerate(scores):
        line = json.loads(capture_line(20.0, "pos", score, now))
        line["eventMetadata"]["inferenceId"] = f"txn-{i}"
        lines.append(json.dumps(line))
    s3.put_object(Bucket=BUCKET, Key=f"capture/{ENDPOINT}/v1/{now:%Y/%m/%d/%H}/b.jsonl",
                  Body="\n".join(lines) + "\n")
    s3.put_object(Bucket=BUCKET, Key=f"ground-truth/{ENDPOINT}/{now:%Y/%m/%d/%H}/l.jsonl",
                  Body="".join(json.dumps({"inferenceId": f"txn-{i}", "label": t}) + "\n"
                               for i, t in enumerate(y)))
    monkeypatch.setenv("GROUND_TRUTH_S3_URI", f"s3://{BUCKET}/ground-truth")
    handler = load(monkeypatch, "drift_monitor")
    sink = Sink()
    handler._deps.update(registry=registry, endpoints=endpoints, documents=documents,
                         sink=sink, ground_truth=S3GroundTruth(s3))
    assert handler.monitor(now + timedelta(minutes=1))["status"] == "published"
    (aupr,) = [d for d in sink if d.name == "AUPR"]
    assert aupr.dimensions == {"EndpointName": ENDPOINT}
    assert aupr.value == pytest.approx(average_precision_score(y, scores))
    # Without a GROUND_TRUTH_S3_URI the run has no labels feed: no AUPR.
    monkeypatch.delenv("GROUND_TRUTH_S3_URI")
    handler = load(monkeypatch, "drift_monitor")
    sink = Sink()
    handler._deps.update(registry=registry, endpoints=endpoints, documents=documents,
                         sink=sink, ground_truth=S3GroundTruth(s3))
    handler.monitor(now + timedelta(minutes=1))
    assert "AUPR" not in {d.name for d in sink}
