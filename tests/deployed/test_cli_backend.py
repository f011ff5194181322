"""`mlops rollback --backend aws` is the Lambda's rollback: the CLI reads the deployed
function's own environment and builds the controller with the same wiring."""

from __future__ import annotations

from datetime import timedelta

import boto3
import pytest
from botocore.stub import Stubber

from mlops_kit.homes import BackendError
from mlops_kit.homes import aws as home

from .conftest import load_handler


def deployed_lambda(stage, function: str):
    client = boto3.client("lambda", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x")
    stubber = Stubber(client)
    fn = stage.functions[function]
    stubber.add_response("get_function_configuration",
                         {"FunctionName": fn.function_name,
                          "Environment": {"Variables": fn.environment}},
                         {"FunctionName": fn.function_name})
    stubber.activate()
    return client, stubber


def describe(controller) -> dict:
    return {"cooldown": controller.settings.cooldown,
            "managed": sorted(controller.managed_endpoints),
            "topic": getattr(controller.notifier, "topic_arn", None),
            "group": controller.registry.model_group,
            "ledger": controller.registry.ledger.table_name}


def test_the_cli_rolls_back_with_the_deployed_functions_settings(stage, monkeypatch):
    fn = stage.functions["rollback_controller"]
    client, stubber = deployed_lambda(stage, "rollback_controller")
    environ = {"MLOPS_ROLLBACK_FUNCTION": fn.function_name, "MLOPS_OWNER": "on-call"}
    backend = home.backend(environ, clients=lambda service: client if service == "lambda"
                           else None)
    stubber.assert_no_pending_responses()
    cli = backend.rollback_controller()

    for name, value in fn.environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    handler = load_handler(monkeypatch, "rollback_controller")
    lambda_side = handler.controller(handler.runtime.routes.only)
    assert describe(cli) == describe(lambda_side)
    minutes = int(fn.environment["ROLLBACK_COOLDOWN_MINUTES"])
    assert cli.settings.cooldown == timedelta(minutes=minutes)
    assert cli.managed_endpoints == {stage.output(stage.control, "EndpointName")}
    assert backend.endpoint_name == stage.output(stage.control, "EndpointName")


def test_the_cli_names_what_is_missing_without_a_deployed_function():
    with pytest.raises(BackendError, match="LEDGER_TABLE_NAME.*MLOPS_ROLLBACK_FUNCTION"):
        home.backend({"MLOPS_ENDPOINT": "fraud-scorer-prod"})
