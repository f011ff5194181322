"""IAM against the code in the fleet, with each environment in its own account (the registry
in dev's): every environment's control roles grant exactly what their contract says (the
registry role to assume included, where the registry is in another account), and the role each
environment assumes in the registry account grants every registry read the functions make."""

from __future__ import annotations

import pytest

from mlops_kit import contract

from .conftest import synth_fleet
from .test_fleet_nag import ACCOUNT_LAYOUTS
from .test_iam_matches_code import compare, granted


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    from aws_cdk.assertions import Template

    _, config, stacks = synth_fleet(tmp_path_factory.mktemp("fleet-iam"),
                                    overrides=ACCOUNT_LAYOUTS["three-accounts"])
    return config, stacks, {name: Template.from_stack(stack).to_json()
                            for name, stack in stacks.items()}


def _role_ids(stack) -> dict[str, str]:
    return {name: stack.resolve(role.role_arn)["Fn::GetAtt"][0]
            for name, role in stack.control.roles.items()}


@pytest.mark.parametrize("environment", ["dev", "staging", "prod"])
def test_each_environments_roles_grant_what_their_contract_says(fleet, environment):
    config, stacks, templates = fleet
    name = f"MlopsKit-{environment}-Control"
    crosses = config.crosses_accounts(environment)
    assert crosses == (environment != config.registry_environment)
    absent = frozenset() if crosses else frozenset({contract.REGISTRY_ROLE})
    assert compare(templates[name], _role_ids(stacks[name]), absent) == {}


def test_the_registry_access_roles_grant_every_registry_read(fleet):
    config, stacks, templates = fleet
    registry = stacks["MlopsKit-Registry"]
    reads = {action for fn in contract.FUNCTIONS
             for resource, actions in contract.function(fn).grants().items()
             if resource in (contract.MODEL_GROUP, contract.MODEL_PACKAGES)
             for action in actions}
    assert reads  # the controllers and monitors do read the registry
    assert set(registry.access) == {"staging", "prod"}
    for environment, access in registry.access.items():
        role_id = registry.resolve(access.role.role_arn)["Fn::GetAtt"][0]
        have = granted(templates["MlopsKit-Registry"], role_id)
        assert reads <= have, f"{environment}: {sorted(reads - have)} not granted"
        assert not any(a.split(":")[1].startswith(("Create", "Update", "Delete", "Put"))
                       for a in have), f"{environment}'s role may write: {sorted(have)}"


def test_each_models_stream_scorer_scores_its_own_endpoint_with_its_contracts_grants(fleet):
    """In a fleet a scorer serves one endpoint (ENDPOINT_NAME): each model that declares
    stream_scoring has its own in each environment's monitoring stack, reading its own input
    stream and writing its own output stream, its role granting what the contract says."""
    config, stacks, templates = fleet
    scorers = 0
    for environment in config.environments:
        for model in config.models_in(environment):
            name = f"MlopsKit-{environment}-{model.name}"
            stack, template = stacks[name], templates[name]
            declared = model.serving_in(environment).stream_scoring
            assert (stack.scoring is not None) == declared, name
            if not declared:
                continue
            scorers += 1
            parts = stack.scoring.parts
            role_id = stack.resolve(parts.role.role_arn)["Fn::GetAtt"][0]
            assert compare(template, {"stream_scorer": role_id}) == {}, name
            function_id = stack.resolve(parts.function.function_arn)["Fn::GetAtt"][0]
            variables = template["Resources"][function_id]["Properties"]["Environment"][
                "Variables"]
            assert variables["ENDPOINT_NAME"] == model.endpoint_name(environment)
            output_id = stack.resolve(parts.output_stream.stream_arn)["Fn::GetAtt"][0]
            assert variables["OUTPUT_STREAM_NAME"] == {"Ref": output_id}
            (mapping,) = [r["Properties"] for r in template["Resources"].values()
                          if r["Type"] == "AWS::Lambda::EventSourceMapping"]
            input_id = stack.resolve(parts.input_stream.stream_arn)["Fn::GetAtt"][0]
            assert mapping["EventSourceArn"] == {"Fn::GetAtt": [input_id, "Arn"]}
            assert mapping["FunctionName"] == {"Ref": function_id}
    assert scorers > 0  # the sample models declare stream scoring
