"""AWS adapter tests: moto in-process, botocore's Stubber where moto lacks an operation.

Fake credentials and region are set per test with monkeypatch, so nothing leaks into other
tests and nothing can reach a real account.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from mlops_kit.aws.ledger import create_table_request

from builders import Sleeps

REGION = "us-east-1"
ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/sagemaker-execution"
IMAGE_URI = f"683313688378.dkr.ecr.{REGION}.amazonaws.com/sagemaker-xgboost:3.0-5"
LEDGER = "mlops-ledger"


@pytest.fixture(autouse=True)
def fake_aws_env(monkeypatch):
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE",
                 "AWS_SHARED_CREDENTIALS_FILE", "AWS_LAMBDA_FUNCTION_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def make_client():
    """Clients are built once per session (building a SageMaker client costs ~0.3 s) with
    explicit fake credentials, so they need no environment; each test's `mock_aws` gives
    them fresh, empty state. `slot` keeps apart clients a Stubber wraps."""
    cache: dict[tuple[str, str], object] = {}

    def make(service: str, slot: str = "moto"):
        if (service, slot) not in cache:
            cache[(service, slot)] = boto3.client(
                service, region_name=REGION, aws_access_key_id="testing",
                aws_secret_access_key="testing")
        return cache[(service, slot)]
    return make


@pytest.fixture()
def aws():
    with mock_aws():
        yield


@pytest.fixture()
def sagemaker(aws, make_client):
    return make_client("sagemaker")


@pytest.fixture()
def dynamodb(aws, make_client):
    client = make_client("dynamodb")
    client.create_table(**create_table_request(LEDGER))
    return client


@pytest.fixture()
def sleeps():
    return Sleeps()


@pytest.fixture()
def stubbed_sagemaker(make_client):
    """A SageMaker client behind botocore's Stubber (for what moto lacks: UpdateEndpoint,
    Updating endpoints, throttling). Every stubbed response must be used."""
    client = make_client("sagemaker", slot="stub")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


class MotoExceptUpdateEndpoint:
    """moto for every call except UpdateEndpoint, which moto lacks: that goes to a Stubber."""

    def __init__(self, moto_client, stub_client):
        self.moto_client, self.stub_client = moto_client, stub_client

    def __getattr__(self, name):
        if name == "update_endpoint":
            return self.stub_client.update_endpoint
        return getattr(self.moto_client, name)
