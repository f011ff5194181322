"""The real event samples, with the stage's own names, against every EventBridge rule's pattern
of the synthesized template, with a real pattern matcher (moto's implementation of
EventBridge's matching)."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone

from moto.events.models import EventPattern

from .conftest import event


def matching_rules(stage, sample: dict) -> set[str]:
    matched = set()
    for logical, rule in stage.rules().items():
        pattern = rule.get("EventPattern")
        if pattern is None:
            continue
        if EventPattern.load(json.dumps(pattern)).matches_event(sample):
            matched.add(logical)
    return matched


def _rule(stage, prefix: str) -> str:
    (logical,) = [name for name in stage.rules() if name.startswith(prefix)]
    return logical


def approval_of(group: str) -> dict:
    sample = event("sagemaker-model-package-state-change.approved.json")
    sample["detail"]["ModelPackageGroupName"] = group
    return sample


def test_an_approval_of_the_stages_group_reaches_the_deployment_controller_only(stage):
    group = stage.output(stage.stateful, "MlopsModelGroup")
    assert matching_rules(stage, approval_of(group)) == {_rule(stage, "ControlModelApproved")}


def test_other_groups_and_the_write_back_reach_nothing(stage):
    group = stage.output(stage.stateful, "MlopsModelGroup")
    assert matching_rules(stage, approval_of(group + "-other")) == set()
    writeback = event("sagemaker-model-package-state-change.metadata-writeback.json")
    writeback["detail"]["ModelPackageGroupName"] = group
    # The write-back of an approved version still says Approved; only the updated fields
    # tell it apart, and the pattern says so (the handler's deploy_decision agrees).
    assert matching_rules(stage, writeback) == set()
    from mlops_kit.core.approvals import deploy_decision
    from mlops_kit.deploy.events import parse_model_package_event

    assert deploy_decision(parse_model_package_event(writeback))[0] is False
    created_approved = approval_of(group)
    del created_approved["detail"]["UpdatedModelPackageFields"]
    assert matching_rules(stage, created_approved) == {_rule(stage, "ControlModelApproved")}
    assert deploy_decision(parse_model_package_event(created_approved))[0] is True
    rejected = approval_of(group)
    rejected["detail"]["ModelApprovalStatus"] = "Rejected"
    assert matching_rules(stage, rejected) == set()


SAMPLE_ENDPOINT = "fraud-scorer-prod"
"""The endpoint the real alarm sample names (in its alarm name and metric dimensions)."""


def alarm_event(name: str, state: str = "ALARM") -> dict:
    """The real "CloudWatch Alarm State Change" sample, for alarm `name` (`<endpoint>-<id>`)."""
    sample = event("cloudwatch-alarm-state-change.eventbridge.json")
    endpoint = next((e for e in ("fraud-scorer-dev", "fraud-scorer-prod")
                     if name.startswith(f"{e}-")), None)
    if endpoint:
        sample = json.loads(json.dumps(sample).replace(f'"{SAMPLE_ENDPOINT}"', f'"{endpoint}"'))
    sample = copy.deepcopy(sample)
    sample["detail"]["alarmName"] = name
    sample["resources"] = [f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}"]
    sample["detail"]["state"]["value"] = state
    # Raised now: an alarm is raised against what serves when it fires (the sample's own
    # 2026-11-20 time predates every record of a fresh history, and the rollback controller
    # does not roll back a champion promoted after the alarm).
    at = datetime.now(timezone.utc)
    sample["time"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    sample["detail"]["state"]["timestamp"] = at.isoformat(timespec="milliseconds")
    return sample


def test_every_rollback_alarm_of_the_stage_reaches_the_rollback_controller(stage):
    from mlops_kit.core.alarms import load_definitions

    endpoint = stage.output(stage.control, "EndpointName")
    alarms = stage.alarms()
    rollback_rule = _rule(stage, "ControlKitAlarm")
    for definition in load_definitions():
        name = definition.alarm_name(endpoint)
        if name not in alarms:
            continue
        # Only the rollback alarms reach the controller (the rule names them, from the same
        # definitions); a notify-only kit alarm (capture stopped) reaches no rule.
        if not definition.rollback:
            assert matching_rules(stage, alarm_event(name)) == set(), name
            continue
        assert matching_rules(stage, alarm_event(name)) == {rollback_rule}
        assert matching_rules(stage, alarm_event(name, "OK")) == set()


def test_operational_alarms_and_foreign_alarms_never_reach_the_rollback_controller(stage):
    endpoint = stage.output(stage.control, "EndpointName")
    kit_names = {n for n in stage.alarms() if n.startswith(f"{endpoint}-")}
    for name in set(stage.alarms()) - kit_names:
        assert matching_rules(stage, alarm_event(name)) == set(), name
    assert matching_rules(stage, alarm_event("someone-elses-alarm")) == set()
    other_stage = "fraud-scorer-prod" if stage.name == "dev" else "fraud-scorer-dev"
    assert matching_rules(stage, alarm_event(f"{other_stage}-feature-drift")) == set()


def test_scheduled_events_reach_only_their_own_function(stage):
    schedules = {logical: rule for logical, rule in stage.rules().items()
                 if "ScheduleExpression" in rule}
    assert {name.split("Schedule")[0].removeprefix("Control") for name in schedules} == {
        "Drift", "Probe"}
    for rule in schedules.values():
        (target,) = rule["Targets"]
        functions = {fn.function_name: fn.name for fn in stage.functions.values()}
        arn = target["Arn"]
        assert arn.rsplit(":", 1)[1] in functions
        policy = target["RetryPolicy"]
        minutes = int(rule["ScheduleExpression"].split("(")[1].split()[0])
        from mlops_kit.core.schedules import max_event_age

        assert policy["MaximumEventAgeInSeconds"] == max_event_age(minutes).total_seconds()
        name = functions[arn.rsplit(":", 1)[1]]
        fn = stage.functions[name]
        assert int(fn.environment["SCHEDULE_MINUTES"]) == minutes
