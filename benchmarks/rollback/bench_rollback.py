"""Rollback reaction time: alarm event → endpoint weights changed → traffic on the fallback.

    .venv/bin/python benchmarks/rollback/bench_rollback.py [--repeat 30] [--rows 20000]
        [--skip-local] [--skip-aws] [--json PATH]

(a) local, the rollback path `mlops demo` takes (there on its fleet's prod endpoint; here on a
    single-model home, the same controllers). Set-up (not timed): two pipeline runs on sample data
    (`--rows` each, seeds 42 and 43; gates opened, only registration matters) register v1 and v2, both are approved through the local
    backend (the deployment controller serves v2 at weight 1, v1 warm at 0), `mlops serve`
    runs as a subprocess (1 worker, capture 100 %, as in the demo), a probe of both variants
    is recorded, and a client sends one CSV row every `--interval-ms` on a keep-alive
    connection. Then, --repeat times: the feature-drift alarm's ALARM event (the event the
    local alarm evaluator emits) goes to `control_plane.publish`, which logs it (fsync) and
    hands it to the rollback controller under the single-writer lock. Measured from the call:
      weights changed   LocalEndpoints.set_weights returned (state file replaced)
      publish returned  decision, weight change, deployment record, notification
      first on v1       the first response the running client got from v1 (resolution: the
                        request interval plus one request)
    Between repeats the registry database (sqlite backup API) and the endpoint state file are
    restored from a snapshot taken before the first alarm, so every repeat is the demo's
    first rollback (the local controller's 15-minute cooldown would refuse a second one).

(b) the rollback Lambda (functions/rollback_controller/handler.py) in-process against moto
    (SageMaker endpoint with v2 at 1 and v1 warm at 0, DynamoDB ledger and Powertools
    idempotency table, CloudWatch probe metrics, as tests/aws/test_control_lambdas.py sets
    them up; the handler builds its own controller from the environment, ROLLBACK_COOLDOWN_
    MINUTES=0). The first invocation (controller and boto3 clients built) is reported
    separately; then --warmup and --repeat warm invocations, each a new alarm transition, measured
    from lambda_handler() to SageMakerEndpoints.set_weights returned (UpdateEndpointWeights
    AndCapacities answered) and to the handler's return; between repeats the controller's own
    roll-forward puts v2 back (untimed). moto answers in ~1 ms per call in-process, so these
    figures are the kit's work plus moto's, not AWS's latency: the API calls per invocation
    are counted so a real figure can be estimated (calls × the service's latency).

Each invocation's stdout (Powertools' JSON logs and EMF metrics) goes to a temp file.
Expect ~1 min for the set-up and well under a minute for the repeats.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import random
import sqlite3
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import (ROOT, add_json_argument, machine_line, report, summary,  # noqa: E402
                     table, write_json)

ALARM_ID = "feature-drift"


class SetWeightsTimer:
    """Records when an endpoint adapter's set_weights returned (class-level wrapper: it
    times the adapter the controller builds for itself, changing nothing it does)."""

    def __init__(self, cls: type):
        self.cls, self.original, self.returned_at = cls, cls.set_weights, []
        timer = self

        def timed(adapter, endpoint_name, weights):
            result = timer.original(adapter, endpoint_name, weights)
            timer.returned_at.append(time.perf_counter())
            return result
        cls.set_weights = timed

    def restore(self) -> None:
        self.cls.set_weights = self.original


def alarm_event(endpoint: str, at: datetime, region: str = "local") -> dict[str, Any]:
    from mlops_kit.core.alarms import load_definitions
    from mlops_kit.monitoring.alarm_events import alarm_state_change_event

    definition = next(d for d in load_definitions() if d.id == ALARM_ID)
    return alarm_state_change_event(
        definition.alarm_name(endpoint), "ALARM", "OK",
        reason=f"Threshold Crossed: 2 out of the last 3 datapoints were greater than the "
               f"threshold ({definition.threshold})",
        namespace=definition.namespace, metric=definition.metric,
        dimensions=definition.resolved_dimensions(endpoint),
        statistic=definition.statistic, period=definition.period_seconds,
        threshold=definition.threshold, recent_datapoints=[0.41, 0.52, 0.12], at=at,
        description=definition.description, region=region)


# -- (a) local ---------------------------------------------------------------------------------

class Traffic:
    """One keep-alive client sending a row every `interval` seconds: (sent, received, variant)."""

    def __init__(self, client, body: str, interval: float):
        self.client, self.body, self.interval = client, body, interval
        self.rows: list[tuple[float, float, str, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            sent = time.perf_counter()
            try:
                status, _, variant = self.client.invoke(self.body)
            except OSError:
                status, variant = 0, ""
            self.rows.append((sent, time.perf_counter(), variant, status))
            time.sleep(self.interval)

    def first(self, variant: str, after: float, timeout: float = 10.0) -> float | None:
        deadline = time.perf_counter() + timeout
        seen = 0
        while time.perf_counter() < deadline:
            rows = self.rows
            for i in range(seen, len(rows)):
                _, received, served, status = rows[i]
                if received >= after and served == variant and status == 200:
                    return received
            seen = max(0, len(rows) - 1)
            time.sleep(0.001)
        return None


def approve(settings, version: int) -> None:
    """Approve `version` through the local backend: its deployment controller serves it at
    weight 1 and keeps the previous champion warm (the single-model home's approval path)."""
    from mlops_kit.homes.local import backend as local_backend

    backend = local_backend(settings)
    updated, _ = backend.registry.approve(version, actor="bench", reason="benchmark set-up")
    outcomes = backend.emit_status_change(updated, "benchmark set-up")
    if not any(o.action == "deployed" for o in outcomes):
        raise SystemExit(f"set-up: approval of v{version} did not deploy: "
                         + "; ".join(o.reason for o in outcomes))


def bench_local(args, workdir: Path) -> dict[str, Any]:
    from mlops_kit.config import DEFAULT_ENDPOINT, DEFAULT_MODEL_GROUP, DEFAULT_USE_CASE, \
        LocalSettings
    from mlops_kit.core.gates import GATES
    from mlops_kit.data.synthetic import generate
    from mlops_kit.deploy.local_endpoint import LocalEndpoints
    from mlops_kit.local.control_plane import local_registry, publish
    from mlops_kit.local.demo import Demo
    from mlops_kit.local.monitor import LocalMonitor
    from mlops_kit.local.pipeline_runner import run_pipeline
    from mlops_kit.endpoint_state import load_state, save_state
    from mlops_pipelines.steps._io import write_table

    settings = LocalSettings(home=workdir / "home", model_group=DEFAULT_MODEL_GROUP,
                             use_case=DEFAULT_USE_CASE, owner="bench",
                             endpoint_name=DEFAULT_ENDPOINT)
    home = settings.home
    setup_started = time.perf_counter()
    registry = local_registry(settings)
    demo = Demo(settings, rows=args.rows, report=lambda _: None)
    server = None
    traffic = None
    # The set-up needs two registered versions, not good ones: small --rows must not fail a gate.
    open_gates = {g.name: ("-1e9" if g.comparison == ">=" else "1e9") for g in GATES}
    try:
        for version, seed in ((1, 42), (2, 43)):
            data = home / "data" / f"month-{version}.parquet"
            write_table(generate(args.rows, seed=seed), data)
            result = run_pipeline(settings, registry, data=data, overrides=open_gates)
            if result.version is None:
                raise SystemExit(f"set-up: the pipeline on {args.rows:,} rows registered "
                                 f"nothing")
            print(f"local set-up: v{result.version.version} registered", file=sys.stderr)
            approve(settings, result.version.version)
            if server is None:
                server, client = demo._start_server()
            else:
                demo._wait_for_variant(client, "v2")
        monitor = LocalMonitor(settings)
        probes = monitor.probe(lambda variant, body: client.invoke(body, variant=variant)[:2],
                               datetime.now(timezone.utc))
        if not all(p.ok for p in probes):
            raise SystemExit(f"set-up: a variant failed its probe: {probes}")
        body = demo._probe_body()
        snapshot_db = workdir / "registry.snapshot.db"
        with contextlib.closing(sqlite3.connect(settings.registry_db)) as source, \
                contextlib.closing(sqlite3.connect(snapshot_db)) as target:
            source.backup(target)
        snapshot_state = load_state(home, settings.endpoint_name)
        setup_seconds = time.perf_counter() - setup_started

        traffic = Traffic(client, body, args.interval_ms / 1000)
        traffic.thread.start()
        timer = SetWeightsTimer(LocalEndpoints)
        samples: dict[str, list[float]] = {"weights_changed": [], "publish_returned": [],
                                           "first_on_fallback": [], "kit_seconds_to_shift": []}
        try:
            for i in range(args.repeat + args.warmup):
                restored = time.perf_counter()
                with contextlib.closing(sqlite3.connect(snapshot_db)) as source, \
                        contextlib.closing(sqlite3.connect(settings.registry_db)) as target:
                    source.backup(target)
                save_state(home, snapshot_state)
                if traffic.first("v2", restored) is None:
                    raise SystemExit("the endpoint did not return to v2 after the restore")
                time.sleep(random.uniform(0.02, 0.05))  # not phase-locked with the client
                event = alarm_event(settings.endpoint_name, datetime.now(timezone.utc))
                timer.returned_at.clear()
                started = time.perf_counter()
                outcomes = publish(settings, event)
                returned = time.perf_counter()
                on_v1 = traffic.first("v1", started)
                outcome = outcomes[0] if outcomes else None
                if outcome is None or outcome.action != "rolled_back" or not timer.returned_at:
                    raise SystemExit(f"repeat {i}: no rollback: {outcome}")
                if on_v1 is None:
                    raise SystemExit(f"repeat {i}: no request reached v1 within 10 s")
                if i < args.warmup:
                    continue
                samples["weights_changed"].append(timer.returned_at[0] - started)
                samples["publish_returned"].append(returned - started)
                samples["first_on_fallback"].append(on_v1 - started)
                samples["kit_seconds_to_shift"].append(outcome.details["seconds_to_shift"])
        finally:
            timer.restore()
        failed = sum(1 for row in traffic.rows if row[3] != 200)
        return {"rows_per_pipeline": args.rows, "repeat": args.repeat, "warmup": args.warmup,
                "interval_ms": args.interval_ms, "setup_seconds": setup_seconds,
                "requests": len(traffic.rows), "failed_requests": failed,
                "samples_s": samples,
                "summary_ms": {k: summary(v, 1e3) for k, v in samples.items()}}
    finally:
        if traffic is not None:
            traffic.stop.set()
            traffic.thread.join(timeout=5)
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=15)
            except Exception:
                server.kill()


