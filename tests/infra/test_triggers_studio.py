"""Pipeline triggers (schedule, new data) and the optional Studio entry point: the rules, their
targets and the roles, exactly; the config keys that drive them."""

from __future__ import annotations

import json

import pytest

from .conftest import ROOT, cdk_app_package, staged_stub

PIPELINE = "fraud-detector-dev-training"
SUBNETS = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
SG = ["sg-0123456789abcdef0"]


def _context(stage: str, **overrides):
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    context["aws:cdk:bundling-stacks"] = []
    context["stages"][stage].update(overrides)
    return context


def _synth(tmp, stage: str = "dev", **overrides):
    from aws_cdk import App
    from aws_cdk.assertions import Template

    config, stacks_module = cdk_app_package()
    context = _context(stage, **overrides)
    app = App(context=context, outdir=str(tmp / "cdk.out"),
              builtin_cloud_formation_validation=False)
    stacks = stacks_module.compose(app, config.load(context, stage),
                                   stacks_module.Paths(pipeline_assets=staged_stub(tmp / "a")))
    return {"stacks": stacks, "pipeline": Template.from_stack(stacks.pipeline),
            "stateful": Template.from_stack(stacks.stateful)}


@pytest.fixture(scope="module")
def triggered(tmp_path_factory):
    return _synth(tmp_path_factory.mktemp("triggers"), trainingSchedule="rate(1 day)",
                  newDataTrigger=True, newDataKey="incoming/latest.parquet")


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    return _synth(tmp_path_factory.mktemp("studio"), studio={
        "enabled": True, "vpcId": "vpc-0123456789abcdef0", "subnetIds": SUBNETS,
        "securityGroupIds": SG, "mlflowTrackingServerName": "kit-mlflow"})


def _pipeline_arn(suffix: str = ""):
    return {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":sagemaker:",
                              {"Ref": "AWS::Region"}, ":", {"Ref": "AWS::AccountId"},
                              f":pipeline/{PIPELINE}{suffix}"]]}


def _rules(template):
    return {r["Properties"]["Description"].split(" ")[0]: r["Properties"]
            for r in template.find_resources("AWS::Events::Rule").values()}


def _one(template, kind, props=None):
    found = template.find_resources(kind, {"Properties": props} if props else None)
    assert len(found) == 1, found
    return next(iter(found.items()))


def _statements(template, role_prefix):
    policies = [p["Properties"] for k, p in template.find_resources("AWS::IAM::Policy").items()
                if k.startswith(role_prefix)]
    assert len(policies) == 1
    return {s["Sid"]: s for s in policies[0]["PolicyDocument"]["Statement"]}


def _actions(statement):
    actions = statement["Action"]
    return sorted([actions] if isinstance(actions, str) else actions)


def test_schedule_rule_starts_pipeline_with_defaults(triggered):
    t = triggered["pipeline"]
    rule = _rules(t)["Scheduled"]
    assert rule["ScheduleExpression"] == "rate(1 day)" and rule["State"] == "ENABLED"
    (target,) = rule["Targets"]
    assert target["Arn"] == _pipeline_arn()
    assert "SageMakerPipelineParameters" not in target  # the definition's defaults
    dlq, _ = _one(t, "AWS::SQS::Queue")
    role, _ = _one(t, "AWS::IAM::Role", {"AssumeRolePolicyDocument": {"Statement": [
        {"Action": "sts:AssumeRole", "Effect": "Allow",
         "Principal": {"Service": "events.amazonaws.com"}}]}})
    assert target["RoleArn"] == {"Fn::GetAtt": [role, "Arn"]}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [dlq, "Arn"]}}
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 8, "MaximumEventAgeInSeconds": 21600}


