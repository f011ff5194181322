"""The pipeline's execution role grants exactly what the definition's steps and the step
scripts need: SageMaker's calls for each step type the definition holds, the step scripts' own
boto3 calls (found by scanning pipelines/steps), and what every job container needs to run
(image pull, logs, metrics, its S3 channels and key) — nothing more, nothing missing."""

from __future__ import annotations

import copy
import json
import re

import pytest

from .conftest import ROOT

STEP_TYPE_ACTIONS = {
    "Processing": {"sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob",
                   "sagemaker:StopProcessingJob"},
    "Training": {"sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob",
                 "sagemaker:StopTrainingJob"},
    "RegisterModel": {"sagemaker:CreateModelPackage", "sagemaker:DescribeModelPackageGroup"},
}
PIPELINE_SERVICE = {"sagemaker:AddTags", "iam:PassRole"}
"""The pipeline tags the jobs and packages it creates, and passes its own role to the jobs."""
JOB_RUNTIME = {
    "ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
    "ecr:BatchCheckLayerAvailability",                       # pull the XGBoost image
    "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
    "logs:DescribeLogStreams",                               # job logs
    "cloudwatch:PutMetricData",                              # job metrics
    "s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:GetBucketLocation",  # channels, outputs
    "kms:Decrypt", "kms:GenerateDataKey",                    # the artifact bucket's key
}
S3_CALLS = {"download_file": "s3:GetObject", "get_object": "s3:GetObject",
            "upload_file": "s3:PutObject", "put_object": "s3:PutObject"}


def step_script_actions() -> set[str]:
    found = set()
    for path in (ROOT / "pipelines" / "steps").glob("*.py"):
        for client, operation in re.findall(r'boto3\.client\("(\w+)"\)\.(\w+)\(', path.read_text()):
            assert client == "s3", f"{path.name} calls {client}: add its actions here"
            found.add(S3_CALLS[operation])
    return found


def definition_actions() -> set[str]:
    definition = json.loads((ROOT / "pipelines" / "definition.json").read_text())
    found = set()

    def walk(steps):
        for step in steps:
            found.update(STEP_TYPE_ACTIONS.get(step["Type"], set()))
            walk(step.get("Arguments", {}).get("IfSteps", []))
            walk(step.get("Arguments", {}).get("ElseSteps", []))
    walk(definition["Steps"])
    return found


def granted(template: dict) -> set[str]:
    roles = [logical for logical, r in template["Resources"].items()
             if r["Type"] == "AWS::IAM::Role" and "ExecutionRole" in logical
             and "sagemaker.amazonaws.com" in json.dumps(r["Properties"]["AssumeRolePolicyDocument"])]
    assert len(roles) == 1, roles
    actions = set()
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": roles[0]} in \
                resource["Properties"]["Roles"]:
            for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
                value = statement["Action"]
                actions.update([value] if isinstance(value, str) else value)
    return actions


def expected() -> set[str]:
    return definition_actions() | step_script_actions() | PIPELINE_SERVICE | JOB_RUNTIME


def test_step_scripts_call_only_s3_download():
    assert step_script_actions() == {"s3:GetObject"}  # evaluate fetches the champion model


def test_pipeline_role_grants_exactly_what_the_steps_need(synthesized):
    assert granted(synthesized["pipeline"].to_json()) == expected()


@pytest.mark.parametrize("victim", ["sagemaker:CreateTrainingJob", "s3:GetObject"])
def test_removing_one_permission_is_caught(synthesized, victim):
    template = copy.deepcopy(synthesized["pipeline"].to_json())
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::IAM::Policy":
            for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
                if isinstance(statement["Action"], list) and victim in statement["Action"]:
                    statement["Action"] = [a for a in statement["Action"] if a != victim]
                elif statement["Action"] == victim:
                    statement["Action"] = []
    assert granted(template) != expected()
    assert victim in expected() - granted(template)
