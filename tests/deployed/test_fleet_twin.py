"""The one-account fleet's prod as the deployed twin: the fleet's synthesized templates (the
repository's cdk.json, `account: null`, so every environment and the registry share one
account) deployed into moto — prod's Stateful and Control stacks, and the registry's ledger,
bucket (dev's Stateful: dev is the registry environment) and package groups (the Registry
stack). A model's versions are registered and promoted to prod as the registry of record does
it; prod's deployment controller deploys them and prod's rollback controller answers the prod
monitoring stack's own rollback alarm, each run as exactly its template role with moto
enforcing IAM, and every call either makes audited against that role's statements."""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from builders import alarm_event, probes_healthy
from mlops_kit.deploy.events import LifecycleStage, model_package_event
from mlops_kit.fleet.loader import load_fleet
from mlops_kit.fleet.routes import ROUTES_FILE
from mlops_kit.homes.aws_fleet import AwsFleetHome
from mlops_kit.registry.sagemaker import SageMakerRegistry

from .conftest import ROOT, Context, _infra_tests, load_handler
from .scenario import IMAGE_URI, moto_update_endpoint, register_versions
from .test_event_rules import matching_rules
from .test_roles import audit
from .twin import ACCOUNT, REGION, as_function, load_stage

ENVIRONMENT = "prod"
MODEL = load_fleet(ROOT).models["fraud-detector"]
RUN = ("deployment_controller", "rollback_controller")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """The one-account fleet, synthesized once: its config, templates and the routes file
    prod's control functions are bundled with."""
    app, config, stacks = _infra_tests().synth_fleet(tmp_path_factory.mktemp("fleet-twin"))
    return SimpleNamespace(
        config=config, templates={s.stack_name: s.template for s in app.synth().stacks},
        routes=stacks[f"MlopsKit-{ENVIRONMENT}-Control"].control.routes_file,
        registry_stateful=f"MlopsKit-{config.registry_environment}-Stateful")


@pytest.fixture(scope="module")
def stage(fleet):
    """Overrides conftest's `stage`, so its `world` deploys prod with the registry's stacks
    (the same account's)."""
    return load_stage(ENVIRONMENT, fleet.templates,
                      also=(fleet.registry_stateful, "MlopsKit-Registry"))


@pytest.fixture()
def task_root(fleet, tmp_path, monkeypatch):
    """The functions' code folder as Lambda mounts it: the routes file the bundle ships."""
    (tmp_path / ROUTES_FILE).write_bytes(fleet.routes)
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(tmp_path))
    return tmp_path


class FleetRun:
    """prod's functions run as their roles; `keys` (function → access keys) is what
    `test_roles.audit` attributes the recorded calls by."""

    def __init__(self, world, fleet, monkeypatch):
        from moto.sagemaker.responses import SageMakerResponse

        monkeypatch.setattr(SageMakerResponse, "update_endpoint", moto_update_endpoint,
                            raising=False)
        self.world, self.monkeypatch = world, monkeypatch
        self.stage, self.admin = world["stage"], world["admin"]
        self.ledger = self.stage.output(fleet.registry_stateful, "LedgerTableName")
        self.bucket = self.stage.output(fleet.registry_stateful, "ArtifactBucketName")
        self.home = AwsFleetHome(self.ledger, self.admin, {})
        self.keys: dict[str, set[str]] = {}

    def run(self, function: str, payload: dict) -> dict:
        fn = self.stage.functions[function]
        # Each function is its own process: no other function's variables are set.
        for other in self.stage.functions.values():
            for name in set(other.environment) - set(fn.environment):
                self.monkeypatch.delenv(name, raising=False)
        with as_function(self.stage, function, self.admin, self.world["recorder"],
                         self.monkeypatch) as key:
            self.keys.setdefault(function, set()).add(key)
            handler = load_handler(self.monkeypatch, function)
            return handler.lambda_handler(payload, Context(fn.function_name))

    # -- the registry of record, as the test's admin ---------------------------------------
    def register(self, versions: int) -> None:
        """Versions as the model's pipeline registers them, their baselines in the registry
        bucket."""
        registry = SageMakerRegistry(MODEL.name, ledger_table=self.ledger, image_uri=IMAGE_URI,
                                     sagemaker_client=self.admin("sagemaker"),
                                     dynamodb_client=self.admin("dynamodb"))
        register_versions(registry, self.admin("s3"), self.bucket, versions)

    def promote(self, version: int) -> dict:
        """`version` promoted through the model's environments to prod, recorded as the
        promotion service records it; returns the event SageMaker emits for the last step."""
        reason = f"v{version} to {ENVIRONMENT}"
        for environment in MODEL.deploy_to[:MODEL.deploy_to.index(ENVIRONMENT) + 1]:
            self.home.record(MODEL, version, environment, actor="carol", reason=reason,
                             approve=environment == MODEL.deploy_to[0])
        return model_package_event(MODEL.name, version, "Approved",
                                   changed_at=datetime.now(timezone.utc),
                                   updated_fields=("ModelLifeCycle",), region=REGION,
                                   account=ACCOUNT,
                                   lifecycle=LifecycleStage(ENVIRONMENT, "Approved", reason))


