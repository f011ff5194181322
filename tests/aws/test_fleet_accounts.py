"""Promotion across accounts in the moto world (issue [H]): the registry of record in one
account (a shared-services account of its own, or dev's), dev, staging and prod each in its
own, with the repository's own declarations (models/*.toml, cdk.json's promotionOrder and
promotion policies).

Each account is reached as AWS does it, through a role assumed there (moto answers the returned
credentials in that role's account). moto emits no events: the test plays EventBridge with the
event SageMaker emits for the package update the promotion made (its ModelLifeCycle captured
from the request itself, as botocore validated it), delivered to every environment's deployment
controller, of which only the promoted environment's acts.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import boto3
import pytest

from builders import ROOT, moto_update_endpoint, registration
from mlops_kit.aws.ledger import create_table_request
from mlops_kit.deploy.events import LifecycleStage, model_package_event
from mlops_kit.deploy.promotion import promote
from mlops_kit.fleet.loader import load_fleet
from mlops_kit.homes.aws_fleet import AwsEnvironment, AwsFleetHome

from .conftest import IMAGE_URI, REGION

FLEET = load_fleet(ROOT)
MODEL = FLEET.models["fraud-detector"]
ACCOUNTS = {"dev": "222222222222", "staging": "333333333333", "prod": "444444444444"}
REGISTRY_ACCOUNTS = {"registry-apart": "111111111111", "registry-in-dev": ACCOUNTS["dev"]}
LEDGER = "mlops-ledger"
REGISTRY_LEDGER = "mlops-registry-ledger"
PROD_SOAK = timedelta(minutes=next(e.soak_minutes for e in FLEET.environments
                                   if e.name == "prod") + 1)


@pytest.fixture(params=sorted(REGISTRY_ACCOUNTS))
def world(request, aws, monkeypatch):
    from moto.sagemaker.responses import SageMakerResponse

    monkeypatch.setattr(SageMakerResponse, "update_endpoint", moto_update_endpoint,
                        raising=False)
    sts = boto3.client("sts", region_name=REGION)
    cache: dict[tuple[str, str], object] = {}
    lifecycle_updates: list[dict] = []

    def clients_in(account: str):
        credentials = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/mlops-kit",
                                      RoleSessionName="fleet-test")["Credentials"]

        def client(service: str):
            if (account, service) not in cache:
                made = boto3.client(service, region_name=REGION,
                                    aws_access_key_id=credentials["AccessKeyId"],
                                    aws_secret_access_key=credentials["SecretAccessKey"],
                                    aws_session_token=credentials["SessionToken"])
                made.meta.events.register(
                    "provide-client-params.sagemaker.UpdateModelPackage",
                    lambda params, **_: lifecycle_updates.append(dict(params)))
                cache[(account, service)] = made
            return cache[(account, service)]
        return client

    registry_account = REGISTRY_ACCOUNTS[request.param]
    registry_clients = clients_in(registry_account)
    registry_clients("dynamodb").create_table(**create_table_request(REGISTRY_LEDGER))
    environments = {}
    for name, account in ACCOUNTS.items():
        clients = clients_in(account)
        clients("dynamodb").create_table(**create_table_request(LEDGER))
        environments[name] = AwsEnvironment(
            name, LEDGER, clients, f"arn:aws:iam::{account}:role/mlops-serving")
    home = AwsFleetHome(REGISTRY_LEDGER, registry_clients, environments)
    from mlops_kit.registry.sagemaker import SageMakerRegistry

    registering = SageMakerRegistry(MODEL.name, ledger_table=REGISTRY_LEDGER, image_uri=IMAGE_URI,
                                    sagemaker_client=registry_clients("sagemaker"),
                                    dynamodb_client=registry_clients("dynamodb"))
    for run in (1, 2):
        registering.register(registration(run, group=MODEL.name))
    home.updates = lifecycle_updates
    home.registry_account = registry_account
    return home


def promote_now(home, version: int, environment: str, now: datetime | None = None):
    result = promote(FLEET, home, MODEL.name, version, environment, actor="carol",
                     reason=f"v{version} to {environment}",
                     now=now or datetime.now(timezone.utc))
    if result.promoted:
        deliver(home, version, environment)
    return result


def deliver(home, version: int, environment: str) -> None:
    """EventBridge: the registry account's event, forwarded to every environment's bus."""
    update = home.updates[-1]
    assert update["ModelLifeCycle"] == {"Stage": environment, "StageStatus": "Approved",
                                        "StageDescription": f"v{version} to {environment}"}
    event = model_package_event(MODEL.name, version, "Approved",
                                changed_at=datetime.now(timezone.utc),
                                updated_fields=("ModelLifeCycle",), region=REGION,
                                account=home.registry_account,
                                lifecycle=LifecycleStage(environment, "Approved",
                                                         update["ModelLifeCycle"]
                                                         ["StageDescription"]))
    outcomes = {env: home.deployment_controller(MODEL, env).handle_event(event).action
                for env in MODEL.deploy_to}
    assert outcomes == {env: "deployed" if env == environment else "ignored"
                        for env in MODEL.deploy_to}


def serving(home, environment: str) -> dict[int, float]:
    view = home.status(MODEL, environment)
    return {v["version"]: v["weight"] for v in view["variants"]}


def test_a_version_trained_once_is_promoted_through_three_accounts(world):
    home = world
    refused = promote_now(home, 1, "staging")
    assert not refused.decision.allowed and "before staging" in refused.decision.reason
    assert promote_now(home, 1, "dev").promoted
    assert promote_now(home, 1, "staging").promoted
    early = promote_now(home, 1, "prod")
    assert not early.decision.allowed and "min prod requires" in early.decision.reason
    assert promote_now(home, 1, "prod", datetime.now(timezone.utc) + PROD_SOAK).promoted
    assert promote_now(home, 1, "prod").decision.already

    for environment in ("dev", "staging", "prod"):
        assert serving(home, environment) == {1: 1.0}
    # The endpoints are in the environments' accounts, the packages in the registry's only.
    for environment, account in ACCOUNTS.items():
        sagemaker = home.environments[environment].clients("sagemaker")
        arns = [e["EndpointArn"] for e in sagemaker.list_endpoints()["Endpoints"]]
        assert arns == [f"arn:aws:sagemaker:{REGION}:{account}:endpoint/"
                        f"{MODEL.endpoint_name(environment)}"]
        groups = sagemaker.list_model_package_groups()["ModelPackageGroupSummaryList"]
        assert [g["ModelPackageGroupName"] for g in groups] == (
            [MODEL.name] if account == home.registry_account else [])
    if home.registry_account not in ACCOUNTS.values():
        assert home.registry_clients("sagemaker").list_endpoints()["Endpoints"] == []
    # Who promoted what where, and why: the registry account's ledger.
    assert [(p.version, p.environment, p.actor) for p in home.promotions(MODEL)] == [
        (1, "dev", "carol"), (1, "staging", "carol"), (1, "prod", "carol")]


def test_a_rollback_in_prod_leaves_staging_untouched(world):
    home = world
    for version in (1, 2):
        for environment in ("dev", "staging"):
            assert promote_now(home, version, environment).promoted
        assert promote_now(home, version, "prod",
                           datetime.now(timezone.utc) + PROD_SOAK).promoted
    for environment in ("dev", "staging", "prod"):
        assert serving(home, environment) == {2: 1.0, 1: 0.0}
    staging_before = home.status(MODEL, "staging")

    outcome = home.rollback_controller(MODEL, "prod").rollback(
        MODEL.endpoint_name("prod"), actor="oncall", reason="fraud spike")
    assert (outcome.action, outcome.to_version) == ("rolled_back", 1)
    assert serving(home, "prod") == {1: 1.0, 2: 0.0}
    staging_after = home.status(MODEL, "staging")
    assert staging_after["variants"] == staging_before["variants"]
    assert staging_after["last_deployment"] == staging_before["last_deployment"]
    assert home.registry(MODEL, "prod").blocked_versions(MODEL.endpoint_name("prod")) == {2}
    assert home.registry(MODEL, "staging").blocked_versions(
        MODEL.endpoint_name("staging")) == set()
    # Each environment's history is in its own account's ledger; the registry's has none.
    kinds = {env: [d.kind for d in home.registry(MODEL, env).deployments()]
             for env in ACCOUNTS}
    assert kinds == {"dev": ["promote", "promote"], "staging": ["promote", "promote"],
                     "prod": ["promote", "promote", "rollback"]}
    assert home.registry(MODEL).deployments() == []
    # A version rolled back in prod is not promoted there again silently.
    again = promote(FLEET, home, MODEL.name, 2, "prod", actor="carol", reason="retry",
                    now=datetime.now(timezone.utc) + PROD_SOAK)
    assert not again.decision.allowed and "rolled back" in again.decision.reason
