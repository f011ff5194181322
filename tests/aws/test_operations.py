"""Operator actions (mlops_kit.aws.operations): replaying the controllers' failed events from
the on-failure queue (moto SQS; Lambda behind botocore's Stubber, since moto's Invoke needs
Docker) and tearing down what the deployment controller created (moto SageMaker)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from typer.testing import CliRunner

from mlops_kit.aws import operations
from mlops_kit.aws.models import ensure_model, model_name
from mlops_kit.aws.operations import (DISCARD_IAM_ACTIONS, LIST_IAM_ACTIONS, REPLAY_IAM_ACTIONS,
                                      TEARDOWN_IAM_ACTIONS, FailedEventQueue,
                                      OperationInputError, StageTeardown, TeardownItem,
                                      TeardownReport, is_kit_config_name, is_kit_model_name)
from mlops_kit.cli.app import app
from mlops_kit.core.rotation import Lineup, promotion_weights
from mlops_kit.endpoints import ModelSource
from mlops_kit.deploy.sagemaker_endpoint import SageMakerEndpoints, endpoint_config_name

from .conftest import ACCOUNT, IMAGE_URI, REGION, ROLE_ARN

QUEUE = "MlopsKit-dev-Control-FailedEvents"
DEPLOY_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:MlopsKit-dev-DeploymentController:$LATEST"
ROLLBACK_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:MlopsKit-dev-RollbackController"
NOW = datetime(2026, 11, 27, 12, 30, tzinfo=timezone.utc)

APPROVAL = {
    "version": "0", "id": "5b7e-approval", "detail-type": "SageMaker Model Package State Change",
    "source": "aws.sagemaker", "account": ACCOUNT, "time": "2026-11-27T10:00:00Z",
    "region": REGION, "resources": [],
    "detail": {"ModelPackageGroupName": "fraud-detector-dev", "ModelPackageVersion": 7,
               "ModelApprovalStatus": "Approved",
               "UpdatedModelPackageFields": ["ModelApprovalStatus"]}}
ALARM = {
    "version": "0", "id": "c4c1-alarm", "detail-type": "CloudWatch Alarm State Change",
    "source": "aws.cloudwatch", "account": ACCOUNT, "time": "2026-11-27T12:00:00Z",
    "region": REGION, "resources": [],
    "detail": {"alarmName": "fraud-scorer-dev-feature-drift",
               "state": {"value": "ALARM", "timestamp": "2026-11-27T12:00:00.000+0000"},
               "previousState": {"value": "OK"}}}


def destination_record(event, function_arn=DEPLOY_ARN, *, condition="RetriesExhausted",
                       invoke_count=3) -> str:
    """A Lambda on-failure invocation record, as Lambda sends it to an SQS destination."""
    return json.dumps({
        "version": "1.0", "timestamp": "2026-11-27T12:05:00.000Z",
        "requestContext": {"requestId": "e4b46cbf-b738-4a5b-8880-a18cdf61200e",
                           "functionArn": function_arn, "condition": condition,
                           "approximateInvokeCount": invoke_count},
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST",
                            "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "endpoint fraud-scorer-dev is busy (Updating)",
                            "errorType": "EndpointBusyError"}})


def sent_payload(event) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


@pytest.fixture()
def sqs(aws, make_client):
    return make_client("sqs")


@pytest.fixture()
def queue_url(sqs):
    return sqs.create_queue(QueueName=QUEUE)["QueueUrl"]


@pytest.fixture()
def stubbed_lambda(make_client):
    """Lambda behind the Stubber: every invoke must be expected (exact FunctionName,
    InvocationType, Payload), and every expected invoke must happen."""
    client = make_client("lambda", slot="stub")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def send(sqs, url, *bodies) -> list[str]:
    return [sqs.send_message(QueueUrl=url, MessageBody=body)["MessageId"] for body in bodies]


def queue_state(sqs, url) -> tuple[int, int]:
    """(visible, in flight): what the queue's alarm and the next run see."""
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return (int(attrs["ApproximateNumberOfMessages"]),
            int(attrs["ApproximateNumberOfMessagesNotVisible"]))


