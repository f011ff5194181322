"""The AWS home's wiring: every controller and monitor of the kit, built from the contract's
typed settings (`mlops_kit.contract`). The Lambda handlers call these builders at first use;
`mlops ... --backend aws` calls the same builders with the same settings (read from the
deployed function's own environment when `MLOPS_<FUNCTION>_FUNCTION` names it, otherwise from
the operator's environment under the same variable names), so a manual rollback on the command
line is the rollback the Lambda would make: same cooldown, managed endpoint, capture settings.

`clients`: an optional factory `service -> boto3 client` (tests pass moto- or Stubber-backed
ones); without it each adapter creates its default client on first use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Mapping
from weakref import WeakKeyDictionary

from mlops_kit.contract import (DeploymentControllerSettings, DriftMonitorSettings,
                                ProbeSettings, RollbackControllerSettings, SettingsError,
                                function)
from mlops_kit.homes import Backend, BackendError

Clients = Callable[[str], Any] | None


def _client(clients: Clients, service: str) -> Any:
    return clients(service) if clients is not None else None


def registry(model_group: str, ledger_table: str, clients: Clients = None, *,
             registry_ledger_table: str = "", registry_role_arn: str = "",
             session_name: str = "mlops-kit"):
    """The group's registry. Neither registry field: packages, versions and deployments all in
    this account's `ledger_table`. A fleet environment keeps only its deployments and rollback
    claims in `ledger_table`, with `clients`, and reads the versions elsewhere (as
    `AwsFleetHome.registry`): in `registry_ledger_table` of the same account, or, with
    `registry_role_arn`, the registry account's package group and its `registry_ledger_table`
    (unset: the table of `ledger_table`'s name there) through that role, assumed as
    `session_name`."""
    from mlops_kit.registry.sagemaker import SageMakerRegistry

    if not (registry_role_arn or registry_ledger_table):
        return SageMakerRegistry(model_group, ledger_table=ledger_table,
                                 sagemaker_client=_client(clients, "sagemaker"),
                                 dynamodb_client=_client(clients, "dynamodb"))
    versions, own_dynamodb = clients, _client(clients, "dynamodb")
    if registry_role_arn:
        from mlops_kit.aws.clients import default_client

        versions = _registry_account(registry_role_arn, session_name, clients)
        # Never None here: SageMakerRegistry would fall back to the registry account's client.
        own_dynamodb = own_dynamodb or default_client("dynamodb")
    return SageMakerRegistry(model_group, ledger_table=registry_ledger_table or ledger_table,
                             sagemaker_client=_client(versions, "sagemaker"),
                             dynamodb_client=_client(versions, "dynamodb"),
                             deployment_ledger_table=ledger_table,
                             deployment_dynamodb_client=own_dynamodb)


_ASSUMED: "WeakKeyDictionary[Any, dict[tuple[str, str], Any]]" = WeakKeyDictionary()
"""The registry account's clients per `clients` factory (a container's), so every model of a
fleet function shares one role session and one client per service."""


def _registry_account(role_arn: str, session_name: str, clients: Clients):
    from mlops_kit.aws.assumed_role import AssumedRoleClients

    try:
        shared = _ASSUMED.setdefault(clients, {})
    except TypeError:  # None, or a factory that cannot be weakly referenced: not shared
        shared = {}
    key = (role_arn, session_name)
    if key not in shared:
        shared[key] = AssumedRoleClients(role_arn, session_name,
                                         sts_client=_client(clients, "sts"))
    return shared[key]


def _registry_of(settings: Any, clients: Clients):
    """`registry(...)` of a function's settings, assuming the registry role as that function
    (`mlops-kit-<service>`; the CLI's `--backend aws` acts with the rollback controller's)."""
    return registry(settings.model_group, settings.ledger_table, clients,
                    registry_ledger_table=settings.registry_ledger_table,
                    registry_role_arn=settings.registry_role_arn,
                    session_name=f"mlops-kit-{function(type(settings).CONTRACT).service}")


def endpoints(clients: Clients = None, settings: DeploymentControllerSettings | None = None):
    """The endpoint adapter; with the deployment controller's settings it can also create
    models and endpoint configs (role, instance type, data capture)."""
    from mlops_kit.deploy.sagemaker_endpoint import DataCapture, SageMakerEndpoints

    if settings is None:
        return SageMakerEndpoints(_client(clients, "sagemaker"))
    return SageMakerEndpoints(
        _client(clients, "sagemaker"), execution_role_arn=settings.execution_role_arn,
        instance_type=settings.instance_type,
        data_capture=DataCapture(settings.capture_s3_uri, settings.capture_percent,
                                 settings.capture_kms_key_id))


def deployment_controller(settings: DeploymentControllerSettings, clients: Clients = None):
    from mlops_kit.deploy.controller import DeploymentController, DeploymentSettings

    return DeploymentController(
        _registry_of(settings, clients),
        endpoints(clients, settings),
        DeploymentSettings(settings.endpoint_name, settings.champion_instance_count,
                           settings.fallback_instance_count, settings.warm_fallbacks,
                           environment=settings.environment or None))


def rollback_controller(settings: RollbackControllerSettings, clients: Clients = None):
    return build_rollback_controller(
        _registry_of(settings, clients), clients,
        endpoint_name=settings.endpoint_name, cooldown_minutes=settings.cooldown_minutes,
        notification_topic_arn=settings.notification_topic_arn)


def build_rollback_controller(registry_of_endpoint: Any, clients: Clients, *, endpoint_name: str,
                              cooldown_minutes: float, notification_topic_arn: str = ""):
    """The rollback controller of one endpoint over its registry (a fleet environment's reads
    the registry account's packages and keeps its own deployment ledger)."""
    from mlops_kit.aws.health import CloudWatchProbeResults, SnsNotifier
    from mlops_kit.deploy.rollback import RollbackController, RollbackSettings

    adapter = endpoints(clients)

    def variant_names(name: str) -> list[str]:
        view = adapter.describe(name)
        return [v.variant_name for v in view.variants] if view else []

    topic = notification_topic_arn
    return RollbackController(
        registry_of_endpoint, adapter,
        health=CloudWatchProbeResults(_client(clients, "cloudwatch"), variants=variant_names),
        notifier=SnsNotifier(topic, _client(clients, "sns")) if topic else None,
        settings=RollbackSettings(cooldown=timedelta(minutes=cooldown_minutes)),
        managed_endpoints=[endpoint_name])


@dataclass
class Monitoring:
    """What the drift monitor and the probe read and where they publish."""
    registry: Any
    endpoints: Any
    documents: Any
    sink: Any
    cloudwatch: Any = None
    runtime: Any = None
    ground_truth: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def monitoring(settings: DriftMonitorSettings | ProbeSettings, clients: Clients = None
               ) -> Monitoring:
    from mlops_kit.aws.clients import default_client
    from mlops_kit.aws.monitoring import S3Documents
    from mlops_kit.monitoring.metrics import PowertoolsMetricSink

    made = Monitoring(_registry_of(settings, clients),
                      endpoints(clients), S3Documents(_client(clients, "s3")),
                      PowertoolsMetricSink())
    if isinstance(settings, DriftMonitorSettings):
        made.cloudwatch = _client(clients, "cloudwatch") or default_client("cloudwatch")
        if settings.ground_truth_s3_uri:
            from mlops_kit.aws.ground_truth import S3GroundTruth

            made.ground_truth = S3GroundTruth(_client(clients, "s3"))
    else:
        made.runtime = _client(clients, "sagemaker-runtime") or default_client(
            "sagemaker-runtime")
    return made


def drift_run(settings: DriftMonitorSettings, clients: Clients = None, *,
              adapters: Monitoring | None = None):
    """The drift monitor's run (`mlops_kit.monitoring.run.DriftRun`) with the AWS adapter of
    each port: capture and baselines from S3 and the registry, the labels joined when
    GROUND_TRUTH_S3_URI is set, the champion's SageMaker metrics, the EMF sink. `adapters`:
    ones already built (the Lambda builds them once per container); else `monitoring(...)`."""
    from mlops_kit.aws.clients import default_client
    from mlops_kit.aws.ground_truth import S3Labels
    from mlops_kit.aws.monitoring import (SERVICE_METRICS_LAG, S3Capture, SageMakerBaselines,
                                          SageMakerSignals)
    from mlops_kit.monitoring.run import DriftRun, Schedule

    made = adapters if adapters is not None else monitoring(settings, clients)
    if made.cloudwatch is None:  # adapters built without it (tests): the default client
        made.cloudwatch = _client(clients, "cloudwatch") or default_client("cloudwatch")
    labels = None
    if made.ground_truth is not None and settings.ground_truth_s3_uri:
        labels = S3Labels(made.ground_truth, made.documents,
                          ground_truth_uri=settings.ground_truth_s3_uri,
                          capture_uri=settings.capture_s3_uri)
    return DriftRun(
        settings.endpoint_name,
        baselines=SageMakerBaselines(made.endpoints, made.registry, made.documents),
        capture=S3Capture(made.documents, settings.capture_s3_uri), sink=made.sink,
        schedule=Schedule(interval=timedelta(minutes=settings.schedule_minutes),
                          capture_window=timedelta(minutes=settings.window_minutes),
                          label_lookback=timedelta(hours=settings.ground_truth_lookback_hours),
                          service_lag=SERVICE_METRICS_LAG),
        labels=labels, home=SageMakerSignals(made.cloudwatch))


# -- the CLI's view of a deployed stage ---------------------------------------------------

FUNCTION_VARIABLES = {"deployment_controller": "MLOPS_DEPLOYMENT_FUNCTION",
                      "rollback_controller": "MLOPS_ROLLBACK_FUNCTION"}
"""Set to the function names the Control stack outputs, and the CLI runs with exactly the
deployed function's settings."""


def deployed_settings(name: str, environ: Mapping[str, str] | None = None,
                      clients: Clients = None) -> Any:
    """The settings of function `name` as deployed (its Lambda environment, read with
    lambda:GetFunctionConfiguration) when $MLOPS_<FUNCTION>_FUNCTION names it; otherwise the
    operator's environment under the function's own variable names."""
    env = dict(os.environ if environ is None else environ)
    contract = function(name)
    deployed = env.get(FUNCTION_VARIABLES.get(name, ""), "")
    if deployed:
        from mlops_kit.aws.clients import default_client

        client = _client(clients, "lambda") or default_client("lambda")
        config = client.get_function_configuration(FunctionName=deployed)
        env = dict(config.get("Environment", {}).get("Variables", {}))
    try:
        return contract.settings(env)
    except SettingsError as exc:
        source = (f"function {deployed}" if deployed else
                  f"the environment (or set {FUNCTION_VARIABLES.get(name, '')} to the "
                  f"Control stack's function name output)")
        raise BackendError(f"aws backend: {exc}; read from {source}") from None


def backend(environ: Mapping[str, str] | None = None, clients: Clients = None) -> Backend:
    """The registry, endpoint and rollback controller of a deployed stage, for the CLI."""
    from mlops_kit.config import LocalSettings

    env = dict(os.environ if environ is None else environ)
    local = LocalSettings.from_env(env)
    env.setdefault("MLOPS_MODEL_GROUP", local.model_group)
    env.setdefault("ENDPOINT_NAME", env.get("MLOPS_ENDPOINT", ""))
    # The Lambda's idempotency table guards its event deliveries; a manual shift is not an
    # event delivery and never touches it, so the operator need not name it.
    env.setdefault("IDEMPOTENCY_TABLE_NAME", "not-used-by-manual-shifts")
    rollback = deployed_settings("rollback_controller", env, clients)

    def emit(version: Any, reason: str) -> list[Any]:
        # SageMaker emits the state-change event itself; EventBridge delivers it to the
        # deployment controller Lambda.
        return []

    return Backend("aws", _registry_of(rollback, clients),
                   endpoints(clients), rollback.endpoint_name, local.owner, emit,
                   lambda: rollback_controller(rollback, clients),
                   alarm_states=lambda endpoint: alarm_states(endpoint, clients),
                   cooldown=timedelta(minutes=rollback.cooldown_minutes))


def alarm_states(endpoint_name: str, clients: Clients = None) -> list[dict[str, Any]]:
    """The kit's CloudWatch alarms of an endpoint (one DescribeAlarms call)."""
    from mlops_kit.aws.clients import default_client
    from mlops_kit.core.alarms import load_definitions

    definitions = {d.alarm_name(endpoint_name): d for d in load_definitions()}
    found = {}
    cloudwatch = _client(clients, "cloudwatch") or default_client("cloudwatch")
    pages = cloudwatch.get_paginator("describe_alarms").paginate(
        AlarmNames=list(definitions))
    for page in pages:
        for alarm in page.get("MetricAlarms", []):
            found[alarm["AlarmName"]] = alarm
    return [{"name": name, "rollback": definition.rollback,
             "state": found.get(name, {}).get("StateValue", "MISSING"),
             "since": (found[name]["StateUpdatedTimestamp"].isoformat()
                       if name in found and found[name].get("StateUpdatedTimestamp") else None)}
            for name, definition in definitions.items()]