def test_new_data_rule_matches_the_one_key_and_sets_input_uri(triggered):
    rule = _rules(triggered["pipeline"])["s3://<artifact"]
    bucket = {"Fn::ImportValue": "MlopsKit-dev-Stateful-ArtifactBucketName"}
    assert rule["EventPattern"] == {
        "source": ["aws.s3"], "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [bucket]}, "object": {"key": ["incoming/latest.parquet"]}}}
    (target,) = rule["Targets"]
    assert target["Arn"] == _pipeline_arn()
    assert target["SageMakerPipelineParameters"] == {"PipelineParameterList": [{
        "Name": "InputDataUri",
        "Value": {"Fn::Join": ["", ["s3://", bucket, "/incoming/latest.parquet"]]}}]}
    assert "DeadLetterConfig" in target and target["RetryPolicy"]["MaximumRetryAttempts"] == 8


def test_input_uri_is_a_pipeline_parameter():
    names = {p["Name"] for p in
             json.loads((ROOT / "pipelines" / "definition.json").read_text())["Parameters"]}
    assert "InputDataUri" in names


def test_bucket_sends_events_to_eventbridge(triggered):
    triggered["stateful"].has_resource_properties("AWS::S3::Bucket", {
        "NotificationConfiguration": {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}})
    # natively on the bucket: no notifications custom resource (a Lambda)
    triggered["stateful"].resource_count_is("Custom::S3BucketNotifications", 0)


def test_trigger_role_may_only_start_this_pipeline(triggered):
    statements = _statements(triggered["pipeline"], "TriggersStartRole")
    assert statements == {"StartPipeline": {
        "Action": "sagemaker:StartPipelineExecution", "Effect": "Allow",
        "Resource": _pipeline_arn(), "Sid": "StartPipeline"}}


def test_dlq_accepts_only_these_rules(triggered):
    t = triggered["pipeline"]
    _, policy = _one(t, "AWS::SQS::QueuePolicy")
    (allow,) = [s for s in policy["Properties"]["PolicyDocument"]["Statement"]
                if s["Effect"] == "Allow"]
    rules = sorted(t.find_resources("AWS::Events::Rule"))
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    assert sorted(a["Fn::GetAtt"][0] for a in allow["Condition"]["ArnEquals"]["aws:SourceArn"]) \
        == rules


def test_triggers_off(tmp_path):
    out = _synth(tmp_path, trainingSchedule=None, newDataTrigger=False)
    out["pipeline"].resource_count_is("AWS::Events::Rule", 0)
    out["pipeline"].resource_count_is("AWS::SQS::Queue", 0)
    assert "NotificationConfiguration" not in out["stateful"].to_json()["Resources"][
        "ArtifactStoreArtifacts856EDEA9"]["Properties"]
    out["pipeline"].resource_count_is("AWS::SageMaker::Domain", 0)  # studio off by default
    out["pipeline"].resource_count_is("AWS::SageMaker::UserProfile", 0)


def test_studio_domain_and_profile(studio):
    t = studio["pipeline"]
    role, _ = _one(t, "AWS::IAM::Role", {"Description": _scientist()})
    domain, props = _one(t, "AWS::SageMaker::Domain")
    p = props["Properties"]
    assert (p["AuthMode"], p["AppNetworkAccessType"], p["DomainName"]) == (
        "IAM", "VpcOnly", "mlops-kit-dev")
    assert (p["VpcId"], p["SubnetIds"]) == ("vpc-0123456789abcdef0", SUBNETS)
    assert p["DefaultUserSettings"] == {"ExecutionRole": {"Fn::GetAtt": [role, "Arn"]},
                                        "SecurityGroups": SG}
    _, profile = _one(t, "AWS::SageMaker::UserProfile")
    assert profile["Properties"]["DomainId"] == {"Fn::GetAtt": [domain, "DomainId"]}
    assert profile["Properties"]["UserProfileName"] == "scientist"
    assert profile["Properties"]["UserSettings"]["ExecutionRole"] == {"Fn::GetAtt": [role, "Arn"]}


def _scientist():
    from aws_cdk.assertions import Match

    return Match.string_like_regexp("^mlops-kit scientist")


def test_scientist_role_exactly(studio):
    s = _statements(studio["pipeline"], "ScientistRole")
    local = lambda r: {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":sagemaker:",  # noqa: E731
                                        {"Ref": "AWS::Region"}, ":", {"Ref": "AWS::AccountId"},
                                        f":{r}"]]}
    group = local("model-package-group/fraud-detector-dev")
    packages = local("model-package/fraud-detector-dev/*")
    assert sorted(s) == ["ApproveOrReject", "Decrypt", "List", "MlflowRead", "MlflowServer",
                         "PipelineExecutions", "ReadEvaluationReports", "ReadLedger",
                         "ReadRegistry"]
    assert _actions(s["PipelineExecutions"]) == sorted([
        "sagemaker:StartPipelineExecution", "sagemaker:DescribePipeline",
        "sagemaker:DescribePipelineExecution", "sagemaker:DescribePipelineDefinitionForExecution",
        "sagemaker:ListPipelineExecutions", "sagemaker:ListPipelineExecutionSteps",
        "sagemaker:ListPipelineParametersForExecution"])
    assert s["PipelineExecutions"]["Resource"] == [_pipeline_arn(), _pipeline_arn("/execution/*")]
    assert _actions(s["ReadRegistry"]) == ["sagemaker:DescribeModelPackage",
                                           "sagemaker:DescribeModelPackageGroup"]
    assert s["ReadRegistry"]["Resource"] == [group, packages]
    assert _actions(s["ApproveOrReject"]) == ["sagemaker:UpdateModelPackage"]
    assert s["ApproveOrReject"]["Resource"] == packages  # that group's versions only
    assert _actions(s["List"]) == ["sagemaker:ListModelPackageGroups",
                                   "sagemaker:ListModelPackages", "sagemaker:ListPipelines"]
    assert _actions(s["ReadLedger"]) == ["dynamodb:GetItem", "dynamodb:Query"]
    ledger = s["ReadLedger"]["Resource"]["Fn::ImportValue"]
    assert "TablesLedger" in ledger
    assert _actions(s["ReadEvaluationReports"]) == ["s3:GetObject"]
    assert s["ReadEvaluationReports"]["Resource"] == {"Fn::Join": ["", [
        {"Fn::ImportValue": "MlopsKit-dev-Stateful-ArtifactBucketArn"},
        "/pipeline-runs/*/EvaluateModel/*"]]}
    assert _actions(s["Decrypt"]) == ["kms:Decrypt"]
    server = local("mlflow-tracking-server/kit-mlflow")
    assert s["MlflowRead"]["Resource"] == s["MlflowServer"]["Resource"] == server
    assert all(a.startswith("sagemaker-mlflow:") for a in _actions(s["MlflowRead"]))
    assert not any(a.startswith(("sagemaker-mlflow:Create", "sagemaker-mlflow:Delete",
                                 "sagemaker-mlflow:Update", "sagemaker-mlflow:Log"))
                   for a in _actions(s["MlflowRead"]))
    # nothing that writes data, deploys or passes roles
    everything = [a for st in s.values() for a in _actions(st)]
    assert not [a for a in everything if a.startswith(("s3:Put", "iam:", "sagemaker:Create"))
                and a != "sagemaker:CreatePresignedMlflowTrackingServerUrl"]


