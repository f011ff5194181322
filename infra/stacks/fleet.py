"""compose_fleet(): the stacks of every model in every environment (`-c fleet=true`).

    registry environment's account          every environment E's account
    ───────────────────────────────         ──────────────────────────────
    MlopsKit-<R>-Stateful                   MlopsKit-<E>-Stateful  (key, buckets, tables, topic)
      artifact bucket and ledger named      MlopsKit-<E>-Control   (one set of control Lambdas
      (other accounts' policies name them)    for all E's models, routed by the bundled routes
    MlopsKit-Registry                         file; Scheduler schedules per model; E's bus
      one package group per model,            accepts the registry account's events)
      read by the environments' accounts;   MlopsKit-<E>-<model>   (alarms and dashboard of
      the role each environment assumes;      the model's endpoint in E)
      promotions forwarded to each bus
    MlopsKit-<model>-Pipeline
      (trained and registered once)

A stack per model and environment keeps each template far from CloudFormation's 500-resource
and 1 MB limits however many models there are (docs/performance.md measures it); the control
stack does not grow in resources but in its routes file and schedules.
"""

from __future__ import annotations

import os

from aws_cdk import App, CfnOutput, Environment, Stack, Tags

from mlops_kit import contract
from mlops_kit.fleet.declaration import ModelDeclaration

from ..config import StageConfig
from ..constructs.control_functions import ControlFunctions, FleetWiring, ServedModel
from ..constructs.fleet_access import (PromotionForwarding, RegistryAccess,
                                       RegistryEventsPolicy, control_stack_name,
                                       registry_access_role_name, registry_account,
                                       registry_arns, registry_bucket_name, registry_region)
from ..constructs.monitoring import Monitoring
from ..constructs.registry import ModelRegistry
from ..constructs.serving_role import RegistryArtifacts, ServingRole
from ..constructs.stream_scoring import ModelStreamScoring
from ..fleet_config import FleetConfig
from . import Paths
from .pipeline import PipelineStack
from .stateful import FleetNames, StatefulStack

REGISTRY_LEDGER = "mlops-kit-registry-ledger"
REGISTRY_LEDGER_READERS = tuple(name for name, fn in contract.FUNCTIONS.items()
                                if contract.REGISTRY_LEDGER_TABLE in fn.grants())
"""The functions that read the registry's ledger (its contract's grant)."""
"""The registry account's ledger of versions and promotions (named: other accounts' roles
name it)."""


def _environment(cfg: StageConfig) -> Environment:
    return Environment(account=cfg.account or os.environ.get("CDK_DEFAULT_ACCOUNT"),
                       region=cfg.region or os.environ.get("CDK_DEFAULT_REGION")
                       or cfg.fallback_region)


class RegistryStack(Stack):
    """The registry of record: a package group per model, who may read it, and what carries
    promotions to the other accounts."""

    def __init__(self, scope, id: str, *, fleet: FleetConfig, stateful: StatefulStack,
                 **kwargs) -> None:
        super().__init__(scope, id, termination_protection=fleet.registry.retain, **kwargs)
        self.groups = {m.name: ModelRegistry(self, _ident(m.name), model_group=m.name,
                                             reader_accounts=fleet.reader_accounts(m))
                       for m in fleet.fleet.models.values()}
        self.access: dict[str, RegistryAccess] = {}
        self.forwarding: dict[str, PromotionForwarding] = {}
        for name, cfg in fleet.environments.items():
            if not fleet.crosses_accounts(name):
                continue
            self.access[name] = RegistryAccess(
                self, f"{name.title()}Access", environment=name, account=cfg.account,
                registry=fleet.registry, ledger_table_arn=stateful.tables.ledger.table_arn,
                key_arn=stateful.store.key.key_arn)
            self.forwarding[name] = PromotionForwarding(
                self, f"{name.title()}Promotions", environment=name, target=cfg)


