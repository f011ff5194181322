"""A controller event that fails for good is kept, not dropped: the template gives each
controller's asynchronous invocations an on-failure destination (after Lambda's retries), the
role may send to it, an alarm tells on-call, and the runbook's replay delivers it again."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from .scenario import Scenario, now_minute
from .test_event_rules import alarm_event
from .twin import ACCOUNT, as_function

CONTROLLERS = ("deployment_controller", "rollback_controller")


def invoke_configs(stage) -> dict[str, dict]:
    r = stage.resolver
    found = {}
    for logical in r.resources(stage.control, "AWS::Lambda::EventInvokeConfig"):
        props = r.properties(stage.control, logical)
        found[props["FunctionName"]] = props
    return found


def failed_events_queue(stage) -> tuple[str, str]:
    url = stage.output(stage.control, "FailedEventsQueueUrl")
    name = url.rsplit("/", 1)[1]
    return url, f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}"


@pytest.mark.parametrize("function", CONTROLLERS)
def test_controllers_keep_failed_events_in_the_stage_queue(stage, function):
    fn = stage.functions[function]
    config = invoke_configs(stage)[fn.function_name]
    url, queue_arn = failed_events_queue(stage)
    assert config["DestinationConfig"]["OnFailure"]["Destination"] == queue_arn
    assert config["MaximumRetryAttempts"] == 2
    # Lambda sends the destination record with the function's own role.
    from .twin import allowed

    assert allowed(fn.statements, "sqs:SendMessage", queue_arn)


def test_on_call_hears_of_a_failed_event(stage):
    _, queue_arn = failed_events_queue(stage)
    queue_name = queue_arn.rsplit(":", 1)[1]
    topic = stage.output(stage.stateful, "NotificationTopicArn")
    watching = [a for a in stage.alarms().values()
                if a["MetricName"] == "ApproximateNumberOfMessagesVisible"
                and {"Name": "QueueName", "Value": queue_name} in a["Dimensions"]]
    assert len(watching) == 1
    (alarm,) = watching
    assert alarm["AlarmActions"] == [topic] and alarm["Threshold"] == 1


def destination_record(function_arn: str, payload: dict, error: Exception) -> dict:
    """Lambda's on-failure destination record for an asynchronous invocation."""
    return {"version": "1.0", "timestamp": datetime.now(timezone.utc).isoformat(),
            "requestContext": {"requestId": "failed-1", "functionArn": f"{function_arn}:$LATEST",
                               "condition": "RetriesExhausted", "approximateInvokeCount": 3},
            "requestPayload": payload,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST",
                                "functionError": "Unhandled"},
            "responsePayload": {"errorMessage": str(error), "errorType": type(error).__name__}}


def test_an_alarm_during_a_long_update_is_kept_and_replayed_once(world, monkeypatch, capsys):
    """The rollback Lambda fails while the endpoint stays Updating; the event lands in the
    queue (sent as the function's role); the replay delivers it again once the endpoint is
    InService, and the rollback happens exactly once."""
    from moto.sagemaker.models import sagemaker_backends

    sc = Scenario(world, monkeypatch, capsys)
    lifecycle_without_rollback(sc)
    endpoint = sagemaker_backends[ACCOUNT]["us-east-1"].endpoints[sc.endpoint]
    endpoint.endpoint_status = "Updating"
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    alarm = alarm_event(f"{sc.endpoint}-feature-drift")
    from mlops_kit.endpoints import EndpointBusyError

    with pytest.raises(EndpointBusyError) as failure:
        sc.run("rollback_controller", alarm)
    fn = sc.stage.functions["rollback_controller"]
    url, _ = failed_events_queue(sc.stage)
    function_arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{fn.function_name}"
    record = destination_record(function_arn, alarm, failure.value)
    with as_function(sc.stage, "rollback_controller", sc.admin, world["recorder"], monkeypatch):
        import boto3

        boto3.client("sqs").send_message(QueueUrl=url, MessageBody=json.dumps(record))
    endpoint.endpoint_status = "InService"

    replayed = replay_with_lambda_running_the_handler(sc, url)
    assert [r["action"] for r in replayed] == ["rolled_back"]
    assert replay_with_lambda_running_the_handler(sc, url) == []  # the queue is empty now
    # and delivering the same event yet again changes nothing (idempotent)
    assert sc.run("rollback_controller", alarm)["action"] == "rolled_back"
    rollbacks = [d for d in sc.registry().deployments(sc.endpoint) if d.kind == "rollback"]
    assert len(rollbacks) == 1


def lifecycle_without_rollback(sc: Scenario) -> None:
    sc.register(2)
    for version in (1, 2):
        assert sc.run("deployment_controller", sc.approve(version))["action"] == "deployed"
    from mlops_kit.monitoring.probe import baseline_rows
    from .scenario import baseline_documents

    baseline, _, _ = baseline_documents()
    schema = baseline["schema"]
    sc.endpoint_answers(baseline_rows(baseline["features"], schema["numeric"]
                                      + schema["categorical"]))
    assert sc.probe_run(now_minute())["status"] == "probed"


def replay_with_lambda_running_the_handler(sc: Scenario, url: str) -> list:
    """The runbook's `mlops events replay`, with Lambda's async Invoke answered by running the
    named function's handler as its role (moto runs no Lambda code without Docker)."""
    from mlops_kit.aws.operations import FailedEventQueue

    outcomes = []
    functions = {fn.function_name: name for name, fn in sc.stage.functions.items()}

    class LambdaThatRuns:
        def invoke(self, FunctionName, InvocationType, Payload):  # noqa: N803 (boto3 names)
            assert InvocationType == "Event"
            name = functions[FunctionName.split(":")[6]]
            outcomes.append(sc.run(name, json.loads(Payload)))
            return {"StatusCode": 202}

    report = FailedEventQueue(url, sqs_client=sc.admin("sqs"), lambda_client=LambdaThatRuns(),
                              wait_seconds=0).replay()
    assert report.failed == [], report.to_dict()
    return outcomes
