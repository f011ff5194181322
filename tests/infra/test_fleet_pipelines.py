"""Each model's own training pipeline in the fleet: the synthesized definition's parameter
defaults are that model's declared label column, gate thresholds and training parameters (what
the local home runs it with), so a run started by its schedule or new-data rule gates the model
by its own thresholds."""

from __future__ import annotations

import json

import pytest

from mlops_kit.core.gates import GATES

from .conftest import synth_fleet


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory):
    from aws_cdk.assertions import Template

    _, config, stacks = synth_fleet(tmp_path_factory.mktemp("fleet-pipelines"))
    found = {}
    for model in config.fleet.models.values():
        template = Template.from_stack(stacks[f"MlopsKit-{model.name}-Pipeline"]).to_json()
        (pipeline,) = [r for r in template["Resources"].values()
                       if r["Type"] == "AWS::SageMaker::Pipeline"]
        text, _ = pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
        found[model.name] = (model, {p["Name"]: p for p in json.loads(text)["Parameters"]})
    return found


def test_each_pipeline_defaults_to_its_models_declaration(pipelines):
    assert len(pipelines) >= 2
    for name, (model, parameters) in pipelines.items():
        declared = model.pipeline_parameters()
        assert {g.name for g in GATES} <= set(declared)
        defaults = {key: parameters[key]["DefaultValue"] for key in declared}
        assert defaults == declared, name
        # typed as the definition declares them: SageMaker refuses "0.4" for a Float
        for key, value in defaults.items():
            assert type(value).__name__ == {"Float": "float", "Integer": "int",
                                            "String": "str"}[parameters[key]["Type"]], key


def test_two_models_gate_by_their_own_thresholds(pipelines):
    (first, a), (second, b) = [(m, p) for m, p in pipelines.values()][:2]
    differing = {g.name for g in GATES
                 if a[g.name]["DefaultValue"] != b[g.name]["DefaultValue"]}
    assert differing, "the sample models declare different gates; their pipelines must differ"
    for gate in differing:
        assert a[gate]["DefaultValue"] == first.thresholds()[gate]
        assert b[gate]["DefaultValue"] == second.thresholds()[gate]
