"""The SageMaker managed MLflow tracking server: provisioned by the stateful stack when
`mlflow.trackingServer` is on (artifact store in the kit's bucket, a role scoped to it, cdk-nag
clean), absent by default; the training pipeline takes its ARN as the default of the
`MlflowTrackingUri` parameter the training step passes to train.py, and its role gets
the MLflow actions the training client calls, on that server only."""

from __future__ import annotations

import json

import pytest

from .conftest import ROOT, cdk_app_package, staged_stub, synth_stage

ON = {"mlflow": {"trackingServer": True, "size": "Medium", "trackingServerArn": None}}


@pytest.fixture(scope="module")
def with_server(tmp_path_factory):
    from aws_cdk.assertions import Template

    app, stacks = synth_stage(tmp_path_factory.mktemp("mlflow-on"), overrides=ON)
    return stacks, Template.from_stack(stacks.stateful)


def _policy_statements(template, role_logical_id):
    statements = []
    for policy in template.find_resources("AWS::IAM::Policy").values():
        if {"Ref": role_logical_id} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def test_the_stateful_stack_provisions_the_server_in_the_artifact_bucket(with_server):
    stacks, template = with_server
    (server_id, server), = template.find_resources("AWS::SageMaker::MlflowTrackingServer").items()
    props = server["Properties"]
    assert props["TrackingServerSize"] == "Medium"
    assert props["AutomaticModelRegistration"] is False
    assert props["TrackingServerName"] == f"{stacks.stateful.registry.model_group}-mlflow"
    bucket_id = stacks.stateful.resolve(stacks.stateful.store.artifacts.bucket_name)["Ref"]
    assert props["ArtifactStoreUri"] == {"Fn::Join": ["", ["s3://", {"Ref": bucket_id},
                                                          "/mlflow"]]}
    role_id = props["RoleArn"]["Fn::GetAtt"][0]
    resources = [json.dumps(s["Resource"]) for s in _policy_statements(template, role_id)]
    assert all(bucket_id in r or "Key" in r for r in resources), resources
    assert any("/mlflow/*" in r for r in resources)
    outputs = template.find_outputs("MlflowTrackingServerArn")
    assert outputs["MlflowTrackingServerArn"]["Value"] == {
        "Fn::GetAtt": [server_id, "TrackingServerArn"]}


def test_off_by_default_no_server(synthesized):
    assert synthesized["stateful"].find_resources("AWS::SageMaker::MlflowTrackingServer") == {}
    assert synthesized["stacks"].stateful.mlflow_tracking_uri is None


def test_the_training_step_gets_the_server_arn_and_may_log_to_it_only(tmp_path):
    from aws_cdk import App, RemovalPolicy, Stack
    from aws_cdk.assertions import Template

    cdk_app_package()
    from mlops_infra.constructs.artifact_store import ArtifactStore
    from mlops_infra.constructs.tracking_server import TrackingServer
    from mlops_infra.constructs.training_pipeline import TrainingPipeline

    flags = {k: v for k, v in json.loads((ROOT / "cdk.json").read_text())["context"].items()
             if k.startswith("@aws-cdk")}
    stack = Stack(App(context=flags), "Tracking")
    store = ArtifactStore(stack, "Store", removal_policy=RemovalPolicy.DESTROY)
    server = TrackingServer(stack, "Tracking", artifacts=store.artifacts,
                            key_arn=store.key.key_arn, name="fraud-mlflow")
    training = TrainingPipeline(
        stack, "Training", definition_path=ROOT / "pipelines" / "definition.json",
        assets_dir=staged_stub(tmp_path), artifacts=store.artifacts, key_arn=store.key.key_arn,
        model_group="fraud", model_packages_resources=["*"], mlflow_tracking_uri=server.arn)
    template = Template.from_stack(stack)
    (pipeline,) = template.find_resources("AWS::SageMaker::Pipeline").values()
    text, values = pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    (server_id,) = template.find_resources("AWS::SageMaker::MlflowTrackingServer")
    assert values["MlflowTrackingUri"] == {"Fn::GetAtt": [server_id, "TrackingServerArn"]}
    definition = json.loads(text)
    (parameter,) = [p for p in definition["Parameters"] if p["Name"] == "MlflowTrackingUri"]
    assert parameter["DefaultValue"] == "${MlflowTrackingUri}"
    (train,) = [s for s in definition["Steps"] if s["Type"] == "Training"]
    assert train["Arguments"]["HyperParameters"]["mlflow-tracking-uri"] == {
        "Get": "Parameters.MlflowTrackingUri"}
    role_id = stack.resolve(training.role.role_arn)["Fn::GetAtt"][0]
    (grant,) = [s for s in _policy_statements(template, role_id)
                if s.get("Sid") == "MlflowTracking"]
    # Named actions (cdk-nag IAM5 refuses a wildcard), what the training client calls: no
    # registry, no delete, no UI.
    actions = set(grant["Action"])
    assert {"sagemaker-mlflow:CreateRun", "sagemaker-mlflow:LogBatch"} <= actions
    assert not any(a.endswith(("*", "AccessUI")) or ":Delete" in a or "Registered" in a
                   for a in actions)
    assert grant["Resource"] == {"Fn::GetAtt": [server_id, "TrackingServerArn"]}


def test_config_rejects_both_a_server_and_an_existing_arn():
    config, _ = cdk_app_package()
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    context["stages"]["dev"]["mlflow"] = {
        "trackingServer": True,
        "trackingServerArn": "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/x"}
    with pytest.raises(config.ConfigError, match="exclude each other"):
        config.load(context, "dev")
    context["stages"]["dev"]["mlflow"] = {"size": "Huge"}
    with pytest.raises(config.ConfigError, match="mlflow.size"):
        config.load(context, "dev")
    context["stages"]["dev"]["mlflow"] = {"trackingServerArn": "arn:aws:sagemaker:x"}
    with pytest.raises(config.ConfigError, match="trackingServerArn must look like"):
        config.load(context, "dev")


def test_cdk_nag_stays_clean_with_the_server(tmp_path):
    app, _ = synth_stage(tmp_path, "dev", nag=True, overrides=ON)
    app.synth()
    report = json.loads((tmp_path / "cdk.out" / "validation-report.json").read_text())
    (plugin,) = [p for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    left = sorted({f"{v['ruleName']} @ {c['constructPath']}"
                   for v in plugin["violations"] for c in v["violatingConstructs"]})
    assert left == []