def visible_bodies(sqs, url) -> list[str]:
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                   VisibilityTimeout=0).get("Messages", [])
    return sorted(m["Body"] for m in messages)


def failed_queue(url, sqs, lambda_client=None, **kwargs) -> FailedEventQueue:
    return FailedEventQueue(url, sqs_client=sqs, lambda_client=lambda_client, wait_seconds=0,
                            clock=lambda: NOW, **kwargs)


def expect_invoke(stubber, function_arn, event, status=202):
    stubber.add_response("invoke", {"StatusCode": status},
                         {"FunctionName": function_arn, "InvocationType": "Event",
                          "Payload": sent_payload(event)})


# == replay ======================================================================================

def test_replay_invokes_each_recorded_function_with_its_original_event_and_empties_the_queue(
        sqs, queue_url, stubbed_lambda):
    client, stubber = stubbed_lambda
    send(sqs, queue_url, destination_record(APPROVAL, DEPLOY_ARN),
         destination_record(ALARM, ROLLBACK_ARN, condition="EventAgeExceeded", invoke_count=1))
    expect_invoke(stubber, DEPLOY_ARN, APPROVAL)
    expect_invoke(stubber, ROLLBACK_ARN, ALARM)

    report = failed_queue(queue_url, sqs, client).replay()

    assert report.ok and [e.status for e in report.events] == ["replayed", "replayed"]
    assert queue_state(sqs, queue_url) == (0, 0)
    assert [e.function for e in report.events] == ["MlopsKit-dev-DeploymentController",
                                                   "MlopsKit-dev-RollbackController"]


def test_a_failed_invoke_leaves_its_message_visible_in_the_queue(sqs, queue_url, stubbed_lambda):
    client, stubber = stubbed_lambda
    send(sqs, queue_url, destination_record(APPROVAL), destination_record(ALARM, ROLLBACK_ARN))
    stubber.add_client_error("invoke", "ResourceNotFoundException", "Function not found",
                             404, expected_params={"FunctionName": DEPLOY_ARN,
                                                   "InvocationType": "Event",
                                                   "Payload": sent_payload(APPROVAL)})
    expect_invoke(stubber, ROLLBACK_ARN, ALARM)

    report = failed_queue(queue_url, sqs, client).replay()

    assert not report.ok
    assert [e.status for e in report.events] == ["invoke_failed", "replayed"]
    assert "ResourceNotFoundException" in report.events[0].reason
    # Left in the queue and visible again at once (not after the 300 s visibility timeout).
    assert queue_state(sqs, queue_url) == (1, 0)
    assert visible_bodies(sqs, queue_url) == [destination_record(APPROVAL)]


def test_an_invoke_lambda_did_not_queue_is_not_deleted(sqs, queue_url, stubbed_lambda):
    client, stubber = stubbed_lambda
    send(sqs, queue_url, destination_record(APPROVAL))
    expect_invoke(stubber, DEPLOY_ARN, APPROVAL, status=200)

    report = failed_queue(queue_url, sqs, client).replay()

    assert report.events[0].status == "invoke_failed" and "not 202" in report.events[0].reason
    assert queue_state(sqs, queue_url) == (1, 0)


@pytest.mark.parametrize("body,why", [
    ("not json at all", "not JSON"),
    ('["a", "list"]', "not a JSON object"),
    ('{"hello": "world"}', "no requestContext"),
    (json.dumps(APPROVAL), "bare EventBridge event"),
    (json.dumps({"requestContext": {"functionArn": "arn:aws:sns:us-east-1:1:topic"},
                 "requestPayload": {}}), "not a Lambda function ARN"),
    (json.dumps({"requestContext": {"functionArn": DEPLOY_ARN}}), "no requestPayload"),
], ids=["not-json", "not-object", "no-context", "eventbridge-dlq", "bad-arn", "no-payload"])
def test_a_malformed_message_is_reported_and_left_in_the_queue(sqs, queue_url, stubbed_lambda,
                                                               body, why):
    client, _ = stubbed_lambda  # no invoke expected: the Stubber fails any
    send(sqs, queue_url, body)

    report = failed_queue(queue_url, sqs, client).replay()

    assert not report.ok and report.events[0].status == "malformed"
    assert why in report.events[0].reason
    assert visible_bodies(sqs, queue_url) == [body]


