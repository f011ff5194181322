"""The synthesized templates: stateful ids, encryption, pipeline, rules, alarms, dashboard."""

from __future__ import annotations

import importlib
import json
from dataclasses import replace

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
    detail = rule["EventPattern"]["detail"]
    assert detail["ModelPackageGroupName"] == ["fraud-detector-dev"]
    assert detail["ModelApprovalStatus"] == ["Approved"]
    assert {"UpdatedModelPackageFields": ["ModelApprovalStatus"]} in detail["$or"]
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [_function_id(t, "deployment_controller"), "Arn"]}
    assert "DeadLetterConfig" in target and target["RetryPolicy"]["MaximumRetryAttempts"] == 8


def test_alarm_rule_targets_rollback_lambda(synthesized):
    t = synthesized["control"]
    rule = _rule_with(t, "CloudWatch Alarm State Change")
    # The rollback alarms by name: the kit's notify-only alarms (capture-stopped) share the
    # name prefix and must not reach the rollback controller.
    assert rule["EventPattern"]["detail"] == {
        "alarmName": [f"fraud-scorer-dev-{i}" for i in ("champion-5xx", "champion-latency",
                                                        "feature-drift", "performance",
                                                        "prediction-drift")],
        "state": {"value": ["ALARM"]}}
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [_function_id(t, "rollback_controller"), "Arn"]}
    assert "DeadLetterConfig" in target and "RetryPolicy" in target


def test_controllers_reserve_no_concurrency_unless_configured(synthesized, tmp_path):
    """An account on the default quota (10) cannot reserve any: the default reserves none."""
    t = synthesized["control"]
    resources = t.to_json()["Resources"]
    for name in ("rollback_controller", "deployment_controller"):
        assert "ReservedConcurrentExecutions" not in resources[_function_id(t, name)]["Properties"]

    from aws_cdk.assertions import Template
    from .conftest import synth_stage

    _, stacks = synth_stage(tmp_path, "dev", overrides={"controllerReservedConcurrency": 2})
    configured = Template.from_stack(stacks.control)
    found = configured.find_resources("AWS::Lambda::Function")
    reserved = {fid: r["Properties"].get("ReservedConcurrentExecutions")
                for fid, r in found.items()}
    assert sorted(v for v in reserved.values() if v is not None) == [2, 2]


def test_one_alarm_per_definition_fitted_to_the_stage_schedule(synthesized):
    from mlops_kit.core.alarms import AlarmDefinition, fit_to_schedule, in_home, load_specs

    alarms = {a["Properties"]["AlarmName"]: a["Properties"] for a in
              _resources(synthesized["control"], "AWS::CloudWatch::Alarm").values()
              if a["Properties"]["AlarmName"].startswith("fraud-scorer-dev-")}
    expected = fit_to_schedule(in_home(load_specs(), "aws"), 10)  # dev's driftScheduleMinutes
    # Every definition of the AWS home, no more (capture-dropped is the local endpoint's).
    assert len(alarms) == len(expected) == 6
    # The windows, hand-checked for a 10-minute schedule (core.alarms.AlarmSpec.fit).
    assert {name.removeprefix("fraud-scorer-dev-"): (a["Period"], a["EvaluationPeriods"],
                                                     a["DatapointsToAlarm"])
            for name, a in alarms.items()} == {
        "feature-drift": (600, 4, 2), "prediction-drift": (600, 4, 2),
        "performance": (600, 3, 2), "champion-5xx": (60, 18, 3),
        "champion-latency": (60, 20, 3), "capture-stopped": (600, 3, 2)}
    for d in expected:
        a = alarms[d.alarm_name("fraud-scorer-dev")]
        assert a["Dimensions"] == [{"Name": "EndpointName", "Value": "fraud-scorer-dev"}]
        stat_key = "ExtendedStatistic" if d.statistic.startswith("p") else "Statistic"
        assert a[stat_key] == d.statistic
        # What the deployed-twin tests read back is what core evaluates.
        back = AlarmDefinition.from_cloudformation(a["AlarmName"], a, rollback=d.rollback)
        assert replace(back, homes=d.homes) == replace(
            d, dimensions={"EndpointName": "fraud-scorer-dev"})


def test_alarm_windows_follow_the_schedule_they_are_given():
    from aws_cdk import App, Stack
    from aws_cdk.assertions import Template

    from .conftest import cdk_app_package

    cdk_app_package()
    monitoring = importlib.import_module("mlops_infra.constructs.monitoring")
    stack = Stack(App(), "S")
    monitoring.Monitoring(stack, "M", endpoint_name="e", schedule_minutes=15,
                          definitions_path=ROOT / "functions/mlops_kit/core/alarm_definitions.json")
    alarms = {a["Properties"]["AlarmName"]: a["Properties"]
              for a in Template.from_stack(stack).find_resources("AWS::CloudWatch::Alarm").values()}
    assert (alarms["e-feature-drift"]["Period"], alarms["e-feature-drift"]["EvaluationPeriods"]) \
        == (900, 4)
    assert (alarms["e-champion-5xx"]["Period"], alarms["e-champion-5xx"]["EvaluationPeriods"]) \
        == (60, 15 + 3 + 2 + 3)
    assert "e-capture-dropped" not in alarms  # the local home's only
    assert all("AlarmActions" not in a for a in alarms.values())  # no topic given


def test_notify_only_alarms_notify_the_topic_and_rollback_alarms_do_not():
    from aws_cdk import App, Stack
    from aws_cdk import aws_sns as sns
    from aws_cdk.assertions import Template

    from .conftest import cdk_app_package

    cdk_app_package()
    monitoring = importlib.import_module("mlops_infra.constructs.monitoring")
    stack = Stack(App(), "S")
    topic = sns.Topic(stack, "Topic")
    monitoring.Monitoring(stack, "M", endpoint_name="e", schedule_minutes=10,
                          definitions_path=ROOT / "functions/mlops_kit/core/alarm_definitions.json",
                          notification_topic=topic)
    template = Template.from_stack(stack)
    (topic_id,) = template.find_resources("AWS::SNS::Topic")
    alarms = {a["Properties"]["AlarmName"]: a["Properties"]
              for a in template.find_resources("AWS::CloudWatch::Alarm").values()}
    assert alarms["e-capture-stopped"]["AlarmActions"] == [{"Ref": topic_id}]
    assert alarms["e-capture-stopped"]["MetricName"] == "UncapturedInvocations"
    assert [n for n, a in alarms.items() if "AlarmActions" in a] == ["e-capture-stopped"]
    assert alarms["e-champion-5xx"]["TreatMissingData"] == "notBreaching"
    assert alarms["e-performance"]["ComparisonOperator"] == "LessThanThreshold"


def test_dashboard(synthesized):
    synthesized["control"].resource_count_is("AWS::CloudWatch::Dashboard", 1)


def test_powertools_layer_is_pinned_to_the_locked_release():
    import importlib
    from importlib import metadata

    from .conftest import cdk_app_package

    cdk_app_package()
    kit_function = importlib.import_module("mlops_infra.constructs.kit_function")

    assert kit_function.POWERTOOLS_VERSION == metadata.version("aws-lambda-powertools")
    assert kit_function.POWERTOOLS_LAYER_PARAMETER.endswith("/" + metadata.version(
        "aws-lambda-powertools"))
