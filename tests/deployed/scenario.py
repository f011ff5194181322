"""A stage's life in the deployed twin: versions registered, approvals deployed, probes,
drift-monitor runs on the template's schedule, alarms, a rollback, stream scoring. Every
function runs as its own role (`twin.as_function`), its handler imported fresh with exactly its
template environment and wired by `mlops_kit.homes.aws` (no client or controller injected);
what it prints as EMF reaches moto's CloudWatch as CloudWatch Logs would put it."""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any


from builders import baseline_documents  # noqa: F401  (the deployed tests take it from here)
from builders import moto_update_endpoint
from mlops_kit.monitoring.metrics import MetricDatum
from mlops_kit.registry.base import RegistrationRequest

from .conftest import Context, event, load_handler
from .twin import ACCOUNT, REGION, as_function

IMAGE_URI = f"683313688378.dkr.ecr.{REGION}.amazonaws.com/sagemaker-xgboost:3.0-5"
FEATURES = ("amount", "channel")


def capture_line(amount: float, channel: str, score: float, at: datetime,
                 inference_id: str | None = None) -> str:
    metadata: dict[str, Any] = {"eventId": f"e-{at.timestamp()}-{amount}",
                                "inferenceTime": at.isoformat()}
    if inference_id:
        metadata["inferenceId"] = inference_id
    return json.dumps({"captureData": {
        "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
                          "data": f"{amount},{channel}", "encoding": "CSV"},
        "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT",
                           "data": f"{score}", "encoding": "CSV"}},
        "eventMetadata": metadata, "eventVersion": "0"})