def test_studio_attach_to_existing_domain(tmp_path):
    out = _synth(tmp_path, studio={"enabled": True, "domainId": "d-abcdefghijkl",
                                   "userProfileName": "alice"})
    t = out["pipeline"]
    t.resource_count_is("AWS::SageMaker::Domain", 0)
    t.has_resource_properties("AWS::SageMaker::UserProfile", {
        "DomainId": "d-abcdefghijkl", "UserProfileName": "alice"})
    assert "MlflowRead" not in _statements(t, "ScientistRole")


@pytest.mark.parametrize("overrides, message", [
    ({"trainingSchedule": "every day"}, "trainingSchedule"),
    ({"trainingSchedule": "rate(1 days)"}, "trainingSchedule"),
    ({"newDataKey": "incoming/*.csv"}, "newDataKey"),
    ({"newDataKey": "incoming/data.json"}, "newDataKey"),
    ({"newDataKey": "pipeline-runs/x.csv"}, "newDataKey"),
    ({"newDataTrigger": "yes"}, "newDataTrigger must be true or false"),
    ({"studio": {"enabled": True}}, "needs vpcId and subnetIds"),
    ({"studio": {"enabled": True, "vpcId": "vpc-0123456789abcdef0", "subnetIds": SUBNETS}},
     "VpcOnly domain needs securityGroupIds"),
    ({"studio": {"enabled": True, "domainId": "d-abcdefghijkl", "subnetIds": SUBNETS}},
     "not with domainId"),
    ({"studio": {"enabled": True, "domainId": "d-abcdefghijkl",
                 "appNetworkAccessType": "Public"}}, "appNetworkAccessType"),
    ({"studio": {"enabled": True, "vpcId": "vpc-1"}}, "studio.vpcId: 'vpc-1' does not look like"),
    ({"studio": {"enabled": True, "vpcId": "vpc-0123456789abcdef0",
                 "subnetIds": [SUBNETS[0], "subnet-x"]}}, "studio.subnetIds[1]: 'subnet-x'"),
    ({"warmFallbacks": True}, "warmFallbacks must be a whole number"),
    ({"capturePercent": 0}, "capturePercent must be 1..100"),
    ({"featureOrder": "a,b"}, "featureOrder must be a list"),
    ({"fallbackRegion": "eu-west-1"}, "unknown key(s) fallbackRegion"),
    ({"modelGroup": None}, "modelGroup is required"),
    ({"studio": {"enabled": "true"}}, "studio.enabled must be true or false"),
    ({"studio": {"enable": True}}, "unknown key(s) studio.enable"),
    ({"studio": []}, "studio must be an object"),
])
def test_config_rejects(overrides, message):
    config, _ = cdk_app_package()
    with pytest.raises(config.ConfigError, match=None) as err:
        config.load(_context("dev", **overrides), "dev")
    assert message in str(err.value)


