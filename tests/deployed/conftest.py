"""The deployed-twin suite: both stages synthesized once per session; every test takes its
values (environments, policies, rules, alarms, schedules) from those templates."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import boto3
import builders
import pytest
from moto import mock_aws

from .twin import ACCOUNT, REGION, CallRecorder, deploy, enforce_iam, load_stage

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "fixtures" / "events"
STAGES = ("dev", "prod")


def _infra_tests():
    """tests/infra/conftest.py, loaded by path (the test folder `infra` and the app package
    `infra` share a name; it loads the app package as `mlops_infra`)."""
    spec = importlib.util.spec_from_file_location("_deployed_infra_tests",
                                                  ROOT / "tests" / "infra" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _infra_synth():
    return _infra_tests().synth_stage


def infra_module(name: str):
    """A module of the CDK app (`infra/<name>.py`), e.g. "constructs.bundling"."""
    import importlib

    _infra_tests().cdk_app_package()
    return importlib.import_module(f"mlops_infra.{name}")


@pytest.fixture(scope="session")
def templates(tmp_path_factory) -> dict[str, dict[str, dict]]:
    """stage -> stack name -> template, synthesized once per session."""
    synth_stage = _infra_synth()
    out = {}
    for stage in STAGES:
        app, _ = synth_stage(tmp_path_factory.mktemp(f"synth-{stage}"), stage)
        assembly = app.synth()
        out[stage] = {s.stack_name: s.template for s in assembly.stacks}
    return out


@pytest.fixture(scope="session", params=STAGES)
def stage(request, templates):
    return load_stage(request.param, templates[request.param])


@pytest.fixture()
def aws_env(monkeypatch):
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE",
                 "AWS_SHARED_CREDENTIALS_FILE", "AWS_LAMBDA_FUNCTION_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


class Admin:
    """The test's own clients: an IAM user with every permission, so setup still works while
    moto enforces IAM on the functions."""

    def __init__(self, access_key: str, secret: str):
        self.access_key, self.secret = access_key, secret
        self._made: dict[str, object] = {}

    def __call__(self, service: str):
        if service not in self._made:
            self._made[service] = boto3.client(
                service, region_name=REGION, aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret)
        return self._made[service]


@pytest.fixture()
def world(stage, aws_env, monkeypatch):
    """The stage deployed into a fresh moto, an admin for setup, a call recorder."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "bootstrap")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "bootstrap")
    with mock_aws():
        enforce_iam(False)
        iam = boto3.client("iam", region_name=REGION, aws_access_key_id="bootstrap",
                           aws_secret_access_key="bootstrap")
        iam.create_user(UserName="test-admin")
        iam.put_user_policy(UserName="test-admin", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="test-admin")["AccessKey"]
        admin = Admin(key["AccessKeyId"], key["SecretAccessKey"])
        deploy(stage, admin)
        recorder = CallRecorder()
        with recorder.recording():
            yield {"stage": stage, "admin": admin, "recorder": recorder}
        enforce_iam(False)


def event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def load_handler(monkeypatch, function: str):
    """The function's handler.py, imported fresh (its cold start) under a private name."""
    return builders.load_handler(function, monkeypatch, alias=f"deployed_{function}_handler")


class Context:
    memory_limit_in_mb = 512
    aws_request_id = "deployed-twin"

    def __init__(self, function_name: str):
        self.function_name = function_name
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000
