"""The rollback Lambda's AWS calls per rollback do not grow with the fleet (issue [H]): the
same function serves one model or fifty, and a rollback of one model's endpoint makes the same
calls in both, every one of them about that model's endpoint and group. Run against moto
through the handler's own wiring, with a routes file of 1 and of 50 models."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from mlops_kit import contract
from mlops_kit.core.alarms import load_definitions
from mlops_kit.fleet.routes import ROUTES_ENV, routes_document
from mlops_kit.registry.sagemaker import SageMakerRegistry

from builders import (alarm_event, load_handler, moto_update_endpoint, probes_healthy,
                      registration)

from .conftest import IMAGE_URI, LEDGER, ROLE_ARN
from .test_control_lambdas import IDEMPOTENCY, Context, event

SHARED = {"LEDGER_TABLE_NAME": LEDGER, "IDEMPOTENCY_TABLE_NAME": IDEMPOTENCY,
          "SAGEMAKER_EXECUTION_ROLE_ARN": ROLE_ARN,
          "DATA_CAPTURE_S3_URI": "s3://kit-capture/capture", "POWERTOOLS_TRACE_DISABLED": "true"}
SERVING = {"DATA_CAPTURE_SAMPLING_PERCENT": "100", "ENDPOINT_INSTANCE_TYPE": "ml.m5.large",
           "CHAMPION_INSTANCE_COUNT": "1", "FALLBACK_INSTANCE_COUNT": "1", "WARM_FALLBACKS": "2",
           "ROLLBACK_COOLDOWN_MINUTES": "0"}
ROUTED = ("deployment_controller", "rollback_controller")


def model_names(count: int, first: str) -> list[str]:
    return [first] + [f"model-{i:03d}" for i in range(1, count)]


def write_routes(path, models: list[str]) -> str:
    """The routes file the CDK app bundles, for these models (their per-model settings)."""
    def per_model(function: str, model: str) -> dict[str, str]:
        values = {"ENDPOINT_NAME": f"{model}-prod", "MLOPS_MODEL_GROUP": model, **SERVING}
        return {v.name: values[v.name] for v in contract.function(function).env
                if v.per_model and v.name in values}

    document = routes_document("", {m: {fn: per_model(fn, m) for fn in ROUTED} for m in models})
    path.write_text(json.dumps(document))
    return str(path)


def rollback_alarm(endpoint: str) -> dict:
    """The feature-drift rollback alarm of `endpoint`, going into ALARM now."""
    alarm = alarm_event("feature-drift")
    name = next(d.alarm_name(endpoint) for d in load_definitions() if d.rollback)
    alarm["detail"]["alarmName"] = name
    alarm["resources"] = [f"arn:aws:cloudwatch:{alarm['region']}:{alarm['account']}:alarm:{name}"]
    for metric in alarm["detail"]["configuration"]["metrics"]:
        metric["metricStat"]["metric"]["dimensions"]["EndpointName"] = endpoint
    return alarm


class CallLog(list):
    """Every AWS call the injected clients make: (operation, its parameters)."""

    def __call__(self, params, model, **_):
        self.append((model.name, params))


@pytest.fixture()
def fleet_of(monkeypatch, tmp_path, sagemaker, dynamodb, make_client):
    from moto.sagemaker.responses import SageMakerResponse

    monkeypatch.setattr(SageMakerResponse, "update_endpoint", moto_update_endpoint,
                        raising=False)
    dynamodb.create_table(TableName=IDEMPOTENCY, BillingMode="PAY_PER_REQUEST",
                          KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
    for name, value in SHARED.items():
        monkeypatch.setenv(name, value)

    def serve(count: int, model: str):
        """The two controllers of a fleet of `count` models; `model`'s endpoint serving v2 with
        v1 warm. Returns the rollback handler."""
        monkeypatch.setenv(ROUTES_ENV, write_routes(tmp_path / f"routes-{count}.json",
                                                    model_names(count, model)))
        handlers = {fn: load_handler(fn, monkeypatch, alias=f"{fn}_{count}") for fn in ROUTED}
        for handler in handlers.values():
            handler.persistence.client = make_client("dynamodb")
            for service in ("sagemaker", "dynamodb", "cloudwatch", "sns"):
                handler.clients.inject(service, make_client(service))
        assert len(handlers["rollback_controller"].runtime.routes) == count
        registry = SageMakerRegistry(model, ledger_table=LEDGER, image_uri=IMAGE_URI,
                                     sagemaker_client=sagemaker, dynamodb_client=dynamodb)
        approved = event("sagemaker-model-package-state-change.approved.json")
        for version in (1, 2):
            registry.register(registration(version, group=model))
            registry.approve(version, actor="bob", reason="ship it")
            approved["detail"].update(ModelPackageGroupName=model, ModelPackageVersion=version)
            approved["id"] = f"{model}-{version}"
            outcome = handlers["deployment_controller"].lambda_handler(approved, Context())
            assert outcome["action"] == "deployed", outcome
        probes_healthy(make_client("cloudwatch"), f"{model}-prod")
        return handlers["rollback_controller"]
    return serve


def rollback_calls(handler, model: str, make_client) -> list[tuple[str, dict]]:
    calls = CallLog()
    clients = [make_client(s) for s in ("sagemaker", "dynamodb", "cloudwatch", "sns")]
    for client in clients:
        client.meta.events.register("provide-client-params", calls, unique_id="count-calls")
    try:
        outcome = handler.lambda_handler(rollback_alarm(f"{model}-prod"), Context())
    finally:
        for client in clients:
            client.meta.events.unregister("provide-client-params", unique_id="count-calls")
    assert (outcome["action"], outcome["to_version"]) == ("rolled_back", 1), outcome
    return calls


def test_a_rollback_makes_the_same_calls_for_one_model_and_for_fifty(fleet_of, make_client):
    alone = rollback_calls(fleet_of(1, "scorer-a"), "scorer-a", make_client)
    in_fifty = rollback_calls(fleet_of(50, "scorer-b"), "scorer-b", make_client)

    assert Counter(op for op, _ in in_fifty) == Counter(op for op, _ in alone)
    # Every call is about the alarmed model: its endpoint, its group, the shared tables.
    for model, calls in (("scorer-a", alone), ("scorer-b", in_fifty)):
        named = {(key, str(value)) for _, params in calls for key, value in params.items()
                 if key in ("EndpointName", "ModelPackageGroupName")}
        assert named <= {("EndpointName", f"{model}-prod"),
                         ("ModelPackageGroupName", model)}, named
