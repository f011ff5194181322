"""The synthesized templates: stateful ids, encryption, pipeline, rules, alarms, dashboard."""

from __future__ import annotations

import json

from aws_cdk.assertions import Match

from .conftest import ROOT

STATEFUL_IDS = {  # renaming any of these replaces a bucket, key, table or group
    "ArtifactStoreAccessLogs28327170": "AWS::S3::Bucket",
    "ArtifactStoreArtifacts856EDEA9": "AWS::S3::Bucket",
    "ArtifactStoreDataCaptureBE6EB719": "AWS::S3::Bucket",
    "ArtifactStoreKey28E2B6CF": "AWS::KMS::Key",
    "ModelRegistryGroupC87F7ECA": "AWS::SageMaker::ModelPackageGroup",
    "NotificationsTopicAE679CBD": "AWS::SNS::Topic",
    "TablesIdempotency498FF680": "AWS::DynamoDB::Table",
    "TablesLedgerF9806C8B": "AWS::DynamoDB::Table",
}


def _resources(template, kind):
    return template.find_resources(kind)


def test_stateful_logical_ids_pinned(synthesized):
    resources = synthesized["stateful"].to_json()["Resources"]
    kinds = {k: v["Type"] for k, v in resources.items()}
    assert {k: kinds.get(k) for k in STATEFUL_IDS} == STATEFUL_IDS


def test_buckets_encrypted_ssl_only_private_versioned(synthesized):
    t = synthesized["stateful"]
    buckets = _resources(t, "AWS::S3::Bucket")
    assert len(buckets) == 3
    for props in (b["Properties"] for b in buckets.values()):
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True}
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
        assert props["LifecycleConfiguration"]["Rules"]
    policies = _resources(t, "AWS::S3::BucketPolicy")
    assert len(policies) == 3
    for p in policies.values():
        statements = p["Properties"]["PolicyDocument"]["Statement"]
        assert any(s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool", {}).get(
            "aws:SecureTransport") == "false" for s in statements)


def test_tables_have_pitr_and_kms_and_ledger_keys(synthesized):
    from mlops_kit.aws.ledger import LEDGER_TABLE

    tables = _resources(synthesized["stateful"], "AWS::DynamoDB::Table")
    assert len(tables) == 2
    for t in tables.values():
        assert t["Properties"]["PointInTimeRecoverySpecification"] == {
            "PointInTimeRecoveryEnabled": True}
        assert t["Properties"]["SSESpecification"]["SSEEnabled"] is True
    ledger = [t for t in tables.values() if len(t["Properties"]["KeySchema"]) == 2][0]
    assert ledger["Properties"]["KeySchema"] == [
        {"AttributeName": LEDGER_TABLE["partition_key"]["name"], "KeyType": "HASH"},
        {"AttributeName": LEDGER_TABLE["sort_key"]["name"], "KeyType": "RANGE"}]
    assert ledger["DeletionPolicy"] == "Retain"


def test_model_package_group(synthesized):
    synthesized["stateful"].has_resource_properties(
        "AWS::SageMaker::ModelPackageGroup", {"ModelPackageGroupName": "fraud-detector-dev"})


def test_pipeline_has_no_placeholder_left(synthesized):
    pipelines = _resources(synthesized["pipeline"], "AWS::SageMaker::Pipeline")
    assert len(pipelines) == 1
    body = list(pipelines.values())[0]["Properties"]["PipelineDefinition"][
        "PipelineDefinitionBody"]
    text, variables = body["Fn::Sub"]
    assert set(variables) == {"ArtifactBucket", "PipelineRoleArn", "ModelPackageGroupName"}
    resolved = text
    for name in variables:
        resolved = resolved.replace("${" + name + "}", "X")
    assert "${" not in resolved
    json.loads(resolved)  # still a valid definition once substituted
    synthesized["pipeline"].resource_count_is("Custom::CDKBucketDeployment", 1)


def _rule_with(template, detail_type):
    rules = template.find_resources("AWS::Events::Rule", {"Properties": {
        "EventPattern": {"detail-type": [detail_type]}}})
    assert len(rules) == 1
    return list(rules.values())[0]["Properties"]


def _function_id(template, name):
    fns = template.find_resources("AWS::Lambda::Function", {"Properties": {
        "Description": Match.string_like_regexp(f"^mlops-kit {name} ")}})
    assert len(fns) == 1
    return list(fns)[0]


def test_model_approval_rule_targets_deployment_lambda(synthesized):
    t = synthesized["control"]
    rule = _rule_with(t, "SageMaker Model Package State Change")
    assert rule["EventPattern"]["detail"] == {"ModelPackageGroupName": ["fraud-detector-dev"],
                                              "ModelApprovalStatus": ["Approved"]}
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [_function_id(t, "deployment_controller"), "Arn"]}
    assert "DeadLetterConfig" in target and target["RetryPolicy"]["MaximumRetryAttempts"] == 8


def test_alarm_rule_targets_rollback_lambda(synthesized):
    t = synthesized["control"]
    rule = _rule_with(t, "CloudWatch Alarm State Change")
    assert rule["EventPattern"]["detail"] == {"alarmName": [{"prefix": "fraud-scorer-dev-"}],
                                              "state": {"value": ["ALARM"]}}
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [_function_id(t, "rollback_controller"), "Arn"]}
    assert "DeadLetterConfig" in target and "RetryPolicy" in target


def test_controllers_reserved_concurrency_one(synthesized):
    t = synthesized["control"]
    resources = t.to_json()["Resources"]
    for name in ("rollback_controller", "deployment_controller"):
        assert resources[_function_id(t, name)]["Properties"]["ReservedConcurrentExecutions"] == 1


def test_one_alarm_per_endpoint_level_definition(synthesized):
    definitions = json.loads((ROOT / "functions/mlops_kit/core/alarm_definitions.json")
                             .read_text())["alarms"]
    alarms = {a["Properties"]["AlarmName"]: a["Properties"] for a in
              _resources(synthesized["control"], "AWS::CloudWatch::Alarm").values()}
    expected = [d for d in definitions if "{champion}" not in json.dumps(d["dimensions"])]
    assert len(alarms) == len(expected) >= 3  # every endpoint-level definition, no more
    for d in expected:
        a = alarms[f"fraud-scorer-dev-{d['id']}"]
        assert (a["Namespace"], a["MetricName"]) == (d["namespace"], d["metric"])
        stat_key = "ExtendedStatistic" if d["statistic"].startswith("p") else "Statistic"
        assert a[stat_key] == d["statistic"]
        assert a["Period"] == d["period_seconds"] and a["Threshold"] == d["threshold"]
        assert a["ComparisonOperator"] == d["comparison"]
        assert a["EvaluationPeriods"] == d["evaluation_periods"]
        assert a["DatapointsToAlarm"] == d["datapoints_to_alarm"]
        assert a["TreatMissingData"] == d["treat_missing_data"]
        assert a["Dimensions"] == [{"Name": "EndpointName", "Value": "fraud-scorer-dev"}]


def test_dashboard(synthesized):
    synthesized["control"].resource_count_is("AWS::CloudWatch::Dashboard", 1)


def test_powertools_layer_is_pinned_to_the_locked_release():
    import importlib
    from importlib import metadata

    from .conftest import cdk_app_package

    cdk_app_package()
    control_functions = importlib.import_module("mlops_infra.constructs.control_functions")

    assert control_functions.POWERTOOLS_VERSION == metadata.version("aws-lambda-powertools")
    assert control_functions.POWERTOOLS_LAYER_PARAMETER.endswith("/" + metadata.version(
        "aws-lambda-powertools"))
