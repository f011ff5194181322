"""ControlFunctions: the five Lambdas of the kit, their roles (least privilege, per function),
the EventBridge rules and schedules that drive them, on-failure destinations and the scoring
streams.

Each function's environment and IAM actions come from `mlops_kit.contract` (the same objects
the handlers parse their settings with): `FunctionContract.environment(...)` refuses a missing
required setting at synth, and `FunctionContract.grants()` says which actions each function
calls on which resource, which `_resources` maps to this stage's ARNs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from mlops_kit import contract
from mlops_kit.core.schedules import max_event_age

from ..config import StageConfig
from .artifact_store import ArtifactStore
from .bundling import function_code
from .notifications import Notifications
from .registry import ModelRegistry, Tables

# Pinned to the Powertools release the code is tested with (requirements.lock): the public SSM
# parameter per release resolves to that release's layer ARN in the deploying region, so the
# layer version cannot float between deploys. Change both together.
POWERTOOLS_VERSION = "3.37.0"
POWERTOOLS_LAYER_PARAMETER = f"/aws/service/powertools/python/x86_64/python3.12/{POWERTOOLS_VERSION}"

CONTROLLER_RETRIES = 2
"""Lambda's retries of a failed asynchronous invocation before the on-failure destination."""
CONTROLLER_MAX_EVENT_AGE = Duration.hours(6)
GROUND_TRUTH_PREFIX = "ground-truth"
"""Labels land under s3://<capture bucket>/ground-truth/<endpoint>/yyyy/mm/dd/hh/
(docs/configuration.md)."""


@dataclass(frozen=True)
class _Spec:
    name: str
    memory: int
    timeout: Duration
    requirements: str | None = None


class ServingRole(Construct):
    """Execution role of the SageMaker models the deployment controller creates: reads model
    artifacts and code from the artifact bucket, pulls the XGBoost image, writes data capture."""

    def __init__(self, scope: Construct, id: str, *, store: ArtifactStore) -> None:
        super().__init__(scope, id)
        self.role = iam.Role(self, "Role",
                             assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                             description="SageMaker models and endpoints of the kit")
        add = self.role.add_to_policy
        add(iam.PolicyStatement(sid="ReadArtifacts", actions=["s3:GetObject"],
                                resources=[f"{store.artifacts_arn_ref}/*"]))
        add(iam.PolicyStatement(sid="WriteCapture", actions=["s3:PutObject"],
                                resources=[f"{store.capture_arn_ref}/*"]))
        add(iam.PolicyStatement(sid="Key", actions=["kms:Decrypt", "kms:GenerateDataKey"],
                                resources=[store.key.key_arn]))
        add(iam.PolicyStatement(sid="EcrToken", actions=["ecr:GetAuthorizationToken"],
                                resources=["*"]))
        add(iam.PolicyStatement(
            sid="XGBoostImage", actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                                         "ecr:BatchCheckLayerAvailability"],
            resources=[f"arn:{Aws.PARTITION}:ecr:{Aws.REGION}:*:repository/sagemaker-xgboost"]))
        add(iam.PolicyStatement(
            sid="Logs", actions=["logs:CreateLogGroup", "logs:CreateLogStream",
                                 "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:/aws/sagemaker/Endpoints/*"]))
        add(iam.PolicyStatement(sid="Metrics", actions=["cloudwatch:PutMetricData"],
                                resources=["*"],
                                conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}}))