class EnvironmentControlStack(Stack):
    """One environment's control Lambdas over all its models, and its serving role."""

    def __init__(self, scope, id: str, *, fleet: FleetConfig, environment: str,
                 stateful: StatefulStack, paths: Paths, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        cfg, registry = fleet.environments[environment], fleet.registry
        crosses = fleet.crosses_accounts(environment)
        beside = environment != fleet.registry_environment
        account, region = registry_account(registry), registry_region(registry)
        # An environment beside the registry's (in its account or another) serves and watches
        # the versions trained there: their files and baselines are in the registry's bucket.
        shared = (RegistryArtifacts(
            f"arn:{self.partition}:s3:::{registry_bucket_name(account, region)}", account,
            region) if beside else None)
        self.serving = ServingRole(self, "ServingRole", store=stateful.store,
                                   registry_artifacts=shared)
        registry_resources = registry_arns(registry)
        wiring = FleetWiring(environment)
        if crosses:
            role_arn = (f"arn:{self.partition}:iam::{registry.account}:role/"
                        f"{registry_access_role_name(environment)}")
            registry_resources[contract.REGISTRY_ROLE] = [role_arn]
            wiring = FleetWiring(environment, registry_role_arn=role_arn,
                                 registry_ledger_table=REGISTRY_LEDGER)
            RegistryEventsPolicy(self, "RegistryEvents", registry=registry)
        elif beside:  # the registry's ledger is a table of this account: read directly
            registry_resources[contract.REGISTRY_LEDGER_TABLE] = [
                f"arn:{self.partition}:dynamodb:{region}:{account}:table/{REGISTRY_LEDGER}"]
            wiring = FleetWiring(environment, registry_ledger_table=REGISTRY_LEDGER)
        self.control = ControlFunctions(
            self, "Control", cfg=cfg, served=tuple(
                _served(m, environment) for m in fleet.models_in(environment)),
            functions_dir=paths.functions_dir, requirements_dir=paths.requirements_dir,
            store=stateful.store, tables=stateful.tables, registry_resources=registry_resources,
            notifications=stateful.notifications, serving_role=self.serving.role,
            fleet=wiring)
        if shared is not None:
            for name in ("drift_monitor", "probe"):  # the champion's baseline is there
                shared.grant_read(self.control.roles[name])
            if not crosses:
                for name in REGISTRY_LEDGER_READERS:
                    shared.grant_ledger_key(self.control.roles[name])


class ModelMonitoringStack(Stack):
    """The alarms and dashboard of one model's endpoint in one environment, and its streaming
    scoring when the model declares `stream_scoring` there (a scorer serves one endpoint)."""

    def __init__(self, scope, id: str, *, model: ModelDeclaration, environment: str,
                 cfg: StageConfig, stateful: StatefulStack, paths: Paths, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        serving = model.serving_in(environment)
        endpoint = model.endpoint_name(environment)
        self.monitoring = Monitoring(
            self, "Monitoring", endpoint_name=endpoint,
            definitions_path=paths.alarm_definitions,
            schedule_minutes=serving.drift_schedule_minutes,
            notification_topic=stateful.notifications.topic)
        self.scoring: ModelStreamScoring | None = None
        if serving.stream_scoring:
            self.scoring = ModelStreamScoring(
                self, "Scoring", cfg=cfg, endpoint_name=endpoint,
                feature_order=tuple(serving.feature_order), key=stateful.store.key,
                functions_dir=paths.functions_dir, requirements_dir=paths.requirements_dir)
            stateful.store.grant_key_use(self.scoring.parts.role)
            CfnOutput(self, "ScoringInputStream",
                      value=self.scoring.parts.input_stream.stream_name,
                      description=f"records to score by {endpoint}")
            CfnOutput(self, "ScoringOutputStream",
                      value=self.scoring.parts.output_stream.stream_name,
                      description=f"{endpoint}'s scores")


def _served(model: ModelDeclaration, environment: str) -> ServedModel:
    # The group by name: in another account, the controllers read it as the registry account's
    # role (`RegistryAccess`), where the name is the group's.
    return ServedModel(model.name, model.endpoint_name(environment), model.name,
                       model.serving_in(environment))


def _ident(name: str) -> str:
    return "".join(part.title() for part in name.replace("_", "-").split("-"))


def compose_fleet(app: App, fleet: FleetConfig, paths: Paths = Paths()) -> dict[str, Stack]:
    """Every stack of the fleet, by name."""
    registry_name = fleet.registry_environment
    stacks: dict[str, Stack] = {}
    stateful: dict[str, StatefulStack] = {}
    for name, cfg in fleet.environments.items():
        names = FleetNames()
        if name == registry_name:
            names = FleetNames(
                artifacts_bucket=registry_bucket_name(registry_account(cfg), registry_region(cfg)),
                ledger_table=REGISTRY_LEDGER,
                new_data_trigger=any(m.training.new_data_trigger
                                     for m in fleet.fleet.models.values()))
        stateful[name] = stacks[f"MlopsKit-{name}-Stateful"] = StatefulStack(
            app, f"MlopsKit-{name}-Stateful", cfg=cfg, fleet_names=names, env=_environment(cfg),
            description=f"mlops-kit fleet, {name}: key, buckets, tables, topic")
    registry_cfg, registry_stateful = fleet.registry, stateful[registry_name]
    registry_stateful.store.share_read(tuple(sorted(
        {c.account for n, c in fleet.environments.items() if fleet.crosses_accounts(n)})))
    registry = stacks["MlopsKit-Registry"] = RegistryStack(
        app, "MlopsKit-Registry", fleet=fleet, stateful=registry_stateful,
        env=_environment(registry_cfg),
        description="mlops-kit fleet: the registry of record (a package group per model)")
    for model in fleet.fleet.models.values():
        cfg = registry_cfg.model_copy(update=dict(
            model_group=model.name, training_schedule=model.training.schedule,
            new_data_trigger=model.training.new_data_trigger, new_data_key=model.data.key,
            studio=registry_cfg.studio.model_copy(update={"enabled": False})))
        stacks[f"MlopsKit-{model.name}-Pipeline"] = PipelineStack(
            app, f"MlopsKit-{model.name}-Pipeline", cfg=cfg, stateful=registry_stateful,
            registry=registry.groups[model.name], definition_path=paths.definition,
            assets_dir=paths.pipeline_assets, parameter_defaults=model.pipeline_parameters(),
            env=_environment(registry_cfg),
            description=f"mlops-kit fleet: {model.name}'s training pipeline")
    for name, cfg in fleet.environments.items():
        env = _environment(cfg)
        stacks[control_stack_name(name)] = EnvironmentControlStack(
            app, control_stack_name(name), fleet=fleet, environment=name,
            stateful=stateful[name], paths=paths, env=env,
            description=f"mlops-kit fleet, {name}: control Lambdas of every model")
        for model in fleet.models_in(name):
            stacks[f"MlopsKit-{name}-{model.name}"] = ModelMonitoringStack(
                app, f"MlopsKit-{name}-{model.name}", model=model, environment=name, cfg=cfg,
                stateful=stateful[name], paths=paths, env=env,
                description=f"mlops-kit fleet, {name}: alarms, dashboard and streaming "
                            f"scoring of {model.name}")
    for stack in stacks.values():
        Tags.of(stack).add("mlops-kit:fleet", "true")
    from ..nag import acknowledge_fleet

    acknowledge_fleet(stacks, fleet)
    return stacks
