"""ControlFunctions: the control Lambdas of the kit (deployment, rollback, drift monitor, probe;
a single stage's stream scoring too, `stream_scoring`), their roles (least privilege, per
function, `kit_function`), the EventBridge rules and schedules that drive them, on-failure
destinations and the control plane's own alarms (`operational_alarms`).

Each function's environment and IAM actions come from `mlops_kit.contract` (the same objects
the handlers parse their settings with): `FunctionContract.environment(...)` refuses a missing
required setting at synth, and `FunctionContract.grants()` says which actions each function
calls on which resource, which `_resources` maps to this stage's ARNs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import Aws, Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as scheduler_targets
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from mlops_kit import contract
from mlops_kit.core.schedules import fleet_schedule_payload, max_event_age
from mlops_kit.fleet.routes import ROUTES_ENV, ROUTES_FILE, routes_document

from ..config import StageConfig
from .artifact_store import ArtifactStore
from .kit_function import FunctionSpec, grant_contract, kit_function, powertools_layer
from .notifications import Notifications
from .operational_alarms import operational_alarms
from .registry import Tables
from .stream_scoring import add_stream_scoring, scoring_streams

CONTROLLER_RETRIES = 2
"""Lambda's retries of a failed asynchronous invocation before the on-failure destination."""
CONTROLLER_MAX_EVENT_AGE = Duration.hours(6)
GROUND_TRUTH_PREFIX = "ground-truth"
"""Labels land under s3://<capture bucket>/ground-truth/<endpoint>/yyyy/mm/dd/hh/
(docs/configuration.md)."""


@dataclass(frozen=True)
class ServedModel:
    """One model the control functions serve: its endpoint, its package group (a name, or the
    group's ARN in the registry account) and how it is served there (`serving`: the stage's
    config or the fleet declaration's `Serving` in this environment — the same key names)."""
    name: str
    endpoint_name: str
    model_group: str
    serving: Any


@dataclass(frozen=True)
class FleetWiring:
    """What a fleet environment's functions need beyond their models: the environment's name
    and, when the registry is another account's, the role to assume there and its ledger."""
    environment: str
    registry_role_arn: str = ""
    registry_ledger_table: str = ""


PER_MODEL_SETTINGS = {
    "deployment_controller": lambda m: dict(
        capture_percent=m.serving.capture_percent, instance_type=m.serving.instance_type,
        champion_instance_count=m.serving.champion_instance_count,
        fallback_instance_count=m.serving.fallback_instance_count,
        warm_fallbacks=m.serving.warm_fallbacks),
    "rollback_controller": lambda m: dict(cooldown_minutes=m.serving.rollback_cooldown_minutes),
    "drift_monitor": lambda m: dict(
        window_minutes=m.serving.drift_window_minutes,
        schedule_minutes=m.serving.drift_schedule_minutes,
        ground_truth_lookback_hours=m.serving.ground_truth_lookback_hours),
    "probe": lambda m: dict(max_latency_ms=m.serving.probe_max_latency_ms,
                            schedule_minutes=m.serving.probe_schedule_minutes),
}
"""Each function's settings that differ per model, from the model's serving settings (the
contract marks the same ones `per_model`; tests/infra holds the two equal)."""
SCHEDULED = {"drift_monitor": "drift_schedule_minutes", "probe": "probe_schedule_minutes"}