def scheduled_event(at: datetime, rule_arn: str) -> dict:
    return {"version": "0", "id": f"sched-{at.timestamp()}", "detail-type": "Scheduled Event",
            "source": "aws.events", "account": ACCOUNT, "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION, "resources": [rule_arn], "detail": {}}


def emf_data(printed: str) -> list[MetricDatum]:
    """What CloudWatch Logs extracts from a function's EMF lines: one datapoint per value (a
    metric's value may be a number or a list of numbers), stamped with `_aws.Timestamp`."""
    data = []
    for line in printed.splitlines():
        line = line.strip()
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        document = json.loads(line)
        meta = document.get("_aws", {})
        if "CloudWatchMetrics" not in meta:
            continue
        at = datetime.fromtimestamp(meta["Timestamp"] / 1000, tz=timezone.utc)
        for directive in meta["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"] or [[]]:
                dims = {k: str(document[k]) for k in dimension_set}
                for metric in directive["Metrics"]:
                    values = document[metric["Name"]]
                    for value in values if isinstance(values, list) else [values]:
                        data.append(MetricDatum(metric["Name"], float(value), dims, at,
                                                metric.get("Unit", "None"),
                                                directive["Namespace"]))
    return data


def _percentile_statistics(original):
    """moto's GetMetricData answers None for percentile statistics (pNN); CloudWatch computes
    them. Nearest rank, as `core.alarms.aggregate` does, over the raw datapoints."""
    def get_statistics_for_type(self, stat: str):
        if re.fullmatch(r"p\d+(\.\d+)?", stat):
            values = sorted(float(md.value) for md in self.metric_data)
            if not values:
                return None
            rank = math.ceil(float(stat[1:]) / 100 * len(values))
            return values[max(rank, 1) - 1]
        return original(self, stat)
    return get_statistics_for_type


def register_versions(registry, s3, bucket: str, versions: int) -> Any:
    """Versions 1..`versions` as the pipeline registers them into `registry`, their baseline
    and evaluation put in `bucket`. Returns the baseline's sample amounts."""
    baseline, evaluation, amounts = baseline_documents()
    for run in range(1, versions + 1):
        prefix = f"pipeline-runs/run-{run}"
        uri = f"s3://{bucket}/{prefix}"
        for name, document in (("baseline", baseline), ("evaluation", evaluation)):
            s3.put_object(Bucket=bucket, Key=f"{prefix}/{name}.json", Body=json.dumps(document))
        registry.register(RegistrationRequest(
            model_group=registry.model_group, model_artifact=f"{uri}/model.tar.gz",
            training_run_id=f"run-{run}", metrics={"aupr": 0.6}, latency={},
            gates=[{"gate": "min_aupr", "passed": True}],
            lineage={"data": {}, "code": {}, "parameters": {}, "libraries": {},
                     "evaluation_uri": f"{uri}/evaluation.json",
                     "drift_baseline": f"{uri}/baseline.json"},
            owner="alice", use_case="fraud"))
    return amounts


@dataclass
class Run:
    function: str
    at: datetime | None
    result: Any
    metrics: list[MetricDatum]


@dataclass
class Scenario:
    world: dict
    monkeypatch: Any
    capsys: Any
    runs: list[Run] = field(default_factory=list)
    keys: dict[str, set[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from moto.sagemaker.responses import SageMakerResponse

        self.stage = self.world["stage"]
        self.admin = self.world["admin"]
        out = self.stage.output
        self.group = out(self.stage.stateful, "MlopsModelGroup")
        self.endpoint = out(self.stage.control, "EndpointName")
        self.ledger = out(self.stage.stateful, "LedgerTableName")
        self.artifacts = out(self.stage.stateful, "ArtifactBucketName")
        self.capture_uri = out(self.stage.stateful, "CaptureS3Uri")
        self.monkeypatch.setattr(SageMakerResponse, "update_endpoint", moto_update_endpoint,
                                 raising=False)
        from moto.cloudwatch.models import Statistics

        self.monkeypatch.setattr(Statistics, "get_statistics_for_type",
                                 _percentile_statistics(Statistics.get_statistics_for_type))

    # -- setup, as the test ---------------------------------------------------------------
    def registry(self):
        from mlops_kit.registry.sagemaker import SageMakerRegistry

        return SageMakerRegistry(self.group, ledger_table=self.ledger, image_uri=IMAGE_URI,
                                 sagemaker_client=self.admin("sagemaker"),
                                 dynamodb_client=self.admin("dynamodb"))

    def register(self, versions: int = 2) -> None:
        self.amounts = register_versions(self.registry(), self.admin("s3"), self.artifacts,
                                         versions)

    def approve(self, version: int) -> dict:
        """A scientist approves; SageMaker emits the state change (the real sample's shape)."""
        self.registry().approve(version, actor="scientist", reason="beats the champion")
        change = event("sagemaker-model-package-state-change.approved.json")
        change["id"] = f"approval-{version}"
        detail = change["detail"]
        detail["ModelPackageGroupName"] = self.group
        detail["ModelPackageVersion"] = version
        detail["ModelPackageArn"] = self.registry().model_package_arn(version)
        return change

    def capture(self, variant: str, lines: list[str], written_at: datetime, name: str) -> None:
        """Capture lines as SageMaker writes them, with the object's LastModified set to when
        SageMaker would have written it."""
        from moto.s3.models import s3_backends

        bucket, _, prefix = self.capture_uri[5:].partition("/")
        key = f"{prefix}/{self.endpoint}/{variant}/{written_at:%Y/%m/%d/%H}/{name}.jsonl"
        self.admin("s3").put_object(Bucket=bucket, Key=key, Body="\n".join(lines) + "\n")
        s3_backends[ACCOUNT]["aws"].buckets[bucket].keys[key].last_modified = written_at

    def ground_truth(self, labels: dict[str, int], landed_at: datetime, name: str) -> None:
        """Labels as a labelling system lands them (docs/configuration.md), in SageMaker's
        ground-truth record format, at the drift monitor's GROUND_TRUTH_S3_URI."""
        from moto.s3.models import s3_backends

        uri = self.stage.functions["drift_monitor"].environment["GROUND_TRUTH_S3_URI"]
        bucket, _, prefix = uri[5:].partition("/")
        key = f"{prefix}/{self.endpoint}/{landed_at:%Y/%m/%d/%H}/{name}.jsonl"
        body = "".join(json.dumps({"groundTruthData": {"data": str(label), "encoding": "CSV"},
                                   "eventMetadata": {"eventId": ident}, "eventVersion": "0"})
                       + "\n" for ident, label in labels.items())
        self.admin("s3").put_object(Bucket=bucket, Key=key, Body=body)
        s3_backends[ACCOUNT]["aws"].buckets[bucket].keys[key].last_modified = landed_at

    def sagemaker_metrics(self, variant: str, start: datetime, minutes: int, *,
                          errors: float, latency_us: float,
                          invocations: float | None = None) -> None:
        """What SageMaker itself publishes per minute for a variant (Invocations too, when
        given: it publishes none for a minute without traffic)."""
        data = []
        for minute in range(minutes):
            at = start + timedelta(minutes=minute)
            dims = [{"Name": "EndpointName", "Value": self.endpoint},
                    {"Name": "VariantName", "Value": variant}]
            data += [{"MetricName": "Invocation5XXErrors", "Dimensions": dims, "Timestamp": at,
                      "Value": errors, "Unit": "Count"},
                     {"MetricName": "ModelLatency", "Dimensions": dims, "Timestamp": at,
                      "Value": latency_us, "Unit": "Microseconds"}]
            if invocations is not None:
                data.append({"MetricName": "Invocations", "Dimensions": dims, "Timestamp": at,
                             "Value": invocations, "Unit": "None"})
        for i in range(0, len(data), 500):
            self.admin("cloudwatch").put_metric_data(Namespace="AWS/SageMaker",
                                                     MetricData=data[i:i + 500])

    def endpoint_answers(self, body: str, count: int = 50) -> None:
        """moto's InvokeEndpoint answers from a queue: a score per row of `body`."""
        from moto.sagemakerruntime.models import sagemakerruntime_backends

        rows = len([r for r in body.splitlines() if r.strip()])
        answer = ("\n".join(["0.1"] * rows), "text/csv", "", "")
        sagemakerruntime_backends[ACCOUNT][REGION].results_queue.extend([answer] * count)

    def rule_arn(self, prefix: str) -> str:
        (logical,) = [n for n in self.stage.rules() if n.startswith(prefix)]
        return self.stage.resolver.attributes[(self.stage.control, logical)]["Arn"]

    # -- the functions, as their roles ----------------------------------------------------
    def run(self, function: str, payload: dict, at: datetime | None = None) -> Any:
        fn = self.stage.functions[function]
        with as_function(self.stage, function, self.admin, self.world["recorder"],
                         self.monkeypatch) as key:
            self.keys.setdefault(function, set()).add(key)
            handler = load_handler(self.monkeypatch, function)
            if at is not None and hasattr(handler, "clock"):
                handler.clock = lambda: at
            self.capsys.readouterr()
            result = handler.lambda_handler(payload, Context(fn.function_name))
            printed = self.capsys.readouterr().out
        data = emf_data(printed)
        self.publish(data)
        self.runs.append(Run(function, at, result, data))
        return result

    def publish(self, data: list[MetricDatum]) -> None:
        """CloudWatch Logs' EMF extraction: the printed datapoints, with their own timestamps."""
        by_namespace: dict[str, list[dict]] = {}
        for d in data:
            by_namespace.setdefault(d.namespace, []).append({
                "MetricName": d.name, "Timestamp": d.timestamp, "Value": d.value,
                "Unit": d.unit if d.unit != "None" else "None",
                "Dimensions": [{"Name": k, "Value": v} for k, v in d.dimensions.items()]})
        for namespace, items in by_namespace.items():
            for i in range(0, len(items), 500):
                self.admin("cloudwatch").put_metric_data(Namespace=namespace,
                                                         MetricData=items[i:i + 500])

    def drift_run(self, at: datetime) -> Any:
        return self.run("drift_monitor", scheduled_event(at, self.rule_arn("ControlDriftSchedule")),
                        at)

    def probe_run(self, at: datetime) -> Any:
        return self.run("probe", scheduled_event(at, self.rule_arn("ControlProbeSchedule")), at)

    def kinesis_batch(self, records: list[str]) -> dict:
        stream_arn = self.stage.resolver.attributes[(self.stage.control, next(
            n for n in self.stage.resolver.resources(self.stage.control, "AWS::Kinesis::Stream")
            if "Input" in n))]["Arn"]
        return {"Records": [{
            "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": f"p{i}",
                        "sequenceNumber": f"{i:056d}",
                        "data": base64.b64encode(text.encode()).decode(),
                        "approximateArrivalTimestamp": 1700000000.0},
            "eventSource": "aws:kinesis", "eventVersion": "1.0",
            "eventID": f"shardId-000000000000:{i:056d}", "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::123456789012:role/x", "awsRegion": REGION,
            "eventSourceARN": stream_arn} for i, text in enumerate(records)]}


def now_minute() -> datetime:
    return datetime.now(timezone.utc).replace(second=0, microsecond=0)
