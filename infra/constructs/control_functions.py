"""ControlFunctions: the five Lambdas of the kit, their roles (least privilege, one statement per
adapter), the EventBridge rules and schedules that drive them, DLQs and the scoring streams.

IAM actions mirror the IAM_ACTIONS constants the runtime code declares (infra never imports
runtime code; tests/infra/test_iam_matches_code.py compares the synthesized roles with them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

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

# The runtime code's constants, by adapter (see the module docstring).
REGISTRY_ACTIONS = ("sagemaker:DescribeModelPackageGroup", "sagemaker:CreateModelPackageGroup",
                    "sagemaker:AddTags", "sagemaker:CreateModelPackage",
                    "sagemaker:DescribeModelPackage", "sagemaker:ListModelPackages",
                    "sagemaker:UpdateModelPackage")
ENDPOINT_ACTIONS = ("sagemaker:DescribeEndpoint", "sagemaker:DescribeEndpointConfig",
                    "sagemaker:CreateModel", "sagemaker:CreateEndpointConfig",
                    "sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint",
                    "sagemaker:UpdateEndpointWeightsAndCapacities")
HEALTH_ACTIONS = ("cloudwatch:GetMetricData",)
MONITORING_S3_ACTIONS = ("s3:GetObject", "s3:ListBucket")
MONITORING_SAGEMAKER_ACTIONS = ("sagemaker:DescribeModelPackage",)
INVOKE_ACTIONS = ("sagemaker:InvokeEndpoint",)


def _read_only(actions: tuple[str, ...]) -> list[str]:
    """The monitoring Lambdas only read the registry and the endpoint."""
    verbs = ("Describe", "List", "Get", "Query")
    return [a for a in actions if a.split(":", 1)[1].startswith(verbs)]


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
    the serving role and the path of functions/. Exposes `functions` by name, the rules and
    the DLQ."""

    def __init__(self, scope: Construct, id: str, *, cfg: StageConfig, functions_dir: Path,
                 requirements_dir: Path, store: ArtifactStore, tables: Tables,
                 registry: ModelRegistry, notifications: Notifications,
                 serving_role: iam.IRole) -> None:
        super().__init__(scope, id)
        self.cfg = cfg
        retention = _retention(cfg.log_retention_days)
        removal = RemovalPolicy.RETAIN if cfg.retain else RemovalPolicy.DESTROY
        arn = f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}"
        endpoint = cfg.endpoint_name.lower()
        self._endpoint_arn = f"{arn}:endpoint/{endpoint}"
        self._config_arns = [f"{arn}:endpoint-config/{endpoint}-*"]
        self._model_arns = [f"{arn}:model/{cfg.model_group.lower()}-v*"]
        self._registry = registry

        self.layer = lambda_.LayerVersion.from_layer_version_arn(
            self, "Powertools", ssm.StringParameter.value_for_string_parameter(
                self, POWERTOOLS_LAYER_PARAMETER))
        self.dlq = sqs.Queue(self, "EventsDlq", encryption=sqs.QueueEncryption.SQS_MANAGED,
                             enforce_ssl=True, retention_period=Duration.days(14))

        common_env = {"ENDPOINT_NAME": cfg.endpoint_name, "MLOPS_MODEL_GROUP": cfg.model_group,
                      "LEDGER_TABLE_NAME": tables.ledger.table_name,
                      "POWERTOOLS_LOG_LEVEL": "INFO"}
        specs = {
            "deployment_controller": _Spec("deployment_controller", 512, Duration.minutes(10)),
            "rollback_controller": _Spec("rollback_controller", 512, Duration.minutes(2)),
            "drift_monitor": _Spec("drift_monitor", 1024, Duration.minutes(5),
                                   "drift_monitor.txt"),
            "probe": _Spec("probe", 256, Duration.minutes(2)),
            "stream_scorer": _Spec("stream_scorer", 256, Duration.minutes(1)),
        }
        env = {
            "deployment_controller": {
                **common_env, "IDEMPOTENCY_TABLE_NAME": tables.idempotency.table_name,
                "SAGEMAKER_EXECUTION_ROLE_ARN": serving_role.role_arn,
                "ENDPOINT_INSTANCE_TYPE": cfg.instance_type,
                "CHAMPION_INSTANCE_COUNT": str(cfg.champion_instance_count),
                "FALLBACK_INSTANCE_COUNT": str(cfg.fallback_instance_count),
                "WARM_FALLBACKS": str(cfg.warm_fallbacks)},
            "rollback_controller": {
                **common_env, "IDEMPOTENCY_TABLE_NAME": tables.idempotency.table_name,
                "ROLLBACK_COOLDOWN_MINUTES": str(cfg.rollback_cooldown_minutes),
                "NOTIFICATION_TOPIC_ARN": notifications.topic.topic_arn},
            "drift_monitor": {**common_env, "CAPTURE_S3_URI": store.capture_s3_uri,
                              "WINDOW_MINUTES": str(cfg.drift_window_minutes)},
            "probe": {**common_env, "PROBE_MAX_LATENCY_MS": str(cfg.probe_max_latency_ms)},
            "stream_scorer": {"ENDPOINT_NAME": cfg.endpoint_name,
                              "POWERTOOLS_SERVICE_NAME": "stream-scorer",
                              "POWERTOOLS_METRICS_NAMESPACE": "MLOpsKit/Scoring"},
        }
        if cfg.feature_order:
            env["stream_scorer"]["FEATURE_ORDER"] = ",".join(cfg.feature_order)
        if not cfg.stream_scoring:
            specs.pop("stream_scorer")

        self.functions: dict[str, lambda_.Function] = {}
        self.roles: dict[str, iam.Role] = {}
        for name, spec in specs.items():
            ident = "".join(part.title() for part in name.split("_"))
            role = iam.Role(self, f"{ident}Role",
                            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                            description=f"mlops-kit {name} Lambda")
            log_group = logs.LogGroup(self, f"{ident}Logs", retention=retention,
                                      removal_policy=removal)
            reqs = requirements_dir / spec.requirements if spec.requirements else None
            fn = lambda_.Function(
                self, ident, runtime=lambda_.Runtime.PYTHON_3_12,
                architecture=lambda_.Architecture.X86_64, handler="handler.lambda_handler",
                code=function_code(functions_dir, name, reqs), role=role,
                memory_size=spec.memory, timeout=spec.timeout, layers=[self.layer],
                environment=env[name], tracing=lambda_.Tracing.ACTIVE, log_group=log_group,
                reserved_concurrent_executions=(
                    1 if name in ("deployment_controller", "rollback_controller") else None),
                description=f"mlops-kit {name} ({cfg.stage})")
            log_group.grant_write(role)
            store.grant_key_use(role)
            self.functions[name] = fn
            self.roles[name] = role

        self._grant(tables, store, notifications, serving_role)
        self._rules(cfg)
        if cfg.stream_scoring:
            self._streams(store)

    # -- permissions --------------------------------------------------------------------------
    def _sagemaker(self, role: iam.Role, sid: str, actions, resources) -> None:
        role.add_to_policy(iam.PolicyStatement(sid=sid, actions=sorted(set(actions)),
                                               resources=resources))

    def _grant(self, tables: Tables, store: ArtifactStore, notifications: Notifications,
               serving_role: iam.IRole) -> None:
        registry = self._registry.package_resources()
        endpoint_resources = [self._endpoint_arn, *self._config_arns, *self._model_arns]
        for name in ("deployment_controller", "rollback_controller"):
            role = self.roles[name]
            tables.grant_ledger(role)
            tables.grant_idempotency(role)
            self._sagemaker(role, "Registry", REGISTRY_ACTIONS, registry)
            self._sagemaker(role, "Endpoint", ENDPOINT_ACTIONS, endpoint_resources)
            role.add_to_policy(iam.PolicyStatement(
                sid="PassServingRole", actions=["iam:PassRole"],
                resources=[serving_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}))
        rollback = self.roles["rollback_controller"]
        rollback.add_to_policy(iam.PolicyStatement(sid="ProbeResults",
                                                   actions=list(HEALTH_ACTIONS),
                                                   resources=["*"]))
        notifications.grant_publish(rollback)

        for name in ("drift_monitor", "probe"):
            role = self.roles[name]
            tables.grant_ledger_read(role)
            self._sagemaker(role, "Registry",
                            _read_only(REGISTRY_ACTIONS) + list(MONITORING_SAGEMAKER_ACTIONS),
                            registry)
            self._sagemaker(role, "Endpoint", _read_only(ENDPOINT_ACTIONS),
                            [self._endpoint_arn, *self._config_arns])
            role.add_to_policy(iam.PolicyStatement(
                sid="ReadBaselines", actions=["s3:GetObject"],
                resources=[f"{store.artifacts_arn_ref}/*"]
                + ([f"{store.capture_arn_ref}/*"] if name == "drift_monitor" else [])))
            role.add_to_policy(iam.PolicyStatement(
                sid="ListBuckets", actions=["s3:ListBucket"],
                resources=[store.artifacts_arn_ref]
                + ([store.capture_arn_ref] if name == "drift_monitor" else [])))
        # The drift monitor republishes the champion's SageMaker 5XX and latency at endpoint
        # level (GetMetricData supports no resource scoping).
        self.roles["drift_monitor"].add_to_policy(iam.PolicyStatement(
            sid="ChampionServiceMetrics", actions=list(HEALTH_ACTIONS), resources=["*"]))
        self._sagemaker(self.roles["probe"], "Invoke", INVOKE_ACTIONS, [self._endpoint_arn])
        if "stream_scorer" in self.roles:
            self._sagemaker(self.roles["stream_scorer"], "Invoke", INVOKE_ACTIONS,
                            [self._endpoint_arn])

    # -- events -------------------------------------------------------------------------------
    def _target(self, name: str) -> targets.LambdaFunction:
        return targets.LambdaFunction(self.functions[name], dead_letter_queue=self.dlq,
                                      retry_attempts=8, max_event_age=Duration.hours(6))

    def _rules(self, cfg: StageConfig) -> None:
        self.approval_rule = events.Rule(
            self, "ModelApproved", description="Approved model package → deployment controller",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"], detail_type=["SageMaker Model Package State Change"],
                detail={"ModelPackageGroupName": [cfg.model_group],
                        "ModelApprovalStatus": ["Approved"]}),
            targets=[self._target("deployment_controller")])
        self.alarm_rule = events.Rule(
            self, "KitAlarm", description="The kit's alarms going into ALARM → rollback controller",
            event_pattern=events.EventPattern(
                source=["aws.cloudwatch"], detail_type=["CloudWatch Alarm State Change"],
                detail={"alarmName": [{"prefix": f"{cfg.endpoint_name}-"}],
                        "state": {"value": ["ALARM"]}}),
            targets=[self._target("rollback_controller")])
        events.Rule(self, "DriftSchedule", description="Drift monitor schedule",
                    schedule=events.Schedule.rate(Duration.minutes(cfg.drift_schedule_minutes)),
                    targets=[self._target("drift_monitor")])
        events.Rule(self, "ProbeSchedule", description="Synthetic probe schedule",
                    schedule=events.Schedule.rate(Duration.minutes(cfg.probe_schedule_minutes)),
                    targets=[self._target("probe")])

    def _streams(self, store: ArtifactStore) -> None:
        fn = self.functions["stream_scorer"]
        common = dict(encryption=kinesis.StreamEncryption.KMS, encryption_key=store.key,
                      stream_mode=kinesis.StreamMode.ON_DEMAND,
                      retention_period=Duration.hours(24))
        self.input_stream = kinesis.Stream(self, "ScoringInput", **common)
        self.output_stream = kinesis.Stream(self, "ScoringOutput", **common)
        fn.add_environment("OUTPUT_STREAM_NAME", self.output_stream.stream_name)
        self.roles["stream_scorer"].add_to_policy(iam.PolicyStatement(
            sid="Output", actions=["kinesis:PutRecords"],
            resources=[self.output_stream.stream_arn]))
        self.scoring_failures = sqs.Queue(self, "ScoringFailures",
                                          encryption=sqs.QueueEncryption.SQS_MANAGED,
                                          enforce_ssl=True, retention_period=Duration.days(14))
        fn.add_event_source(sources.KinesisEventSource(
            self.input_stream, starting_position=lambda_.StartingPosition.LATEST,
            batch_size=100, bisect_batch_on_error=True, retry_attempts=3,
            report_batch_item_failures=True, max_record_age=Duration.hours(1),
            on_failure=sources.SqsDlq(self.scoring_failures)))


def _retention(days: int) -> logs.RetentionDays:
    """The shortest CloudWatch Logs retention of at least `days`."""
    R = logs.RetentionDays
    steps = [(1, R.ONE_DAY), (3, R.THREE_DAYS), (5, R.FIVE_DAYS), (7, R.ONE_WEEK),
             (14, R.TWO_WEEKS), (30, R.ONE_MONTH), (60, R.TWO_MONTHS), (90, R.THREE_MONTHS),
             (180, R.SIX_MONTHS), (365, R.ONE_YEAR), (731, R.TWO_YEARS), (1827, R.FIVE_YEARS),
             (3653, R.TEN_YEARS)]
    return next((r for d, r in steps if d >= days), R.TEN_YEARS)
