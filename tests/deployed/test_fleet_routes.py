"""The fleet's seam between the CDK app and the Lambdas it deploys, with the synthesized values
on both sides: each environment's routed functions start from exactly their template
environment and the routes file their bundle ships, and then route what the template itself
sends them (the schedules' payloads, the promotion rule's environment, the monitoring stacks'
alarm names) to the declared model's endpoint."""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys

import pytest

from mlops_kit.fleet.loader import load_fleet
from mlops_kit.fleet.routes import ROUTES_FILE

from .conftest import ROOT, _infra_tests, infra_module
from .twin import lambda_runtime_environment, load_stage

ROUTED = ("deployment_controller", "rollback_controller", "drift_monitor", "probe")

ROUTE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import handler
routes = handler.runtime.routes
schedules = json.loads(sys.argv[2])
print(json.dumps({
    "environment": routes.environment,
    "models": {r.model: {"endpoint": r.settings.endpoint_name, "group": r.settings.model_group}
               for r in routes.routes.values()},
    "scheduled": [routes.for_schedule(s).model for s in schedules],
    "alarms": {a: (routes.by_endpoint(e).model if routes.by_endpoint(e) else None)
               for a, e in json.loads(sys.argv[3]).items()},
}))
"""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    synth_fleet = _infra_tests().synth_fleet
    app, config, stacks = synth_fleet(tmp_path_factory.mktemp("fleet"))
    return config, stacks, {s.stack_name: s.template for s in app.synth().stacks}


def _schedule_payloads(template: dict, function_logical_id: str) -> list[dict]:
    """The inputs of the schedules that invoke the function."""
    return [json.loads(r["Properties"]["Target"]["Input"])
            for r in template["Resources"].values() if r["Type"] == "AWS::Scheduler::Schedule"
            and r["Properties"]["Target"]["Arn"] == {"Fn::GetAtt": [function_logical_id, "Arn"]}]


def _rollback_alarms(templates: dict, environment: str, pattern: dict) -> dict[str, str]:
    """alarm name → the endpoint its metric names, for the environment's monitoring stacks'
    alarms that the rollback rule's name suffixes match."""
    suffixes = [s["suffix"] for s in pattern["detail"]["alarmName"]]
    found = {}
    for name, template in templates.items():
        if not name.startswith(f"MlopsKit-{environment}-") or name.endswith(
                ("-Control", "-Stateful")):
            continue
        for resource in template["Resources"].values():
            if resource["Type"] != "AWS::CloudWatch::Alarm":
                continue
            props = resource["Properties"]
            if any(props["AlarmName"].endswith(s) for s in suffixes):
                endpoint = next(d["Value"] for d in props["Dimensions"]
                                if d["Name"] == "EndpointName")
                found[props["AlarmName"]] = endpoint
    return found


@pytest.mark.parametrize("function", ROUTED)
@pytest.mark.parametrize("environment", ["dev", "staging", "prod"])
def test_each_routed_function_routes_the_templates_own_events(fleet, environment, function,
                                                              tmp_path):
    config, stacks, templates = fleet
    declared = {m.name: m for m in load_fleet(ROOT).models.values()
                if environment in m.deploy_to}
    stage = load_stage(environment, templates)
    fn = stage.functions[function]
    control = templates[f"MlopsKit-{environment}-Control"]
    routes_file = stacks[f"MlopsKit-{environment}-Control"].control.routes_file

    bundling = infra_module("constructs.bundling")
    files = bundling.module_closure(ROOT / "functions", function)
    bundling._LocalBundler(ROOT / "functions", files, None,
                           {ROUTES_FILE: routes_file}).try_bundle(str(tmp_path))
    rules = {p["Description"]: p["EventPattern"] for p in stage.rules().values()}
    alarm_pattern = next(p for d, p in rules.items() if "rollback controller" in d)
    alarms = _rollback_alarms(templates, environment, alarm_pattern)
    schedules = _schedule_payloads(control, fn.logical_id)
    environ = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
               "LAMBDA_TASK_ROOT": str(tmp_path),
               **lambda_runtime_environment(fn, {"AccessKeyId": "a", "SecretAccessKey": "s",
                                                 "SessionToken": "t"})}
    result = subprocess.run([sys.executable, "-c", ROUTE, str(tmp_path), json.dumps(schedules),
                             json.dumps(alarms)], cwd=tmp_path, env=environ,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])

    assert seen["environment"] == environment
    assert seen["models"] == {name: {"endpoint": m.endpoint_name(environment), "group": name}
                              for name, m in declared.items()}
    # each model has its own schedule of each monitor, and it routes to that model
    assert sorted(seen["scheduled"]) == (sorted(declared)
                                         if function in ("drift_monitor", "probe") else [])
    # every rollback alarm of the environment is matched by the rule and reaches its model
    assert len(alarms) == len(declared) * len(alarm_pattern["detail"]["alarmName"])
    assert all(model is not None for model in seen["alarms"].values())
    assert {seen["alarms"][a] for a in alarms} == set(declared)
    promotion = next(p for d, p in rules.items() if "promoted here" in d)
    assert promotion["detail"]["ModelLifeCycle"]["Stage"] == [environment]


def test_the_rollback_rule_matches_no_alarm_of_another_environment(fleet):
    _, _, templates = fleet
    prod_rule = next(p for p in load_stage("prod", templates).rules().values()
                     if "rollback controller" in p["Description"])["EventPattern"]
    suffixes = [s["suffix"] for s in prod_rule["detail"]["alarmName"]]
    others = [r["Properties"]["AlarmName"] for n, t in templates.items()
              if n.startswith(("MlopsKit-dev-", "MlopsKit-staging-"))
              for r in t["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert others and not [a for a in others if any(fnmatch.fnmatch(a, "*" + s)
                                                    for s in suffixes)]