def test_a_record_naming_a_function_of_another_account_is_refused(sqs, queue_url,
                                                                  stubbed_lambda):
    client, _ = stubbed_lambda
    foreign = "arn:aws:lambda:us-east-1:999999999999:function:someone-elses"
    send(sqs, queue_url, destination_record(APPROVAL, foreign))

    report = failed_queue(queue_url, sqs, client).replay()

    assert report.events[0].status == "refused" and "999999999999" in report.events[0].reason
    assert queue_state(sqs, queue_url) == (1, 0)


def test_list_shows_what_would_be_replayed_and_changes_nothing(sqs, queue_url, stubbed_lambda):
    client, _ = stubbed_lambda
    send(sqs, queue_url, destination_record(APPROVAL),
         destination_record(ALARM, ROLLBACK_ARN, condition="EventAgeExceeded", invoke_count=1))

    report = failed_queue(queue_url, sqs, client).list()

    assert report.ok and [e.status for e in report.events] == ["would_replay"] * 2
    approval, alarm = (e.to_dict() for e in report.events)
    assert approval["function"] == "MlopsKit-dev-DeploymentController"
    assert approval["detail_type"] == "SageMaker Model Package State Change"
    assert approval["subject"] == "model package fraud-detector-dev v7: Approved"
    assert (approval["condition"], approval["invoke_count"]) == ("RetriesExhausted", 3)
    assert approval["age_seconds"] == 9000.0  # since the approval at 10:00, now 12:30
    assert approval["error_message"] == "endpoint fraud-scorer-dev is busy (Updating)"
    assert alarm["subject"] == "alarm fraud-scorer-dev-feature-drift: OK → ALARM"
    assert (alarm["condition"], alarm["invoke_count"], alarm["age_seconds"]) == (
        "EventAgeExceeded", 1, 1800.0)
    assert queue_state(sqs, queue_url) == (2, 0)


def test_an_alarm_action_payload_is_summarized_like_the_eventbridge_event():
    action = {"source": "aws.cloudwatch", "alarmArn": "arn:aws:cloudwatch:...",
              "time": "2026-11-27T12:00:00.000+0000",
              "alarmData": {"alarmName": "fraud-scorer-dev-champion-5xx",
                            "state": {"value": "ALARM"}, "previousState": {"value": "OK"}}}
    summary = operations.summarize_event(action)
    assert (summary.detail_type, summary.subject) == (
        "CloudWatch alarm action", "alarm fraud-scorer-dev-champion-5xx: OK → ALARM")
    assert summary.event_time == datetime(2026, 11, 27, 12, tzinfo=timezone.utc)
    assert operations.summarize_event(["not", "an", "event"]).subject == "not a JSON object"


def test_max_handles_at_most_n_messages(sqs, queue_url, stubbed_lambda):
    client, stubber = stubbed_lambda
    send(sqs, queue_url, *(destination_record({**APPROVAL, "id": str(i)}) for i in range(3)))
    for i in range(2):
        expect_invoke(stubber, DEPLOY_ARN, {**APPROVAL, "id": str(i)})

    report = failed_queue(queue_url, sqs, client).replay(max_messages=2)

    assert report.ok and report.count("replayed") == 2
    assert visible_bodies(sqs, queue_url) == [destination_record({**APPROVAL, "id": "2"})]