class ControlFunctions(Construct):
    """Props: the stage config, the stateful parts (store, tables, registry, notifications),
    the serving role and the path of functions/. Exposes `functions` and `roles` by name, the
    rules, the EventBridge DLQ and the controllers' on-failure queue."""

    def __init__(self, scope: Construct, id: str, *, cfg: StageConfig, functions_dir: Path,
                 requirements_dir: Path, store: ArtifactStore, tables: Tables,
                 registry: ModelRegistry, notifications: Notifications,
                 serving_role: iam.IRole) -> None:
        super().__init__(scope, id)
        self.cfg = cfg
        self.layer = lambda_.LayerVersion.from_layer_version_arn(
            self, "Powertools", ssm.StringParameter.value_for_string_parameter(
                self, POWERTOOLS_LAYER_PARAMETER))
        self._queues_and_streams(cfg, store)
        specs = [_Spec("deployment_controller", 512, Duration.minutes(10)),
                 _Spec("rollback_controller", 512, Duration.minutes(2)),
                 _Spec("drift_monitor", 1024, Duration.minutes(5), "drift_monitor.txt"),
                 _Spec("probe", 256, Duration.minutes(2))]
        if cfg.stream_scoring:
            specs.append(_Spec("stream_scorer", 256, Duration.minutes(1)))
        env = self._environments(cfg, store, tables, notifications, serving_role)

        self.functions: dict[str, lambda_.Function] = {}
        self.roles: dict[str, iam.Role] = {}
        for spec in specs:
            role = self._function(spec, cfg, functions_dir, requirements_dir, env[spec.name])
            store.grant_key_use(role)
            self._grant(spec.name, role, store, tables, registry, notifications, serving_role)

        self._rules(cfg)
        self._alarms(cfg, notifications)
        if cfg.stream_scoring:
            self._stream_source(store)

    def _queues_and_streams(self, cfg: StageConfig, store: ArtifactStore) -> None:
        self.dlq = sqs.Queue(self, "EventsDlq", encryption=sqs.QueueEncryption.SQS_MANAGED,
                             enforce_ssl=True, retention_period=Duration.days(14))
        self.failed_events = sqs.Queue(self, "FailedEvents",
                                       encryption=sqs.QueueEncryption.SQS_MANAGED,
                                       enforce_ssl=True, retention_period=Duration.days(14))
        self.output_stream: kinesis.Stream | None = None
        if cfg.stream_scoring:
            # Streams hold scoring traffic only (24 h): destroyed with the stack in every
            # stage, or they bill per stream-hour after `cdk destroy`.
            common = dict(encryption=kinesis.StreamEncryption.KMS, encryption_key=store.key,
                          stream_mode=kinesis.StreamMode.ON_DEMAND,
                          retention_period=Duration.hours(24),
                          removal_policy=RemovalPolicy.DESTROY)
            self.input_stream = kinesis.Stream(self, "ScoringInput", **common)
            self.output_stream = kinesis.Stream(self, "ScoringOutput", **common)

    def _function(self, spec: _Spec, cfg: StageConfig, functions_dir: Path,
                  requirements_dir: Path, environment: dict[str, str]) -> iam.Role:
        """One control Lambda with its own role and log group; returns the role."""
        name = spec.name
        ident = "".join(part.title() for part in name.split("_"))
        role = iam.Role(self, f"{ident}Role",
                        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                        description=f"mlops-kit {name} Lambda")
        log_group = logs.LogGroup(
            self, f"{ident}Logs", retention=_retention(cfg.log_retention_days),
            removal_policy=RemovalPolicy.RETAIN if cfg.retain else RemovalPolicy.DESTROY)
        reqs = requirements_dir / spec.requirements if spec.requirements else None
        asynchronous = {}
        if name in ("deployment_controller", "rollback_controller"):
            # After Lambda accepted the event, a function error gets CONTROLLER_RETRIES
            # retries and then lands here instead of being discarded; it alarms, and
            # `mlops events replay` delivers it again (docs/runbooks.md).
            asynchronous = dict(on_failure=destinations.SqsDestination(self.failed_events),
                                retry_attempts=CONTROLLER_RETRIES,
                                max_event_age=CONTROLLER_MAX_EVENT_AGE,
                                reserved_concurrent_executions=(
                                    cfg.controller_reserved_concurrency))
        self.functions[name] = lambda_.Function(
            self, ident, runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.X86_64, handler="handler.lambda_handler",
            code=function_code(functions_dir, name, reqs), role=role,
            memory_size=spec.memory, timeout=spec.timeout, layers=[self.layer],
            environment=environment, tracing=lambda_.Tracing.ACTIVE, log_group=log_group,
            description=f"mlops-kit {name} ({cfg.stage})", **asynchronous)
        log_group.grant_write(role)
        self.roles[name] = role
        return role

    # -- environment and permissions, from the contract --------------------------------------
    def _environments(self, cfg: StageConfig, store: ArtifactStore, tables: Tables,
                      notifications: Notifications, serving_role: iam.IRole
                      ) -> dict[str, dict[str, str]]:
        common = dict(endpoint_name=cfg.endpoint_name, model_group=cfg.model_group,
                      ledger_table=tables.ledger.table_name)
        fn = contract.function
        environments = {
            "deployment_controller": fn("deployment_controller").environment(
                **common, idempotency_table=tables.idempotency.table_name,
                execution_role_arn=serving_role.role_arn,
                capture_s3_uri=store.capture_s3_uri, capture_percent=cfg.capture_percent,
                capture_kms_key_id=store.key.key_arn, instance_type=cfg.instance_type,
                champion_instance_count=cfg.champion_instance_count,
                fallback_instance_count=cfg.fallback_instance_count,
                warm_fallbacks=cfg.warm_fallbacks),
            "rollback_controller": fn("rollback_controller").environment(
                **common, idempotency_table=tables.idempotency.table_name,
                notification_topic_arn=notifications.topic.topic_arn,
                cooldown_minutes=cfg.rollback_cooldown_minutes),
            "drift_monitor": fn("drift_monitor").environment(
                **common, capture_s3_uri=store.capture_s3_uri,
                window_minutes=cfg.drift_window_minutes,
                schedule_minutes=cfg.drift_schedule_minutes,
                ground_truth_s3_uri=f"s3://{store.capture.bucket_name}/{GROUND_TRUTH_PREFIX}",
                ground_truth_lookback_hours=cfg.ground_truth_lookback_hours),
            "probe": fn("probe").environment(
                **common, max_latency_ms=cfg.probe_max_latency_ms,
                schedule_minutes=cfg.probe_schedule_minutes),
        }
        if cfg.stream_scoring:
            environments["stream_scorer"] = fn("stream_scorer").environment(
                endpoint_name=cfg.endpoint_name,
                output_stream_name=self.output_stream.stream_name,
                feature_order=cfg.feature_order or None)
        return environments

    def _resources(self, key: str, store: ArtifactStore, tables: Tables,
                   registry: ModelRegistry, notifications: Notifications,
                   serving_role: iam.IRole) -> list[str]:
        arn = f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}"
        endpoint = self.cfg.endpoint_name.lower()  # SageMaker lower-cases names in ARNs
        c = contract
        table = {
            c.ENDPOINT: lambda: [f"{arn}:endpoint/{endpoint}"],
            c.ENDPOINT_CONFIGS: lambda: [f"{arn}:endpoint-config/{endpoint}-*"],
            c.MODELS: lambda: [f"{arn}:model/{self.cfg.model_group.lower()}-v*"],
            c.MODEL_GROUP: lambda: [registry.group_arn],
            c.MODEL_PACKAGES: lambda: [registry.packages_arn],
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

    def _grant(self, name: str, role: iam.Role, *parts) -> None:
        for key, actions in sorted(contract.function(name).grants().items()):
            sid = "".join(word.title() for word in key.replace("*", "any").split("-"))
            conditions = None
            if key == contract.SERVING_ROLE:
                conditions = {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
            role.add_to_policy(iam.PolicyStatement(
                sid=sid, actions=list(actions), resources=self._resources(key, *parts),
                conditions=conditions))

    # -- events -------------------------------------------------------------------------------
    def _target(self, name: str, max_age: Duration = CONTROLLER_MAX_EVENT_AGE,
                retries: int = 8) -> targets.LambdaFunction:
        return targets.LambdaFunction(self.functions[name], dead_letter_queue=self.dlq,
                                      retry_attempts=retries, max_event_age=max_age)

    def _rules(self, cfg: StageConfig) -> None:
        self.approval_rule = events.Rule(
            self, "ModelApproved", description="Approved model package → deployment controller",
            event_pattern=_pattern(contract.approval_event_pattern(cfg.model_group)),
            targets=[self._target("deployment_controller")])
        self.alarm_rule = events.Rule(
            self, "KitAlarm", description="The kit's alarms going into ALARM → rollback controller",
            event_pattern=_pattern(contract.alarm_event_pattern(cfg.endpoint_name)),
            targets=[self._target("rollback_controller")])
        # A scheduled run is superseded by the next one: EventBridge gives up on it after the
        # age the function itself refuses (mlops_kit.core.schedules).
        for ident, name, minutes, what in (
                ("DriftSchedule", "drift_monitor", cfg.drift_schedule_minutes, "Drift monitor"),
                ("ProbeSchedule", "probe", cfg.probe_schedule_minutes, "Synthetic probe")):
            age = Duration.minutes(int(max_event_age(minutes).total_seconds() // 60))
            events.Rule(self, ident, description=f"{what} schedule",
                        schedule=events.Schedule.rate(Duration.minutes(minutes)),
                        targets=[self._target(name, max_age=age, retries=2)])

    def _alarms(self, cfg: StageConfig, notifications: Notifications) -> None:
        """On-call hears of a controller event that failed for good, of events EventBridge
        could not deliver, and of a monitor that keeps failing (no monitor, no rollback)."""
        action = cw_actions.SnsAction(notifications.topic)
        queues = (("FailedEventsAlarm", self.failed_events,
                   "a controller event failed after Lambda's retries: replay it "
                   "(mlops events replay, docs/runbooks.md)"),
                  ("EventsDlqAlarm", self.dlq, "EventBridge could not deliver an event"))
        self.operational_alarms: dict[str, cw.Alarm] = {}
        for ident, queue, why in queues:
            alarm = cw.Alarm(
                self, ident, alarm_name=f"mlops-kit-{cfg.stage}-{ident.removesuffix('Alarm')}",
                alarm_description=why,
                metric=queue.metric_approximate_number_of_messages_visible(
                    period=Duration.minutes(5), statistic="Maximum"),
                threshold=1, evaluation_periods=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING)
            alarm.add_alarm_action(action)
            self.operational_alarms[ident] = alarm
        for ident, name, minutes in (("DriftMonitorErrors", "drift_monitor",
                                      cfg.drift_schedule_minutes),
                                     ("ProbeErrors", "probe", cfg.probe_schedule_minutes)):
            alarm = cw.Alarm(
                self, f"{ident}Alarm", alarm_name=f"mlops-kit-{cfg.stage}-{ident}",
                alarm_description=f"{name} failed three runs in a row: drift and probes are "
                                  f"blind, automatic rollback cannot see an incident",
                metric=self.functions[name].metric_errors(period=Duration.minutes(minutes),
                                                          statistic="Sum"),
                threshold=1, evaluation_periods=3, datapoints_to_alarm=3,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING)
            alarm.add_alarm_action(action)
            self.operational_alarms[ident] = alarm

    def _stream_source(self, store: ArtifactStore) -> None:
        fn = self.functions["stream_scorer"]
        self.scoring_failures = sqs.Queue(self, "ScoringFailures",
                                          encryption=sqs.QueueEncryption.SQS_MANAGED,
                                          enforce_ssl=True, retention_period=Duration.days(14))
        fn.add_event_source(sources.KinesisEventSource(
            self.input_stream, starting_position=lambda_.StartingPosition.LATEST,
            batch_size=100, bisect_batch_on_error=True, retry_attempts=3,
            report_batch_item_failures=True, max_record_age=Duration.hours(1),
            on_failure=sources.SqsDlq(self.scoring_failures)))


def _pattern(raw: dict) -> events.EventPattern:
    return events.EventPattern(source=raw["source"], detail_type=raw["detail-type"],
                               detail=raw["detail"])


def _retention(days: int) -> logs.RetentionDays:
    """The shortest CloudWatch Logs retention of at least `days`."""
    R = logs.RetentionDays
    steps = [(1, R.ONE_DAY), (3, R.THREE_DAYS), (5, R.FIVE_DAYS), (7, R.ONE_WEEK),
             (14, R.TWO_WEEKS), (30, R.ONE_MONTH), (60, R.TWO_MONTHS), (90, R.THREE_MONTHS),
             (180, R.SIX_MONTHS), (365, R.ONE_YEAR), (731, R.TWO_YEARS), (1827, R.FIVE_YEARS),
             (3653, R.TEN_YEARS)]
    return next((r for d, r in steps if d >= days), R.TEN_YEARS)