# -- (b) the Lambda against moto ---------------------------------------------------------------

REGION, ACCOUNT = "us-east-1", "123456789012"
GROUP, ENDPOINT = "fraud-scorer", "fraud-scorer-prod"
LEDGER, IDEMPOTENCY = "mlops-ledger", "mlops-idempotency"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/sagemaker-execution"
IMAGE_URI = f"683313688378.dkr.ecr.{REGION}.amazonaws.com/sagemaker-xgboost:3.0-5"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true", "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "INFO", "ENDPOINT_NAME": ENDPOINT, "MLOPS_MODEL_GROUP": GROUP,
    "LEDGER_TABLE_NAME": LEDGER, "IDEMPOTENCY_TABLE_NAME": IDEMPOTENCY,
    "SAGEMAKER_EXECUTION_ROLE_ARN": ROLE_ARN, "ROLLBACK_COOLDOWN_MINUTES": "0",
}


class Context:
    function_name = "rollback-controller"
    memory_limit_in_mb = 256
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:rollback-controller"
    aws_request_id = "bench"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


@contextlib.contextmanager
def stdout_to(path: Path):
    """Send file descriptor 1 (Powertools logs and EMF) to a file; the cost of writing stays."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(path, "a") as sink:
        os.dup2(sink.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def _seed_aws() -> None:
    """v2 serving at weight 1, v1 warm at 0, both probed healthy (tests/aws fixtures)."""
    import boto3

    from mlops_kit.aws.ledger import create_table_request
    from mlops_kit.core.rotation import VariantWeight
    from mlops_kit.deploy.sagemaker_endpoint import SageMakerEndpoints
    from mlops_kit.registry.base import DeploymentRecord, RegistrationRequest
    from mlops_kit.registry.sagemaker import SageMakerRegistry

    sagemaker = boto3.client("sagemaker", region_name=REGION)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    dynamodb.create_table(**create_table_request(LEDGER))
    dynamodb.create_table(TableName=IDEMPOTENCY, BillingMode="PAY_PER_REQUEST",
                          KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
    registry = SageMakerRegistry(GROUP, ledger_table=LEDGER, image_uri=IMAGE_URI,
                                 sagemaker_client=sagemaker, dynamodb_client=dynamodb)
    for run in (1, 2):
        registry.register(RegistrationRequest(
            model_group=GROUP, model_artifact=f"s3://a/run-{run}/model.tar.gz",
            training_run_id=f"run-{run}", metrics={"aupr": 0.6}, latency={},
            gates=[{"gate": "min_aupr", "passed": True}],
            lineage={"data": {}, "code": {}, "parameters": {}, "libraries": {}},
            owner="bench", use_case="fraud"))
        registry.approve(run, actor="bench", reason="ship")
    endpoints = SageMakerEndpoints(sagemaker, execution_role_arn=ROLE_ARN)
    variants = (VariantWeight("v2", 2, 1.0), VariantWeight("v1", 1, 0.0))
    endpoints.deploy(ENDPOINT, variants, {v: registry.model_source(v) for v in (1, 2)})
    history = {1: (VariantWeight("v1", 1, 1.0),), 2: variants}
    for minutes, version in ((60, 1), (30, 2)):
        at = datetime.now(timezone.utc) - timedelta(minutes=minutes)
        registry.record_deployment(DeploymentRecord(
            f"promote-{version}", ENDPOINT, "promote", version, history[version], "bench",
            "ship", at.strftime("%Y-%m-%dT%H:%M:%S.000Z")))
    for variant in ("v1", "v2"):
        cloudwatch.put_metric_data(Namespace="MLOpsKit/Monitoring", MetricData=[{
            "MetricName": "ProbeSuccess", "Value": 1.0, "Timestamp": datetime.now(timezone.utc),
            "Dimensions": [{"Name": "EndpointName", "Value": ENDPOINT},
                           {"Name": "VariantName", "Value": variant}]}])


def bench_aws(args, workdir: Path) -> dict[str, Any]:
    os.environ.update(AWS_ENV)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE",
                 "AWS_SHARED_CREDENTIALS_FILE", "AWS_LAMBDA_FUNCTION_NAME"):
        os.environ.pop(name, None)
    import boto3
    from moto import mock_aws

    from mlops_kit.deploy.sagemaker_endpoint import SageMakerEndpoints

    from botocore.client import BaseClient

    calls: list[str] = []
    make_api_call = BaseClient._make_api_call

    def counted(client, operation_name, api_params):
        # Every client, whatever session made it (Powertools' idempotency layer has its own).
        calls.append(operation_name)
        return make_api_call(client, operation_name, api_params)
    BaseClient._make_api_call = counted
    log = workdir / "lambda-stdout.jsonl"
    with mock_aws():
        _seed_aws()
        spec = importlib.util.spec_from_file_location(
            "rollback_handler_bench", ROOT / "functions" / "rollback_controller" / "handler.py")
        handler = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = handler
        import_started = time.perf_counter()
        with stdout_to(log):
            spec.loader.exec_module(handler)
        import_seconds = time.perf_counter() - import_started
        timer = SetWeightsTimer(SageMakerEndpoints)
        samples: dict[str, list[float]] = {"weights_changed": [], "handler_returned": []}
        api_calls: list[int] = []
        first: dict[str, Any] = {}
        try:
            for i in range(1 + args.warmup + args.repeat):
                if i:
                    with stdout_to(log):
                        back = handler.controller(handler.runtime.routes.only).rollforward(ENDPOINT, 2, actor="bench",
                                                                reason="reset for the next repeat")
                    if back.action != "rolled_forward":
                        raise SystemExit(f"repeat {i}: could not roll forward: {back}")
                    time.sleep(0.002)  # a new alarm transition (state time in ms)
                event = alarm_event(ENDPOINT, datetime.now(timezone.utc), region=REGION)
                timer.returned_at.clear()
                calls.clear()
                with stdout_to(log):
                    started = time.perf_counter()
                    outcome = handler.lambda_handler(event, Context())
                    returned = time.perf_counter()
                if outcome.get("action") != "rolled_back" or not timer.returned_at:
                    raise SystemExit(f"invocation {i}: no rollback: {outcome}")
                weights = {v.variant_name: v.weight
                           for v in handler.controller(handler.runtime.routes.only).endpoints.describe(ENDPOINT).variants}
                if weights != {"v1": 1.0, "v2": 0.0}:
                    raise SystemExit(f"invocation {i}: weights are {weights}")
                figures = {"weights_changed": timer.returned_at[0] - started,
                           "handler_returned": returned - started}
                if i == 0:
                    first = {**figures, "api_calls": list(calls)}
                elif i > args.warmup:
                    for key, value in figures.items():
                        samples[key].append(value)
                    api_calls.append(len(calls))
                    last_calls = list(calls)
        finally:
            timer.restore()
            BaseClient._make_api_call = make_api_call
    return {"repeat": args.repeat, "warmup": args.warmup,
            "handler_import_seconds": import_seconds,
            "first_invocation_s": first, "samples_s": samples,
            "summary_ms": {k: summary(v, 1e3) for k, v in samples.items()},
            "api_calls_per_warm_invocation": {"min": min(api_calls), "max": max(api_calls)},
            "api_calls_first_invocation": len(first["api_calls"]),
            "api_calls_by_operation_first": _count(first["api_calls"]),
            "api_calls_by_operation_warm": _count(last_calls)}


def _count(names: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return counts


# -- report ------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=2,
                        help="alarms handled first and not counted (local; warm Lambda)")
    parser.add_argument("--rows", type=int, default=20_000,
                        help="rows of each local pipeline run (set-up)")
    parser.add_argument("--interval-ms", type=float, default=1.0,
                        help="pause between the local client's requests")
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--skip-aws", action="store_true")
    add_json_argument(parser)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-rollback-") as tmp:
        if not args.skip_local:
            results["local"] = bench_local(args, Path(tmp))
        if not args.skip_aws:
            results["aws_moto"] = bench_aws(args, Path(tmp))
    doc = report("rollback_reaction", results, started=started,
                 packages=("boto3", "botocore", "moto", "aws-lambda-powertools", "xgboost-cpu",
                           "mlflow"))
    print_report(doc)
    if args.json:
        write_json(args.json, doc)
    return 0


def _row(label: str, s: dict[str, float]) -> list[str]:
    return [label, f"{s['p50']:.2f} ms", f"{s['p95']:.2f} ms", f"{s['max']:.2f} ms",
            f"{s['min']:.2f} ms", s["n"]]


def print_report(doc: dict) -> None:
    print(machine_line(doc["machine"]) + "\n")
    local = doc["results"].get("local")
    headers = ["from the alarm event to …", "p50", "p95", "max", "min", "n"]
    if local:
        s = local["summary_ms"]
        print(f"(a) local (`mlops demo`'s path: control_plane.publish → rollback controller → "
              f"state file → `mlops serve`), {local['repeat']} alarms after {local['warmup']} "
              f"warm-up, client every {local['interval_ms']:g} ms, set-up "
              f"{local['setup_seconds']:.0f} s:\n")
        print(table(headers, [
            _row("weights changed (state file replaced)", s["weights_changed"]),
            _row("publish returned (decision, shift, record, notification)",
                 s["publish_returned"]),
            _row("first request served by v1", s["first_on_fallback"]),
            _row("(the kit's own seconds_to_shift, from handle_event)",
                 s["kit_seconds_to_shift"])]))
        print(f"\n{local['requests']:,} requests, {local['failed_requests']} failed.\n")
    aws = doc["results"].get("aws_moto")
    if aws:
        s, first = aws["summary_ms"], aws["first_invocation_s"]
        calls = aws["api_calls_per_warm_invocation"]
        print(f"(b) rollback Lambda handler in-process against moto, {aws['repeat']} warm "
              f"invocations after {aws['warmup']} warm-up (handler import "
              f"{aws['handler_import_seconds']:.2f} s):\n")
        print(table(["from lambda_handler() to …", "p50", "p95", "max", "min", "n"], [
            _row("weights changed (UpdateEndpointWeightsAndCapacities answered)",
                 s["weights_changed"]),
            _row("handler returned", s["handler_returned"])]))
        print(f"\nFirst invocation (controller and clients built): weights changed "
              f"{first['weights_changed'] * 1e3:.0f} ms, returned "
              f"{first['handler_returned'] * 1e3:.0f} ms, {aws['api_calls_first_invocation']} "
              f"AWS API calls; a warm invocation makes {calls['min']}–{calls['max']} "
              f"({', '.join(f'{k} ×{v}' for k, v in aws['api_calls_by_operation_warm'].items())}"
              f" in the last one).")


if __name__ == "__main__":
    sys.exit(main())
