"""`mlops pipeline start --backend aws`: starts the deployed pipeline with typed parameters and
follows its steps to the exit code (Stubber: moto does not run pipelines)."""

from __future__ import annotations

import json

import pytest
from botocore.stub import ANY, Stubber
from typer.testing import CliRunner

from mlops_kit.aws import pipeline_executions
from mlops_kit.cli.app import app

ARN = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/kit/execution/abc"


@pytest.fixture()
def stubbed(make_client, monkeypatch):
    client = make_client("sagemaker", slot="pipeline")
    monkeypatch.setattr(pipeline_executions, "LazyClient", lambda service, c=None: lambda: client)
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def steps(*pairs):
    return {"PipelineExecutionSteps": [{"StepName": n, "StepStatus": s} for n, s in pairs]}


def run(*args):
    return CliRunner().invoke(app, ["pipeline", "start", "--interval", "1", *args],
                              env={"MLOPS_PIPELINE_NAME": "kit"})


def test_start_passes_typed_parameters_and_follows_to_success(stubbed, monkeypatch):
    monkeypatch.setattr(pipeline_executions.time, "sleep", lambda s: None)
    stubbed.add_response("start_pipeline_execution", {"PipelineExecutionArn": ARN}, {
        "PipelineName": "kit", "ClientRequestToken": ANY, "PipelineExecutionDisplayName": ANY,
        "PipelineParameters": [{"Name": "ChampionModelUri", "Value": ""},
                               {"Name": "max_depth", "Value": "4"},
                               {"Name": "min_aupr", "Value": "0.5"}]})
    stubbed.add_response("describe_pipeline_execution", {"PipelineExecutionStatus": "Executing"})
    stubbed.add_response("list_pipeline_execution_steps", steps(("PreprocessData", "Executing")))
    stubbed.add_response("describe_pipeline_execution", {"PipelineExecutionStatus": "Succeeded"})
    stubbed.add_response("list_pipeline_execution_steps", steps(
        ("PreprocessData", "Succeeded"), ("TrainModel", "Succeeded"),
        ("EvaluateModel", "Succeeded"), ("CheckQualityGates", "Succeeded"),
        ("RegisterModel", "Succeeded")))
    result = run("--param", "max_depth=4", "--param", "min_aupr=0.5",
                 "--param", "ChampionModelUri=", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["status"] == "Succeeded" and report["steps"]["RegisterModel"]["status"] == \
        "Succeeded"


def test_failed_gate_exits_3(stubbed, monkeypatch):
    monkeypatch.setattr(pipeline_executions.time, "sleep", lambda s: None)
    stubbed.add_response("start_pipeline_execution", {"PipelineExecutionArn": ARN})
    stubbed.add_response("describe_pipeline_execution", {
        "PipelineExecutionStatus": "Failed", "FailureReason": "Quality gates failed: min_aupr"})
    stubbed.add_response("list_pipeline_execution_steps", steps(
        ("CheckQualityGates", "Succeeded"), ("FailQualityGates", "Failed")))
    result = run("--param", "ChampionModelUri=")
    assert result.exit_code == 3
    assert "min_aupr" in result.stdout


def test_bad_parameters_and_missing_pipeline_exit_2(monkeypatch):
    assert run("--param", "max_depth=deep", "--param", "ChampionModelUri=").exit_code == 2
    result = CliRunner().invoke(app, ["pipeline", "start"], env={"MLOPS_PIPELINE_NAME": ""})
    assert result.exit_code == 2 and "MLOPS_PIPELINE_NAME" in result.stderr
    assert run("--backend", "local").exit_code == 2