def test_more_than_one_batch_is_replayed(sqs, queue_url, stubbed_lambda):
    client, stubber = stubbed_lambda
    events = [{**ALARM, "id": f"alarm-{i:02d}"} for i in range(12)]
    ids = send(sqs, queue_url, *(destination_record(e, ROLLBACK_ARN) for e in events))
    for event in events:
        expect_invoke(stubber, ROLLBACK_ARN, event)

    report = failed_queue(queue_url, sqs, client).replay()

    assert report.ok and sorted(e.message_id for e in report.events) == sorted(ids)
    assert queue_state(sqs, queue_url) == (0, 0)


def test_replay_of_selected_messages_and_discard_of_a_stale_one(sqs, queue_url, stubbed_lambda):
    client, stubber = stubbed_lambda
    approval_id, alarm_id = send(sqs, queue_url, destination_record(APPROVAL),
                                 destination_record(ALARM, ROLLBACK_ARN))
    expect_invoke(stubber, DEPLOY_ARN, APPROVAL)

    replayed = failed_queue(queue_url, sqs, client).replay(message_ids=[approval_id])
    assert replayed.ok
    assert {e.message_id: e.status for e in replayed.events}.get(approval_id) == "replayed"
    assert visible_bodies(sqs, queue_url) == [destination_record(ALARM, ROLLBACK_ARN)]

    discarded = failed_queue(queue_url, sqs, client).discard([alarm_id, "no-such-message"])
    assert [(e.message_id, e.status) for e in discarded.events] == [(alarm_id, "discarded")]
    assert discarded.missing_message_ids == ["no-such-message"] and not discarded.ok
    assert queue_state(sqs, queue_url) == (0, 0)


class FailingOn:
    """A client whose `operation` fails with `code`; every other call goes to `client`."""

    def __init__(self, client, operation, code="InternalError", message="try again",
                 when=lambda kwargs: True):
        self.client, self.operation, self.code, self.message = client, operation, code, message
        self.when = when

    def __getattr__(self, name):
        call = getattr(self.client, name)
        if name != self.operation:
            return call

        def failing(**kwargs):
            if self.when(kwargs):
                raise ClientError({"Error": {"Code": self.code, "Message": self.message}}, name)
            return call(**kwargs)
        return failing


def test_an_invoked_event_whose_delete_fails_is_reported_and_stays(sqs, queue_url,
                                                                   stubbed_lambda):
    client, stubber = stubbed_lambda
    send(sqs, queue_url, destination_record(APPROVAL))
    expect_invoke(stubber, DEPLOY_ARN, APPROVAL)

    report = failed_queue(queue_url, FailingOn(sqs, "delete_message"), client).replay()

    assert not report.ok and report.events[0].status == "not_deleted"
    assert "idempotency" in report.events[0].reason
    assert queue_state(sqs, queue_url) == (1, 0)


def test_bad_queue_urls_and_unreachable_queues_are_bad_input(sqs, queue_url):
    for url in ("", "sqs://queue", "https://example.com/123456789012/q",
                f"https://sqs.{REGION}.amazonaws.com/12345/q"):
        with pytest.raises(OperationInputError, match="not an SQS queue URL"):
            FailedEventQueue(url)
    missing = queue_url.replace(QUEUE, "no-such-queue")
    with pytest.raises(OperationInputError, match="cannot be reached.*NonExistentQueue"):
        failed_queue(missing, sqs).list()


@pytest.fixture()
def cli_clients(monkeypatch, make_client, stubbed_lambda):
    """The CLI makes its own clients: moto SQS and SageMaker, the stubbed Lambda."""
    client, _ = stubbed_lambda
    clients = {"sqs": make_client("sqs"), "lambda": client,
               "sagemaker": make_client("sagemaker")}
    monkeypatch.setattr(operations, "client_factory", lambda service, region: clients[service])
    return clients


