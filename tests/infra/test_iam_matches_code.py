"""Each Lambda role grants exactly the IAM actions its code declares (IAM_ACTIONS constants of
the handler and of the adapters it uses), plus what the platform needs (logs, X-Ray, KMS,
Powertools idempotency, the Kinesis event source). Removing one permission fails the check."""

from __future__ import annotations

import ast
import copy

import pytest

from mlops_kit.aws import health, ledger, monitoring
from mlops_kit.deploy import sagemaker_endpoint
from mlops_kit.registry import sagemaker as registry

from .conftest import ROOT

PLATFORM_PREFIXES = ("logs:", "xray:", "kms:")
IDEMPOTENCY = {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
               "dynamodb:DeleteItem"}  # Powertools DynamoDBPersistenceLayer, documented policy
KINESIS_MAPPING = {"kinesis:DescribeStreamSummary", "kinesis:GetRecords",
                   "kinesis:GetShardIterator", "kinesis:ListShards", "kinesis:SubscribeToShard",
                   "kinesis:DescribeStream", "kinesis:ListStreams",
                   "kinesis:DescribeStreamConsumer", "sqs:SendMessage",
                   "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
READ_VERBS = ("Describe", "List", "Get", "Query")


def _read_only(actions):
    return {a for a in actions if a.split(":", 1)[1].startswith(READ_VERBS)}


def _handler_actions(name):
    """A handler's IAM_ACTIONS, read without importing it (handlers read env at import)."""
    tree = ast.parse((ROOT / "functions" / name / "handler.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "IAM_ACTIONS" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name}/handler.py declares no IAM_ACTIONS")


def expected_actions() -> dict[str, set[str]]:
    control = set(registry.IAM_ACTIONS) | set(sagemaker_endpoint.IAM_ACTIONS)
    monitors = set(monitoring.IAM_ACTIONS) | _read_only(registry.IAM_ACTIONS) | _read_only(
        sagemaker_endpoint.IAM_ACTIONS)
    scorer = _handler_actions("stream_scorer")
    return {
        "deployment_controller": control | IDEMPOTENCY,
        "rollback_controller": control | IDEMPOTENCY | set(health.IAM_ACTIONS_HEALTH)
        | set(health.IAM_ACTIONS_NOTIFY),
        "drift_monitor": monitors | set(monitoring.IAM_ACTIONS_SERVICE_METRICS),
        "probe": monitors | set(_handler_actions("probe")),
        "stream_scorer": set(scorer["scoring"]) | set(scorer["kinesis"]),
    }


def granted(template_json: dict, role_id: str) -> set[str]:
    found: set[str] = set()
    for resource in template_json["Resources"].values():
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        if {"Ref": role_id} not in resource["Properties"]["Roles"]:
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"]
            found.update([actions] if isinstance(actions, str) else actions)
    return {a for a in found if not a.startswith(PLATFORM_PREFIXES)}


def role_ids(synthesized) -> dict[str, str]:
    stack = synthesized["stacks"].control
    return {name: stack.resolve(role.role_arn)["Fn::GetAtt"][0]
            for name, role in stack.control.roles.items()}


def compare(template_json, ids) -> dict[str, tuple[set, set]]:
    """name -> (granted but not declared, declared but not granted); empty when all match."""
    problems = {}
    for name, wanted in expected_actions().items():
        have = granted(template_json, ids[name])
        if name == "stream_scorer":
            have -= KINESIS_MAPPING
        if have != wanted:
            problems[name] = (have - wanted, wanted - have)
    return problems


def test_probe_declares_invoke():
    assert _handler_actions("probe") == ("sagemaker:InvokeEndpoint",)


def test_every_role_grants_exactly_what_the_code_declares(synthesized):
    assert compare(synthesized["control"].to_json(), role_ids(synthesized)) == {}


@pytest.mark.parametrize("victim", ["rollback_controller", "deployment_controller", "probe"])
def test_removing_one_permission_is_caught(synthesized, victim):
    template = copy.deepcopy(synthesized["control"].to_json())
    ids = role_ids(synthesized)
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": ids[victim]} in \
                resource["Properties"]["Roles"]:
            for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
                actions = statement["Action"]
                if isinstance(actions, list) and any(a.startswith("sagemaker:") for a in actions):
                    statement["Action"] = actions[1:]
                    break
            break
    problems = compare(template, ids)
    assert victim in problems and problems[victim][1]