class ControlFunctions(Construct):
    """Props: the environment's config (`cfg`: retention, removal, reserved concurrency, stream
    scoring), the models served (one for a single stage; in a fleet, every model deploying to
    the environment, with `fleet` set), the stateful parts (store, tables, the registry's
    resources by contract key, notifications), the serving role and the path of functions/.
    Exposes `functions` and `roles` by name, the rules, the EventBridge DLQ, the controllers'
    on-failure queue and, in a fleet, `routes` (the document bundled with each function)."""

    def __init__(self, scope: Construct, id: str, *, cfg: StageConfig,
                 served: tuple[ServedModel, ...], functions_dir: Path, requirements_dir: Path,
                 store: ArtifactStore, tables: Tables, registry_resources: dict[str, list[str]],
                 notifications: Notifications, serving_role: iam.IRole,
                 fleet: FleetWiring | None = None) -> None:
        super().__init__(scope, id)
        if not served or (fleet is None and len(served) != 1):
            raise ValueError("a single stage serves one model; a fleet environment at least one")
        self.cfg, self.served, self.fleet = cfg, served, fleet
        self.stream_scoring = fleet is None and cfg.stream_scoring
        self.layer = powertools_layer(self)
        self._queues_and_streams(cfg, store)
        specs = [FunctionSpec("deployment_controller", 512, Duration.minutes(10)),
                 FunctionSpec("rollback_controller", 512, Duration.minutes(2)),
                 FunctionSpec("drift_monitor", 1024, Duration.minutes(5), "drift_monitor.txt"),
                 FunctionSpec("probe", 256, Duration.minutes(2))]
        env, self.routes = self._environments(store, tables, notifications, serving_role)
        self.routes_file: bytes | None = (
            json.dumps(self.routes, indent=1, sort_keys=True).encode() if fleet else None)
        """What each routed function's bundle holds as ROUTES_FILE (None: a single stage)."""
        extra = {ROUTES_FILE: self.routes_file} if fleet else None

        self.functions: dict[str, lambda_.Function] = {}
        self.roles: dict[str, iam.Role] = {}
        resources = dict(registry_resources)
        for spec in specs:
            role = self._function(spec, cfg, functions_dir, requirements_dir, env[spec.name],
                                  extra if spec.name in PER_MODEL_SETTINGS else None)
            store.grant_key_use(role)
            grant_contract(spec.name, role, lambda key: self._resources(
                key, store, tables, resources, notifications, serving_role))

        self._rules()
        self._alarms(cfg, notifications)
        if self.stream_scoring:
            model = served[0]
            scoring = add_stream_scoring(
                self, cfg=cfg, endpoint_name=model.endpoint_name,
                feature_order=tuple(model.serving.feature_order or ()),
                streams=(self.input_stream, self.output_stream), layer=self.layer,
                functions_dir=functions_dir, requirements_dir=requirements_dir)
            store.grant_key_use(scoring.role)
            self.functions["stream_scorer"], self.roles["stream_scorer"] = (scoring.function,
                                                                            scoring.role)
            self.scoring_failures = scoring.failures

    def _queues_and_streams(self, cfg: StageConfig, store: ArtifactStore) -> None:
        self.dlq = sqs.Queue(self, "EventsDlq", encryption=sqs.QueueEncryption.SQS_MANAGED,
                             enforce_ssl=True, retention_period=Duration.days(14))
        self.failed_events = sqs.Queue(self, "FailedEvents",
                                       encryption=sqs.QueueEncryption.SQS_MANAGED,
                                       enforce_ssl=True, retention_period=Duration.days(14))
        self.output_stream: kinesis.Stream | None = None
        if self.stream_scoring:
            self.input_stream, self.output_stream = scoring_streams(self, store.key)

    def _function(self, spec: FunctionSpec, cfg: StageConfig, functions_dir: Path,
                  requirements_dir: Path, environment: dict[str, str],
                  extra_files: dict[str, bytes] | None) -> iam.Role:
        """One control Lambda with its own role and log group; returns the role."""
        asynchronous = {}
        if spec.name in ("deployment_controller", "rollback_controller"):
            # After Lambda accepted the event, a function error gets CONTROLLER_RETRIES
            # retries and then lands here instead of being discarded; it alarms, and
            # `mlops events replay` delivers it again (docs/runbooks.md).
            asynchronous = dict(on_failure=destinations.SqsDestination(self.failed_events),
                                retry_attempts=CONTROLLER_RETRIES,
                                max_event_age=CONTROLLER_MAX_EVENT_AGE,
                                reserved_concurrent_executions=(
                                    cfg.controller_reserved_concurrency))
        function, role = kit_function(self, spec, cfg, layer=self.layer,
                                      functions_dir=functions_dir,
                                      requirements_dir=requirements_dir,
                                      environment=environment, extra_files=extra_files,
                                      **asynchronous)
        self.functions[spec.name], self.roles[spec.name] = function, role
        return role

    # -- environment and permissions, from the contract --------------------------------------
    def _environments(self, store: ArtifactStore, tables: Tables, notifications: Notifications,
                      serving_role: iam.IRole
                      ) -> tuple[dict[str, dict[str, str]], dict[str, Any] | None]:
        """Each function's environment, and in a fleet the routes document: every model's
        environment rendered by the contract, then split into what all models share (the
        function's own) and what is the model's (its route)."""
        fleet = self.fleet
        registry = dict(registry_role_arn=fleet.registry_role_arn or None,
                        registry_ledger_table=fleet.registry_ledger_table or None) if fleet else {}
        shared = {
            "deployment_controller": dict(
                idempotency_table=tables.idempotency.table_name,
                execution_role_arn=serving_role.role_arn, capture_s3_uri=store.capture_s3_uri,
                capture_kms_key_id=store.key.key_arn,
                environment=fleet.environment if fleet else None, **registry),
            "rollback_controller": dict(
                idempotency_table=tables.idempotency.table_name,
                notification_topic_arn=notifications.topic.topic_arn, **registry),
            "drift_monitor": dict(
                capture_s3_uri=store.capture_s3_uri,
                ground_truth_s3_uri=f"s3://{store.capture.bucket_name}/{GROUND_TRUTH_PREFIX}",
                **registry),
            "probe": dict(registry),
        }
        environments: dict[str, dict[str, str]] = {}
        routes: dict[str, dict[str, dict[str, str]]] = {}
        for name, values in shared.items():
            fn = contract.function(name)
            for model in self.served:
                rendered = fn.environment(
                    endpoint_name=model.endpoint_name, model_group=model.model_group,
                    ledger_table=tables.ledger.table_name, **values,
                    **PER_MODEL_SETTINGS[name](model))
                if fleet is None:
                    environments[name] = rendered
                    continue
                own, route = fn.split(rendered)
                environments[name] = {**own, ROUTES_ENV: ROUTES_FILE}
                routes.setdefault(model.name, {})[name] = route
        return environments, (routes_document(fleet.environment, routes) if fleet else None)

    def _resources(self, key: str, store: ArtifactStore, tables: Tables,
                   registry_resources: dict[str, list[str]], notifications: Notifications,
                   serving_role: iam.IRole) -> list[str]:
        arn = f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}"
        c = contract
        if self.fleet is None:
            endpoint = self.served[0].endpoint_name.lower()  # SageMaker lower-cases ARNs
            endpoints = [f"{arn}:endpoint/{endpoint}"]
            configs = [f"{arn}:endpoint-config/{endpoint}-*"]
            models = [f"{arn}:model/{self.served[0].model_group.lower()}-v*"]
        else:
            # Every endpoint of a fleet environment is `<model>-<environment>`: one pattern,
            # whatever the number of models (a role's inline policies hold 10,240 characters).
            env = self.fleet.environment.lower()
            endpoints = [f"{arn}:endpoint/*-{env}"]
            configs = [f"{arn}:endpoint-config/*-{env}-*"]
            models = [f"{arn}:model/*-v*"]
        table = {
            c.ENDPOINT: lambda: endpoints,
            c.ENDPOINT_CONFIGS: lambda: configs,
            c.MODELS: lambda: models,
            c.MODEL_GROUP: lambda: registry_resources[c.MODEL_GROUP],
            c.MODEL_PACKAGES: lambda: registry_resources[c.MODEL_PACKAGES],
            c.REGISTRY_ROLE: lambda: registry_resources.get(c.REGISTRY_ROLE, []),
            c.REGISTRY_LEDGER_TABLE: lambda: registry_resources.get(c.REGISTRY_LEDGER_TABLE, []),
            c.LEDGER_TABLE: lambda: [tables.ledger.table_arn],
            c.IDEMPOTENCY_TABLE: lambda: [tables.idempotency.table_arn],
            c.ARTIFACT_BUCKET: lambda: [store.artifacts_arn_ref],
            c.ARTIFACT_OBJECTS: lambda: [f"{store.artifacts_arn_ref}/*"],
            c.CAPTURE_BUCKET: lambda: [store.capture_arn_ref],
            c.CAPTURE_OBJECTS: lambda: [f"{store.capture_arn_ref}/*"],
            c.NOTIFICATION_TOPIC: lambda: [notifications.topic.topic_arn],
            c.SERVING_ROLE: lambda: [serving_role.role_arn],
            c.OUTPUT_STREAM: lambda: [self.output_stream.stream_arn],
            c.ANY: lambda: ["*"],
        }
        return table[key]()

    # -- events -------------------------------------------------------------------------------
    def _target(self, name: str, max_age: Duration = CONTROLLER_MAX_EVENT_AGE,
                retries: int = 8) -> targets.LambdaFunction:
        return targets.LambdaFunction(self.functions[name], dead_letter_queue=self.dlq,
                                      retry_attempts=retries, max_event_age=max_age)

    def _rules(self) -> None:
        if self.fleet is None:
            model = self.served[0]
            approvals = contract.approval_event_pattern(model.model_group)
            alarms = contract.alarm_event_pattern(model.endpoint_name)
        else:
            approvals = contract.promotion_event_pattern(self.fleet.environment)
            alarms = contract.fleet_alarm_event_pattern(self.fleet.environment)
        self.approval_rule = events.Rule(
            self, "ModelApproved", description="Approved model package → deployment controller"
            if self.fleet is None else "A version promoted here → deployment controller",
            event_pattern=_pattern(approvals), targets=[self._target("deployment_controller")])
        self.alarm_rule = events.Rule(
            self, "KitAlarm", description="The kit's alarms going into ALARM → rollback controller",
            event_pattern=_pattern(alarms), targets=[self._target("rollback_controller")])
        if self.fleet is None:
            self._stage_schedules(self.served[0])
        else:
            self._fleet_schedules()

    def _stage_schedules(self, model: ServedModel) -> None:
        # A scheduled run is superseded by the next one: EventBridge gives up on it after the
        # age the function itself refuses (mlops_kit.core.schedules).
        for ident, name, what in (("DriftSchedule", "drift_monitor", "Drift monitor"),
                                  ("ProbeSchedule", "probe", "Synthetic probe")):
            minutes = getattr(model.serving, SCHEDULED[name])
            age = Duration.minutes(int(max_event_age(minutes).total_seconds() // 60))
            events.Rule(self, ident, description=f"{what} schedule",
                        schedule=events.Schedule.rate(Duration.minutes(minutes)),
                        targets=[self._target(name, max_age=age, retries=2)])

    def _fleet_schedules(self) -> None:
        """One EventBridge Scheduler schedule per model and function, naming the model in its
        payload (`core.schedules.fleet_schedule_payload`): Scheduler invokes through one role,
        so the functions' resource policies do not grow with the fleet as rules' would."""
        self.schedule_group = scheduler.ScheduleGroup(self, "Schedules")
        for name in SCHEDULED:
            fn = self.functions[name]
            for model in self.served:
                minutes = getattr(model.serving, SCHEDULED[name])
                age = Duration.minutes(int(max_event_age(minutes).total_seconds() // 60))
                ident = "".join(p.title() for p in f"{model.name}-{name}".replace("_", "-")
                                .split("-"))
                scheduler.Schedule(
                    self, ident, schedule=scheduler.ScheduleExpression.rate(
                        Duration.minutes(minutes)),
                    schedule_group=self.schedule_group,
                    description=f"{name} of {model.endpoint_name}",
                    target=scheduler_targets.LambdaInvoke(
                        fn, input=scheduler.ScheduleTargetInput.from_object(
                            fleet_schedule_payload(model.name)),
                        dead_letter_queue=self.dlq, max_event_age=age, retry_attempts=2))

    def _alarms(self, cfg: StageConfig, notifications: Notifications) -> None:
        self.operational_alarms = operational_alarms(
            self, stage=cfg.stage, topic=notifications.topic,
            failed_events=self.failed_events, events_dlq=self.dlq,
            monitors={name: (self.functions[name],
                             min(getattr(m.serving, SCHEDULED[name]) for m in self.served))
                      for name in SCHEDULED})


def _pattern(raw: dict) -> events.EventPattern:
    return events.EventPattern(source=raw["source"], detail_type=raw["detail-type"],
                               detail=raw["detail"])