def test_cli_events_list_replay_and_exit_codes(sqs, queue_url, stubbed_lambda, cli_clients):
    _, stubber = stubbed_lambda
    runner = CliRunner()
    assert runner.invoke(app, ["events", "list", "--queue-url", queue_url]).exit_code == 0

    send(sqs, queue_url, destination_record(APPROVAL))
    listed = runner.invoke(app, ["events", "replay", "--queue-url", queue_url, "--dry-run",
                                 "--json"])
    assert listed.exit_code == 0
    assert json.loads(listed.stdout)["counts"] == {"would_replay": 1}
    assert queue_state(sqs, queue_url) == (1, 0)

    expect_invoke(stubber, DEPLOY_ARN, APPROVAL)
    replayed = runner.invoke(app, ["events", "replay", "--queue-url", queue_url])
    assert replayed.exit_code == 0 and "replayed" in replayed.stdout
    assert queue_state(sqs, queue_url) == (0, 0)

    send(sqs, queue_url, "garbage")
    assert runner.invoke(app, ["events", "replay", "--queue-url", queue_url]).exit_code == 1
    bad = runner.invoke(app, ["events", "replay", "--queue-url", "not-a-url"])
    assert bad.exit_code == 2 and "not an SQS queue URL" in bad.stderr
    gone = runner.invoke(app, ["events", "list", "--queue-url",
                               queue_url.replace(QUEUE, "gone")])
    assert gone.exit_code == 2 and "cannot be reached" in gone.stderr


# == teardown ====================================================================================

ENDPOINT = "fraud-scorer-dev"
OTHER_ENDPOINT = "fraud-scorer-staging"
GROUP = "fraud-detector"


def package_arn(version: int) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{GROUP}/{version}"


def source(version: int) -> ModelSource:
    return ModelSource(version, f"s3://a/v{version}.tar.gz", package_arn(version))