def test_config_defaults():
    config, _ = cdk_app_package()
    cfg = config.load({"stages": {"x": {"endpointName": "e", "modelGroup": "g"}}}, "x")
    assert (cfg.training_schedule, cfg.new_data_trigger, cfg.new_data_key) == (
        None, False, "incoming/latest.parquet")
    assert cfg.studio.enabled is False and cfg.studio.network_access == "VpcOnly"
    for stage in ("dev", "prod"):
        assert config.load(_context(stage), stage).studio.enabled is False


def test_nag_and_cfn_lint_clean_with_everything_on(tmp_path):
    """The dev fixture of test_nag.py has Studio off: the Studio role's acknowledgements (and
    the schedule) are checked here."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from aws_cdk import App, Validations
    from cdk_nag import AwsSolutionsChecks

    config, stacks_module = cdk_app_package()
    context = _context("dev", trainingSchedule="cron(0 3 ? * MON *)", newDataTrigger=True,
                       studio={"enabled": True, "vpcId": "vpc-0123456789abcdef0",
                               "subnetIds": SUBNETS, "securityGroupIds": SG,
                               "mlflowTrackingServerName": "kit-mlflow"})
    app = App(context=context, outdir=str(tmp_path / "cdk.out"),
              builtin_cloud_formation_validation=False)
    stacks_module.compose(app, config.load(context, "dev"),
                          stacks_module.Paths(pipeline_assets=staged_stub(tmp_path / "a")))
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    app.synth()
    report = json.loads((tmp_path / "cdk.out" / "validation-report.json").read_text())
    (plugin,) = [p for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    assert plugin["violations"] == [] and plugin["conclusion"] == "success"
    acknowledged = {f["acknowledgedId"] for f in plugin["suppressedViolations"]}
    assert any("pipeline-runs/*/EvaluateModel/*" in a for a in acknowledged)
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    if shutil.which(str(cfn_lint)) is None:
        pytest.skip("cfn-lint not installed in the venv")
    result = subprocess.run(
        [str(cfn_lint), "--config-file", str(ROOT / ".cfnlintrc.yaml"), "--",
         *sorted(str(p) for p in (tmp_path / "cdk.out").glob("*.template.json"))],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
