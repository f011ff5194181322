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


@pytest.fixture(scope="module", params=["one-account", "three-accounts"])
def fleet(request, tmp_path_factory):
    from aws_cdk.assertions import Template

    _, config, stacks = synth_fleet(tmp_path_factory.mktemp(f"fleet-iam-{request.param}"),
                                    overrides=ACCOUNT_LAYOUTS[request.param])
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
    beside = environment != config.registry_environment
    # The registry's versions: through its role from another account, straight from its
    # ledger beside it in the same account, from the environment's own ledger in its own.
    absent = ({contract.REGISTRY_LEDGER_TABLE} if crosses else
              {contract.REGISTRY_ROLE} if beside else
              {contract.REGISTRY_ROLE, contract.REGISTRY_LEDGER_TABLE})
    assert compare(templates[name], _role_ids(stacks[name]), frozenset(absent)) == {}
    grants = _resources_granted(templates[name], _role_ids(stacks[name]))
    for fn, resources in grants.items():
        on_ledger = any("mlops-kit-registry-ledger" in r for r in resources)
        wanted = contract.REGISTRY_LEDGER_TABLE in contract.function(fn).grants()
        assert on_ledger == (wanted and beside and not crosses), (fn, resources)
        on_bucket = any("mlops-kit-registry-" in r and ":s3:::" in r for r in resources)
        assert on_bucket == (beside and fn in ("drift_monitor", "probe")), (fn, resources)


def _resources_granted(template: dict, role_ids: dict[str, str]) -> dict[str, list[str]]:
    """Each role's granted resources, as text (tokens rendered as JSON)."""
    import json

    found: dict[str, list[str]] = {}
    for fn, role_id in role_ids.items():
        for resource in template["Resources"].values():
            if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in \
                    resource["Properties"]["Roles"]:
                for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
                    listed = statement["Resource"]
                    found.setdefault(fn, []).extend(
                        json.dumps(r) for r in (listed if isinstance(listed, list) else [listed]))
    return found


def test_the_registry_access_roles_grant_every_registry_read(fleet):
    config, stacks, templates = fleet
    registry = stacks["MlopsKit-Registry"]
    reads = {action for fn in contract.FUNCTIONS
             for resource, actions in contract.function(fn).grants().items()
             if resource in (contract.MODEL_GROUP, contract.MODEL_PACKAGES)
             for action in actions}
    assert reads  # the controllers and monitors do read the registry
    assert set(registry.access) == {e for e in ("staging", "prod")
                                    if config.crosses_accounts(e)}
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