@pytest.fixture()
def stage(sagemaker):
    """What the controllers leave in an account: our endpoint serving v2 (v1 warm), an older
    config of ours (v1 alone), a kit model of the group no config uses (v4, a deploy that
    failed after CreateModel); another endpoint of the same group serving v3 (v2 warm, so the
    v2 model is shared); another team's model and configs, one of them named like ours."""
    sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
    for v in range(1, 5):
        sagemaker.create_model_package(
            ModelPackageGroupName=GROUP, ModelApprovalStatus="Approved",
            InferenceSpecification={"Containers": [{"Image": IMAGE_URI,
                                                    "ModelDataUrl": f"s3://a/v{v}.tar.gz"}],
                                    "SupportedContentTypes": ["text/csv"],
                                    "SupportedResponseMIMETypes": ["text/csv"]})
    adapter = SageMakerEndpoints(sagemaker, execution_role_arn=ROLE_ARN)
    in_use = adapter.deploy(ENDPOINT, promotion_weights(Lineup((2, 1))),
                            {1: source(1), 2: source(2)})
    old_request = adapter.endpoint_config_request(promotion_weights(Lineup((1,))),
                                                  {1: model_name(source(1))})
    old = endpoint_config_name(ENDPOINT, old_request)
    sagemaker.create_endpoint_config(EndpointConfigName=old, **old_request)
    ensure_model(lambda op, **kw: getattr(sagemaker, op)(**kw), source(4),
                 execution_role_arn=ROLE_ARN)
    staging = adapter.deploy(OTHER_ENDPOINT, promotion_weights(Lineup((3, 2))),
                             {2: source(2), 3: source(3)})
    sagemaker.create_model(ModelName="other-team-model", ExecutionRoleArn=ROLE_ARN,
                           Containers=[{"Image": IMAGE_URI}])
    team_variant = [{"VariantName": "AllTraffic", "ModelName": "other-team-model",
                     "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}]
    lookalike = f"{ENDPOINT}-0123456789ab"  # the kit's name shape, not the kit's variants
    for name in (lookalike, f"{ENDPOINT}-shadow"):
        sagemaker.create_endpoint_config(EndpointConfigName=name,
                                         ProductionVariants=team_variant)
    return {"in_use": in_use, "old": old, "staging": staging, "lookalike": lookalike,
            "models": {v: model_name(source(v)) for v in range(1, 5)}}


def names(sagemaker) -> dict[str, set[str]]:
    return {"endpoints": {e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]},
            "configs": {c["EndpointConfigName"] for c in
                        sagemaker.list_endpoint_configs(MaxResults=100)["EndpointConfigs"]},
            "models": {m["ModelName"] for m in sagemaker.list_models(MaxResults=100)["Models"]}}


def planned(report: TeardownReport) -> dict[tuple[str, str], bool]:
    return {(i.kind, i.name): i.delete for i in report.items}


def test_the_plan_names_only_what_the_kit_created_for_this_endpoint(sagemaker, stage):
    before = names(sagemaker)
    report = StageTeardown(ENDPOINT, GROUP, sagemaker_client=sagemaker).plan()

    models = stage["models"]
    assert planned(report) == {
        ("endpoint", ENDPOINT): True,
        ("endpoint-config", stage["in_use"]): True,
        ("endpoint-config", stage["old"]): True,
        ("endpoint-config", stage["lookalike"]): False,
        ("model", models[1]): True,    # only our configs use it
        ("model", models[2]): False,   # the staging endpoint's config uses it too
        ("model", models[4]): True,    # the kit's, for this group, used by no config
    }
    reasons = {i.name: i.reason for i in report.items}
    assert reasons[stage["in_use"]] == "used by the endpoint"
    assert stage["staging"] in reasons[models[2]]
    assert "not one of the kit's" in reasons[stage["lookalike"]]
    assert names(sagemaker) == before  # listing deletes nothing


def test_teardown_deletes_endpoint_configs_and_models_and_spares_everyone_else(sagemaker,
                                                                               stage):
    teardown = StageTeardown(ENDPOINT, GROUP, sagemaker_client=sagemaker)
    report = teardown.apply(teardown.plan())

    assert report.ok
    assert {i.status for i in report.to_delete} == {"deleted"}
    models = stage["models"]
    assert names(sagemaker) == {
        "endpoints": {OTHER_ENDPOINT},
        "configs": {stage["staging"], stage["lookalike"], f"{ENDPOINT}-shadow"},
        "models": {models[2], models[3], "other-team-model"}}


def test_teardown_is_idempotent(sagemaker, stage):
    teardown = StageTeardown(ENDPOINT, GROUP, sagemaker_client=sagemaker)
    first_plan = teardown.plan()
    teardown.apply(first_plan)
    after = names(sagemaker)

    again = teardown.plan()
    assert not again.to_delete  # nothing of ours is left to find
    assert teardown.apply(again).ok
    stale = teardown.apply(first_plan)  # a stale plan: everything is already gone
    assert stale.ok and {i.status for i in stale.to_delete} == {"already_gone"}
    assert names(sagemaker) == after


def test_a_config_that_fails_to_delete_keeps_its_models(sagemaker, stage):
    in_use = stage["in_use"]
    failing = FailingOn(sagemaker, "delete_endpoint_config", "ThrottlingException",
                        when=lambda kwargs: kwargs["EndpointConfigName"] == in_use)
    teardown = StageTeardown(ENDPOINT, GROUP, sagemaker_client=failing, sleep=lambda s: None)
    report = teardown.apply(teardown.plan())

    assert not report.ok
    status = {i.name: (i.status, i.error) for i in report.items if i.delete}
    assert status[in_use][0] == "failed" and "ThrottlingException" in status[in_use][1]
    assert status[stage["models"][1]] == ("not_attempted",
                                          f"endpoint config {in_use} was not deleted")
    assert status[stage["old"]][0] == "deleted" and status[stage["models"][4]][0] == "deleted"
    left = names(sagemaker)
    assert in_use in left["configs"] and stage["models"][1] in left["models"]
    # The next run finds the rest through the config that is still there.
    assert StageTeardown(ENDPOINT, GROUP, sagemaker_client=sagemaker).apply(
        StageTeardown(ENDPOINT, GROUP, sagemaker_client=sagemaker).plan()).ok
    assert stage["models"][1] not in names(sagemaker)["models"]


def test_an_endpoint_the_kit_did_not_deploy_is_refused(sagemaker):
    sagemaker.create_model(ModelName="team-model", ExecutionRoleArn=ROLE_ARN,
                           Containers=[{"Image": IMAGE_URI}])
    sagemaker.create_endpoint_config(
        EndpointConfigName="team-config", ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": "team-model",
            "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="team-config")
    before = names(sagemaker)

    with pytest.raises(OperationInputError, match="'AllTraffic'.*not an endpoint the kit"):
        StageTeardown(ENDPOINT, GROUP, sagemaker_client=sagemaker).plan()
    assert names(sagemaker) == before


def missing_endpoint_error(stubber, name):
    stubber.add_client_error("describe_endpoint", "ValidationException",
                             f'Could not find endpoint "arn:aws:sagemaker:{REGION}:{ACCOUNT}:'
                             f'endpoint/{name}".', 400, expected_params={"EndpointName": name})


def endpoint_only_plan(state="InService") -> TeardownReport:
    report = TeardownReport(ENDPOINT, GROUP, applied=False)
    report.items += [TeardownItem("endpoint", ENDPOINT, True, "InService", state=state),
                     TeardownItem("endpoint-config", f"{ENDPOINT}-0123456789ab", True, "used")]
    return report


def deleting(stubber, times):
    for _ in range(times):
        stubber.add_response("describe_endpoint", {
            "EndpointName": ENDPOINT, "EndpointStatus": "Deleting",
            "EndpointArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{ENDPOINT}",
            "CreationTime": NOW, "LastModifiedTime": NOW}, {"EndpointName": ENDPOINT})


def test_configs_are_deleted_only_once_the_endpoint_is_gone(stubbed_sagemaker, sleeps):
    client, stubber = stubbed_sagemaker
    stubber.add_response("delete_endpoint", {}, {"EndpointName": ENDPOINT})
    deleting(stubber, 2)
    missing_endpoint_error(stubber, ENDPOINT)
    stubber.add_response("delete_endpoint_config", {},
                         {"EndpointConfigName": f"{ENDPOINT}-0123456789ab"})

    report = StageTeardown(ENDPOINT, GROUP, sagemaker_client=client, sleep=sleeps).apply(
        endpoint_only_plan())

    assert report.ok and sleeps == [15.0, 15.0]


def test_an_endpoint_still_deleting_at_the_deadline_stops_the_teardown(stubbed_sagemaker,
                                                                       sleeps):
    client, stubber = stubbed_sagemaker
    deleting(stubber, 2)  # already Deleting when planned: no second DeleteEndpoint
    clock = iter([0.0, 0.0, 2000.0])

    report = StageTeardown(ENDPOINT, GROUP, sagemaker_client=client, sleep=sleeps,
                           monotonic=lambda: next(clock)).apply(endpoint_only_plan("Deleting"))

    assert not report.ok
    endpoint, config = report.items
    assert endpoint.status == "failed" and "still Deleting" in endpoint.error
    assert (config.status, config.error) == ("not_attempted",
                                             f"endpoint {ENDPOINT} was not deleted")


def test_cli_teardown_lists_without_yes_and_deletes_with_it(sagemaker, stage, cli_clients):
    runner = CliRunner()
    before = names(sagemaker)
    listed = runner.invoke(app, ["teardown", "--endpoint", ENDPOINT, "--model-group", GROUP])
    assert listed.exit_code == 0
    assert f"would delete: endpoint {ENDPOINT}" in listed.stdout
    assert f"keep: endpoint-config {stage['lookalike']}" in listed.stdout
    assert "run again with --yes" in listed.stdout
    assert names(sagemaker) == before

    done = runner.invoke(app, ["teardown", "--backend", "aws", "--endpoint", ENDPOINT,
                               "--model-group", GROUP, "--yes", "--json"])
    assert done.exit_code == 0
    document = json.loads(done.stdout)
    assert document["applied"] and document["ok"]
    assert ENDPOINT not in names(sagemaker)["endpoints"]

    again = runner.invoke(app, ["teardown", "--endpoint", ENDPOINT, "--model-group", GROUP,
                                "--yes"])
    assert again.exit_code == 0


def test_cli_teardown_bad_input_exits_2(aws, cli_clients):
    runner = CliRunner()
    bad_name = runner.invoke(app, ["teardown", "--endpoint", "no_underscores",
                                   "--model-group", GROUP])
    assert bad_name.exit_code == 2 and "--endpoint 'no_underscores'" in bad_name.stderr
    local = runner.invoke(app, ["teardown", "--backend", "local", "--endpoint", ENDPOINT,
                                "--model-group", GROUP])
    assert local.exit_code == 2 and "--backend aws" in local.stderr


def test_the_naming_rules_are_the_ones_the_controller_names_with():
    adapter = SageMakerEndpoints(execution_role_arn=ROLE_ARN)
    request = adapter.endpoint_config_request(promotion_weights(Lineup((3,))), {3: "m"})
    assert is_kit_config_name(endpoint_config_name(ENDPOINT, request), ENDPOINT)
    assert not is_kit_config_name(endpoint_config_name(f"{ENDPOINT}-2", request), ENDPOINT)
    assert not is_kit_config_name(f"{ENDPOINT}-shadow", ENDPOINT)

    # SageMaker lower-cases the group in package ARNs, which model names are made from.
    upper = ModelSource(3, "s3://a", f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/"
                                     f"fraud-detector/3")
    assert is_kit_model_name(model_name(upper), "Fraud-Detector", 3)
    assert is_kit_model_name(model_name(upper), "fraud-detector")
    assert not is_kit_model_name(model_name(upper), "fraud-detector", 2)
    eu = ModelSource(3, "s3://a", f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/"
                                  f"fraud-detector-eu/3")
    assert not is_kit_model_name(model_name(eu), "fraud-detector")
    # A group so long that the version is cut from the name still matches its own models.
    long_group = "g" * 60
    long = ModelSource(12, "s3://a", f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/"
                                     f"{long_group}/12")
    assert is_kit_model_name(model_name(long), long_group)
    assert not is_kit_model_name(model_name(long), "h" + "g" * 59)


# == IAM =========================================================================================

def test_declared_iam_actions_are_the_calls_this_module_makes():
    source_text = Path(operations.__file__).read_text()
    calls = set(re.findall(r'_(sqs|lambda|sagemaker)\(\s*"(\w+)"', source_text))
    # StageTeardown._delete(item, "<operation>", ...) calls SageMaker too.
    calls |= {("sagemaker", op) for op in re.findall(r'_delete\(item,\s*"(\w+)"', source_text)}
    iam = {"sqs": {"get_queue_attributes": "sqs:GetQueueAttributes",
                   "receive_message": "sqs:ReceiveMessage",
                   "delete_message": "sqs:DeleteMessage",
                   # Batch actions are authorised as their single action.
                   "change_message_visibility_batch": "sqs:ChangeMessageVisibility"},
           "lambda": {"invoke": "lambda:InvokeFunction"}}
    called = {iam[s][op] if s in iam else "sagemaker:" + "".join(
        part.title() for part in op.split("_")) for s, op in calls}
    assert called == set(REPLAY_IAM_ACTIONS) | set(TEARDOWN_IAM_ACTIONS)
    assert set(LIST_IAM_ACTIONS) < set(REPLAY_IAM_ACTIONS)
    assert set(DISCARD_IAM_ACTIONS) == set(REPLAY_IAM_ACTIONS) - {"lambda:InvokeFunction"}