def rollback_alarm(templates: dict, endpoint: str) -> dict:
    """The prod monitoring stack's own feature-drift alarm (a rollback alarm) going OK → ALARM
    now, with the template's name, metric and dimensions."""
    stack = templates[f"MlopsKit-{ENVIRONMENT}-{MODEL.name}"]
    (props,) = [r["Properties"] for r in stack["Resources"].values()
                if r["Type"] == "AWS::CloudWatch::Alarm"
                and r["Properties"]["AlarmName"] == f"{endpoint}-feature-drift"]
    alarm = alarm_event("feature-drift")
    name = props["AlarmName"]
    alarm.update(account=ACCOUNT, region=REGION,
                 resources=[f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{name}"])
    alarm["detail"]["alarmName"] = name
    (metric,) = alarm["detail"]["configuration"]["metrics"]
    metric["metricStat"].update(period=props["Period"], stat=props["Statistic"])
    metric["metricStat"]["metric"] = {
        "namespace": props["Namespace"], "name": props["MetricName"],
        "dimensions": {d["Name"]: d["Value"] for d in props["Dimensions"]}}
    return alarm


def lifecycle(sc: FleetRun, templates: dict) -> dict:
    """v1 and v2 promoted to prod and deployed there, then rolled back to v1 on prod's alarm."""
    endpoint = MODEL.endpoint_name(ENVIRONMENT)
    rules = {r["Description"]: logical for logical, r in sc.stage.rules().items()}
    promoted_rule = next(logical for d, logical in rules.items() if "promoted here" in d)
    alarm_rule = next(logical for d, logical in rules.items() if "rollback controller" in d)
    sc.register(2)
    results = {}
    for version in (1, 2):
        promotion = sc.promote(version)
        assert matching_rules(sc.stage, promotion) == {promoted_rule}
        results[f"deploy v{version}"] = sc.run("deployment_controller", promotion)
    probes_healthy(sc.admin("cloudwatch"), endpoint)
    alarm = rollback_alarm(templates, endpoint)
    assert matching_rules(sc.stage, alarm) == {alarm_rule}
    results["rollback"] = sc.run("rollback_controller", alarm)
    return results


def audited(sc: FleetRun) -> dict[str, list[str]]:
    """`test_roles.audit` over the functions this lifecycle runs."""
    ran = SimpleNamespace(functions={n: sc.stage.functions[n] for n in RUN})
    return audit(SimpleNamespace(world=sc.world, stage=ran, keys=sc.keys))


def test_prod_deploys_and_rolls_back_under_exactly_its_roles(world, fleet, task_root,
                                                               monkeypatch):
    sc = FleetRun(world, fleet, monkeypatch)
    results = lifecycle(sc, fleet.templates)
    assert results["deploy v1"]["action"] == "deployed", results["deploy v1"]
    assert results["deploy v2"]["action"] == "deployed", results["deploy v2"]
    assert results["rollback"]["action"] == "rolled_back", results["rollback"]
    assert results["rollback"]["to_version"] == 1, results["rollback"]
    assert audited(sc) == {}


def test_a_role_without_the_registry_ledger_grant_fails_the_audit(world, fleet, task_root,
                                                                   monkeypatch):
    """The audit is not vacuous: the deployment controller's role without the statement that
    grants the registry's ledger fails it."""
    sc = FleetRun(world, fleet, monkeypatch)
    fn = sc.stage.functions["deployment_controller"]
    granted = fn.statements
    try:
        fn.statements = [s for s in granted if sc.ledger not in str(s["Resource"])]
        assert len(fn.statements) == len(granted) - 1
        lifecycle(sc, fleet.templates)
        problems = audited(sc).get("deployment_controller", [])
        assert any(f"table/{sc.ledger} is not granted" in p for p in problems), problems
    finally:
        fn.statements = granted
