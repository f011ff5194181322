"""A fleet environment's control Lambdas read the registry account through its role (issue
[H]): MLOPS_REGISTRY_ROLE_ARN names the role, MLOPS_REGISTRY_LEDGER_TABLE the registry
account's ledger of versions and promotions; the environment's own LEDGER_TABLE_NAME keeps
only its deployments and rollback claims.

In moto, as in AWS, a client's account is that of its credentials: the registry account's
(111111111111) come from AssumeRole. The single-account case (neither variable) is covered by
test_control_lambdas.py, whose handlers run exactly as before.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.exceptions import ClientError

from mlops_kit.aws.assumed_role import AssumedRoleClients
from mlops_kit.aws.lambda_runtime import Clients
from mlops_kit.aws.ledger import create_table_request
from mlops_kit.deploy.events import LifecycleStage, model_package_event
from mlops_kit.homes import aws as aws_home
from mlops_kit.registry.sagemaker import SageMakerRegistry

from builders import load_handler, registration

from .conftest import IMAGE_URI, LEDGER, REGION
from .test_control_lambdas import ENDPOINT, GROUP, IDEMPOTENCY, Context

REGISTRY_ACCOUNT = "111111111111"
ENVIRONMENT_ACCOUNT = "444444444444"
REGISTRY_ROLE = f"arn:aws:iam::{REGISTRY_ACCOUNT}:role/mlops-registry-read"
REGISTRY_LEDGER = "mlops-registry-ledger"
SERVING_ROLE = f"arn:aws:iam::{ENVIRONMENT_ACCOUNT}:role/mlops-serving"


def clients_in(account: str) -> Clients:
    """The clients of a role in `account`, as the test's own setup reaches it."""
    root = boto3.client("sts", region_name=REGION)
    granted = root.assume_role(RoleArn=f"arn:aws:iam::{account}:role/mlops-kit",
                               RoleSessionName="registry-role-test")["Credentials"]
    return Clients(lambda service: boto3.client(
        service, region_name=REGION, aws_access_key_id=granted["AccessKeyId"],
        aws_secret_access_key=granted["SecretAccessKey"],
        aws_session_token=granted["SessionToken"]))


def assume_role_calls(sts_client) -> list[dict]:
    """Every AssumeRole the client makes, its parameters as sent."""
    calls: list[dict] = []
    sts_client.meta.events.register("provide-client-params.sts.AssumeRole",
                                    lambda params, **_: calls.append(dict(params)))
    return calls


