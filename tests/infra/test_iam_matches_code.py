"""Each Lambda role grants exactly the actions its contract says its code paths call
(`mlops_kit.contract`), plus the platform actions the contract lists with their reasons.
tests/deployed/ then runs every path under exactly these roles and checks each action is used."""

from __future__ import annotations

import copy

import pytest

from mlops_kit import contract


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
    return found


def role_ids(synthesized) -> dict[str, str]:
    stack = synthesized["stacks"].control
    return {name: stack.resolve(role.role_arn)["Fn::GetAtt"][0]
            for name, role in stack.control.roles.items()}


SINGLE_STAGE_ABSENT = frozenset({contract.REGISTRY_ROLE, contract.REGISTRY_LEDGER_TABLE})
"""A single stage has no registry role in another account and no registry ledger apart from
its own: nothing is granted on them."""


def contracted(name: str, absent: frozenset[str] = SINGLE_STAGE_ABSENT) -> set[str]:
    """The contract's actions of `name` on the resources the stack has (not `absent`)."""
    return {action for resource, actions in contract.function(name).grants().items()
            if resource not in absent for action in actions}


def compare(template_json, ids, absent=SINGLE_STAGE_ABSENT) -> dict[str, tuple[set, set]]:
    """name -> (granted but not in the contract, in the contract but not granted)."""
    problems = {}
    explained = set(contract.PLATFORM_ACTIONS) | set(contract.EVENT_SOURCE_ACTIONS)
    for name, role_id in ids.items():
        wanted = contracted(name, absent)
        have = granted(template_json, role_id)
        extra, missing = have - wanted - explained, wanted - have
        if extra or missing:
            problems[name] = (extra, missing)
    return problems


def test_every_role_grants_exactly_what_its_contract_says(synthesized):
    ids = role_ids(synthesized)
    assert set(ids) == set(contract.FUNCTIONS)
    assert compare(synthesized["control"].to_json(), ids) == {}


def test_the_rollback_role_holds_none_of_the_deployment_write_set(synthesized):
    ids = role_ids(synthesized)
    have = granted(synthesized["control"].to_json(), ids["rollback_controller"])
    writes = {"iam:PassRole", "sagemaker:CreateModel", "sagemaker:CreateEndpointConfig",
              "sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint",
              "sagemaker:CreateModelPackage", "sagemaker:CreateModelPackageGroup",
              "sagemaker:UpdateModelPackage", "sagemaker:AddTags"}
    assert have & writes == set()
    assert "sagemaker:UpdateEndpointWeightsAndCapacities" in have


@pytest.mark.parametrize("victim", ["rollback_controller", "deployment_controller", "probe"])
def test_removing_one_permission_is_caught(synthesized, victim):
    template = copy.deepcopy(synthesized["control"].to_json())
    ids = role_ids(synthesized)
    victim_action = sorted(a for a in contract.function(victim).actions
                           if a.startswith("sagemaker:"))[0]
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": ids[victim]} in \
                resource["Properties"]["Roles"]:
            for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
                actions = statement["Action"]
                actions = [actions] if isinstance(actions, str) else actions
                statement["Action"] = [a for a in actions if a != victim_action] or \
                    ["sagemaker:ListTags"]
    problems = compare(template, ids)
    assert victim in problems and victim_action in problems[victim][1]