@pytest.fixture()
def accounts(aws):
    """The registry account (the package group, its ledger) and one environment's account (its
    ledger and idempotency table). The registry account also has a table of the environment
    ledger's name, so a deployment recorded in the wrong account would land, and show."""
    registry_account, environment = clients_in(REGISTRY_ACCOUNT), clients_in(ENVIRONMENT_ACCOUNT)
    for table in (REGISTRY_LEDGER, LEDGER):
        registry_account("dynamodb").create_table(**create_table_request(table))
    environment("dynamodb").create_table(**create_table_request(LEDGER))
    environment("dynamodb").create_table(
        TableName=IDEMPOTENCY, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
    return registry_account, environment


@pytest.fixture()
def load(monkeypatch, accounts):
    """A control Lambda of the environment, its clients (the function's own role) those of the
    environment's account."""
    _, environment = accounts
    for name, value in {
            "POWERTOOLS_TRACE_DISABLED": "true", "ENDPOINT_NAME": ENDPOINT,
            "MLOPS_MODEL_GROUP": GROUP, "LEDGER_TABLE_NAME": LEDGER,
            "IDEMPOTENCY_TABLE_NAME": IDEMPOTENCY, "SAGEMAKER_EXECUTION_ROLE_ARN": SERVING_ROLE,
            "DATA_CAPTURE_S3_URI": "s3://kit-capture/capture", "MLOPS_ENVIRONMENT": "prod",
            "ENDPOINT_INSTANCE_TYPE": "ml.m5.large", "DATA_CAPTURE_SAMPLING_PERCENT": "100",
            "CHAMPION_INSTANCE_COUNT": "1", "FALLBACK_INSTANCE_COUNT": "1",
            "WARM_FALLBACKS": "2"}.items():
        monkeypatch.setenv(name, value)

    def load_module(function: str, **registry_variables: str):
        for name, value in registry_variables.items():
            monkeypatch.setenv(name, value)
        module = load_handler(function, monkeypatch)
        module.persistence.client = environment("dynamodb")
        for service in ("sagemaker", "dynamodb", "cloudwatch", "sns", "sts"):
            module.clients.inject(service, environment(service))
        return module
    return load_module


def promoted_to_prod(registry: SageMakerRegistry) -> dict:
    """v1 registered, approved and promoted to prod in the registry account: the event
    EventBridge forwards to the environment's bus."""
    registry.register(registration(1, group=GROUP))
    registry.record_promotion(1, "prod", actor="carol", reason="v1 to prod", approve=True)
    return model_package_event(GROUP, 1, "Approved", updated_fields=("ModelLifeCycle",),
                               region=REGION, account=REGISTRY_ACCOUNT,
                               lifecycle=LifecycleStage("prod", "Approved", "v1 to prod"))


def test_the_deployment_lambda_reads_versions_through_the_registry_role(load, accounts):
    registry_account, environment = accounts
    versions = SageMakerRegistry(GROUP, ledger_table=REGISTRY_LEDGER, image_uri=IMAGE_URI,
                                 sagemaker_client=registry_account("sagemaker"),
                                 dynamodb_client=registry_account("dynamodb"))
    event = promoted_to_prod(versions)
    with pytest.raises(ClientError, match="does not exist"):  # the package is only there
        environment("sagemaker").describe_model_package_group(ModelPackageGroupName=GROUP)
    handler = load("deployment_controller", MLOPS_REGISTRY_ROLE_ARN=REGISTRY_ROLE,
                   MLOPS_REGISTRY_LEDGER_TABLE=REGISTRY_LEDGER)
    assumed = assume_role_calls(environment("sts"))

    assert handler.lambda_handler(event, Context())["action"] == "deployed"

    assert assumed == [{"RoleArn": REGISTRY_ROLE,
                        "RoleSessionName": "mlops-kit-deployment-controller"}]
    served = environment("sagemaker").describe_endpoint(EndpointName=ENDPOINT)
    assert [v["VariantName"] for v in served["ProductionVariants"]] == ["v1"]
    with pytest.raises(ClientError):
        registry_account("sagemaker").describe_endpoint(EndpointName=ENDPOINT)
    ledger_of = lambda clients, table: SageMakerRegistry(  # noqa: E731
        GROUP, ledger_table=table, dynamodb_client=clients("dynamodb"))
    assert [(d.version, d.endpoint_name) for d in
            ledger_of(environment, LEDGER).deployments()] == [(1, ENDPOINT)]
    assert ledger_of(registry_account, REGISTRY_LEDGER).deployments() == []
    assert registry_account("dynamodb").scan(TableName=LEDGER)["Items"] == []
    # Another controller of the container (a fleet's next model) shares the role session.
    rebuilt = aws_home.deployment_controller(handler.runtime.settings, handler.clients)
    assert rebuilt.registry.get(1).status == "Approved"
    assert len(assumed) == 1


def test_a_versions_table_of_the_same_account_needs_no_role(load, accounts):
    _, environment = accounts
    environment("dynamodb").create_table(**create_table_request(REGISTRY_LEDGER))
    versions = SageMakerRegistry(GROUP, ledger_table=REGISTRY_LEDGER, image_uri=IMAGE_URI,
                                 sagemaker_client=environment("sagemaker"),
                                 dynamodb_client=environment("dynamodb"))
    event = promoted_to_prod(versions)
    handler = load("deployment_controller", MLOPS_REGISTRY_LEDGER_TABLE=REGISTRY_LEDGER)
    assumed = assume_role_calls(environment("sts"))

    assert handler.lambda_handler(event, Context())["action"] == "deployed"

    assert assumed == []
    assert [d.version for d in versions.deployments()] == []
    own = SageMakerRegistry(GROUP, ledger_table=LEDGER, dynamodb_client=environment("dynamodb"))
    assert [d.version for d in own.deployments()] == [1]


def test_without_registry_variables_one_table_holds_everything(load, accounts):
    _, environment = accounts
    handler = load("deployment_controller")
    registry = handler.controller(handler.runtime.routes.only).registry
    assert registry.deployment_ledger is registry.ledger
    assert registry.ledger.table_name == LEDGER


def test_the_role_session_is_assumed_again_before_it_expires(aws):
    sts = boto3.client("sts", region_name=REGION)
    assumed = assume_role_calls(sts)
    expiries = []
    sts.meta.events.register("after-call.sts.AssumeRole", lambda parsed, **_: expiries.append(
        parsed["Credentials"]["Expiration"]))
    clock = {"now": datetime.now(timezone.utc)}
    factory = AssumedRoleClients(REGISTRY_ROLE, "mlops-kit-test", sts_client=sts,
                                 now=lambda: clock["now"])
    assert assumed == []  # nothing assumed until a client signs a request

    identity = factory("sts")
    assert identity.get_caller_identity()["Account"] == REGISTRY_ACCOUNT
    first_key = factory.credentials.get_frozen_credentials().access_key
    assert len(assumed) == 1 and expiries
    clock["now"] = expiries[-1] - timedelta(minutes=20)  # still well before the expiry
    identity.get_caller_identity()
    assert len(assumed) == 1

    clock["now"] = expiries[-1] - timedelta(minutes=5)  # inside botocore's refresh window
    assert factory("sts") is identity  # one client per service, whatever its credentials
    assert identity.get_caller_identity()["Account"] == REGISTRY_ACCOUNT
    assert len(assumed) == 2
    assert factory.credentials.get_frozen_credentials().access_key != first_key
