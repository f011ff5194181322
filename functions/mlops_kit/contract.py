"""The contract between the CDK app and the Lambdas it deploys, stated once.

Per function: the environment variables it reads (name, type, default, required), the AWS
actions each of its code paths calls and on which resource, and the metrics it publishes.
Both sides are built from it: `infra/constructs/control_functions.py` renders each function's
environment with `FunctionContract.environment(...)` and grants `FunctionContract.grants()`;
the handlers parse their settings with `FunctionContract.settings()` (typed, frozen, failing
at cold start with the name of what is missing or malformed). The deployed-twin tests
(tests/deployed/) check the synthesized templates against it and run every path under exactly
the role the template grants.

In a fleet, one function serves every model of its environment: the variables marked
`per_model` come from the bundled routes file per model (`mlops_kit.fleet.routes`), the rest
from the function's environment. The vocabulary (EnvVar, CodePath, FunctionContract) is
`contract_model`'s, the typed settings `function_settings`'.

Standard library only: infra imports this module, and every Lambda bundle carries it. The
metrics the monitoring Lambdas publish come from `core/metric_catalogue.py` (standard library
only too), where the publishers and the alarm definitions take them from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .contract_model import (Access, CodePath, ContractError, EnvVar, FunctionContract,  # noqa: F401
                             Metric, SettingsError)
from .core import metric_catalogue
from .core.promotion import PROMOTED
from .function_settings import (DeploymentControllerSettings, DriftMonitorSettings,  # noqa: F401
                                ProbeSettings, RollbackControllerSettings,
                                StreamScorerSettings)

# -- resources a grant can name (infra maps each to ARNs of the stage) --------------------
ENDPOINT = "endpoint"
"""The stage's SageMaker endpoint."""
ENDPOINT_CONFIGS = "endpoint-configs"
"""Endpoint configs the deployment controller creates (`<endpoint>-*`)."""
MODELS = "models"
"""SageMaker models the deployment controller creates (`<group>-v*`)."""
MODEL_GROUP = "model-group"
MODEL_PACKAGES = "model-packages"
LEDGER_TABLE = "ledger-table"
IDEMPOTENCY_TABLE = "idempotency-table"
ARTIFACT_BUCKET = "artifact-bucket"
ARTIFACT_OBJECTS = "artifact-objects"
CAPTURE_BUCKET = "capture-bucket"
CAPTURE_OBJECTS = "capture-objects"
"""Data capture (`<bucket>/capture/...`) and ground truth (`<bucket>/ground-truth/...`)."""
NOTIFICATION_TOPIC = "notification-topic"
SERVING_ROLE = "serving-role"
REGISTRY_ROLE = "registry-role"
"""The role in the registry account an environment's controllers assume (a fleet whose
registry is another account's; none otherwise)."""
REGISTRY_LEDGER_TABLE = "registry-ledger-table"
"""The registry's ledger of versions and promotions, read directly by a fleet environment in
the registry's own account (another account reads it through `REGISTRY_ROLE`; none in a
single stage, whose ledger holds both)."""
OUTPUT_STREAM = "output-stream"
ANY = "*"
"""Actions that support no resource scoping (cloudwatch:GetMetricData)."""

CONTROL_NAMESPACE = "MLOpsKit/Control"
MONITORING_NAMESPACE = metric_catalogue.NAMESPACE
SCORING_NAMESPACE = "MLOpsKit/Scoring"


def _published_by(publisher: str) -> tuple[Metric, ...]:
    """What the metric catalogue says `publisher` publishes: one Metric per dimension set."""
    return tuple(Metric(spec.namespace, spec.name, dimensions)
                 for spec in metric_catalogue.published_by(publisher)
                 for dimensions in spec.dimension_sets)



# -- variables shared by several functions -------------------------------------------------
_ENDPOINT = EnvVar("ENDPOINT_NAME", "endpoint_name", doc="the model's SageMaker endpoint",
                   per_model=True)
_GROUP = EnvVar("MLOPS_MODEL_GROUP", "model_group", per_model=True,
                doc="the model package group")
_LEDGER = EnvVar("LEDGER_TABLE_NAME", "ledger_table", doc="the deployment ledger table")
_IDEMPOTENCY = EnvVar("IDEMPOTENCY_TABLE_NAME", "idempotency_table",
                      doc="Powertools idempotency table")
_CAPTURE = EnvVar("DATA_CAPTURE_S3_URI", "capture_s3_uri",
                  doc="where the endpoint writes data capture and the drift monitor reads it")
_SCHEDULE = EnvVar("SCHEDULE_MINUTES", "schedule_minutes", int, per_model=True,
                   doc="the rate of the function's EventBridge schedule")

_REGISTRY = (
    EnvVar("MLOPS_REGISTRY_ROLE_ARN", "registry_role_arn", required=False, default="",
           doc="the registry account's role to assume for versions; unset: this account's"),
    EnvVar("MLOPS_REGISTRY_LEDGER_TABLE", "registry_ledger_table", required=False, default="",
           doc="the registry account's ledger of versions and promotions; unset: "
               "LEDGER_TABLE_NAME holds them too"))

# -- what the code paths call -----------------------------------------------------------
_READ_LINEUP = CodePath("read the endpoint's lineup", (
    Access(("sagemaker:DescribeEndpoint",), ENDPOINT),
    Access(("sagemaker:DescribeEndpointConfig",), ENDPOINT_CONFIGS)))
_READ_VERSIONS = CodePath("read registry versions", (
    Access(("sagemaker:DescribeModelPackageGroup",), MODEL_GROUP),
    Access(("sagemaker:DescribeModelPackage", "sagemaker:ListModelPackages"), MODEL_PACKAGES),
    # AWS's authorization data lists model-package as ListModelPackages' resource type; the
    # group is granted too, as the request names only the group.
    Access(("sagemaker:ListModelPackages",), MODEL_GROUP)))
_LEDGER_READ = CodePath("read the deployment ledger", (
    Access(("dynamodb:GetItem", "dynamodb:Query"), LEDGER_TABLE),))
_LEDGER_WRITE = CodePath("record deployments, claims and status in the ledger (transactions "
                         "are authorised per item: PutItem/UpdateItem)", (
    Access(("dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"),
           LEDGER_TABLE),))
_IDEMPOTENT = CodePath("Powertools idempotency (DynamoDBPersistenceLayer)", (
    Access(("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
            "dynamodb:DeleteItem"), IDEMPOTENCY_TABLE),))
_REGISTRY_ACCOUNT = CodePath("read the registry account (versions, promotions) via its role", (
    Access(("sts:AssumeRole",), REGISTRY_ROLE),))
_REGISTRY_LEDGER_READ = CodePath("read the registry's ledger of versions and promotions in "
                                 "this account", (
    Access(("dynamodb:GetItem", "dynamodb:Query"), REGISTRY_LEDGER_TABLE),))
_BASELINES = CodePath("read the champion's baseline and evaluation", (
    Access(("sagemaker:DescribeModelPackage",), MODEL_PACKAGES),
    Access(("s3:GetObject",), ARTIFACT_OBJECTS)))

FUNCTIONS: dict[str, FunctionContract] = {c.name: c for c in (
    FunctionContract(
        "deployment_controller", "deployment-controller",
        env=(_ENDPOINT, _GROUP, _LEDGER, *_REGISTRY, _IDEMPOTENCY,
             EnvVar("SAGEMAKER_EXECUTION_ROLE_ARN", "execution_role_arn",
                    doc="the role the SageMaker models run as"),
             _CAPTURE,
             EnvVar("DATA_CAPTURE_SAMPLING_PERCENT", "capture_percent", int, required=True,
                    per_model=True, doc="share of requests captured (capture_percent)"),
             EnvVar("DATA_CAPTURE_KMS_KEY_ID", "capture_kms_key_id", required=False,
                    default="", doc="KMS key for capture objects"),
             EnvVar("ENDPOINT_INSTANCE_TYPE", "instance_type", per_model=True),
             EnvVar("CHAMPION_INSTANCE_COUNT", "champion_instance_count", int, per_model=True),
             EnvVar("FALLBACK_INSTANCE_COUNT", "fallback_instance_count", int, per_model=True),
             EnvVar("WARM_FALLBACKS", "warm_fallbacks", int, per_model=True),
             EnvVar("MLOPS_ENVIRONMENT", "environment", required=False, default="",
                    doc="the fleet environment served: only promotions to it deploy; unset "
                        "(a single stage): approvals deploy")),
        paths=(
            _IDEMPOTENT, _READ_VERSIONS, _REGISTRY_ACCOUNT, _REGISTRY_LEDGER_READ, _LEDGER_WRITE,
            _READ_LINEUP,
            CodePath("create the version's model and the endpoint config, create or update "
                     "the endpoint", (
                Access(("sagemaker:CreateModel",), MODELS),
                Access(("iam:PassRole",), SERVING_ROLE),
                # CreateEndpoint and UpdateEndpoint are authorised on the config they name too.
                Access(("sagemaker:CreateEndpointConfig", "sagemaker:CreateEndpoint",
                        "sagemaker:UpdateEndpoint"), ENDPOINT_CONFIGS),
                Access(("sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint",
                        "sagemaker:UpdateEndpointWeightsAndCapacities"), ENDPOINT))),
        ),
        metrics=(Metric(CONTROL_NAMESPACE, "InvalidEvents", ("service",)),
                 Metric(CONTROL_NAMESPACE, "Promotion_*", ("service",))),
        settings_type=DeploymentControllerSettings),
    FunctionContract(
        "rollback_controller", "rollback-controller",
        env=(_ENDPOINT, _GROUP, _LEDGER, *_REGISTRY, _IDEMPOTENCY,
             EnvVar("NOTIFICATION_TOPIC_ARN", "notification_topic_arn", required=False,
                    default="", doc="SNS topic on-call subscribes to"),
             EnvVar("ROLLBACK_COOLDOWN_MINUTES", "cooldown_minutes", int, required=False,
                    default=15, per_model=True)),
        paths=(
            _IDEMPOTENT, _READ_VERSIONS, _REGISTRY_ACCOUNT, _REGISTRY_LEDGER_READ, _LEDGER_WRITE,
            _READ_LINEUP,
            CodePath("read the probes' verdicts per variant", (
                Access(("cloudwatch:GetMetricData",), ANY),)),
            CodePath("shift traffic to the warm fallback (weights only, no new fleet)", (
                Access(("sagemaker:UpdateEndpointWeightsAndCapacities",), ENDPOINT),)),
            CodePath("notify on-call", (Access(("sns:Publish",), NOTIFICATION_TOPIC),)),
        ),
        metrics=(Metric(CONTROL_NAMESPACE, "Rollback_*", ("service",)),),
        settings_type=RollbackControllerSettings),
    FunctionContract(
        "drift_monitor", "drift-monitor",
        env=(_ENDPOINT, _GROUP, _LEDGER, *_REGISTRY, _CAPTURE,
             EnvVar("WINDOW_MINUTES", "window_minutes", int, required=False, default=10,
                    per_model=True),
             _SCHEDULE,
             EnvVar("GROUND_TRUTH_S3_URI", "ground_truth_s3_uri", required=False, default="",
                    doc="where labels land (docs/configuration.md); unset: no AUPR"),
             EnvVar("GROUND_TRUTH_LOOKBACK_HOURS", "ground_truth_lookback_hours", int,
                    required=False, default=6,
                    per_model=True,
                    doc="how far back captured scores are kept for labels to join")),
        paths=(
            _READ_LINEUP, _BASELINES, _REGISTRY_ACCOUNT, _REGISTRY_LEDGER_READ, _LEDGER_READ,
            CodePath("read data capture and ground truth of the window", (
                Access(("s3:ListBucket",), CAPTURE_BUCKET),
                Access(("s3:GetObject",), CAPTURE_OBJECTS))),
            CodePath("read SageMaker's per-minute metrics (the champion's 5XX and latency, "
                     "every variant's invocations)", (
                Access(("cloudwatch:GetMetricData",), ANY),)),
        ),
        metrics=_published_by(metric_catalogue.DRIFT_MONITOR),
        settings_type=DriftMonitorSettings),
    FunctionContract(
        "probe", "probe",
        env=(_ENDPOINT, _GROUP, _LEDGER, *_REGISTRY,
             EnvVar("PROBE_MAX_LATENCY_MS", "max_latency_ms", int, required=False,
                    default=1000, per_model=True),
             _SCHEDULE),
        paths=(
            _READ_LINEUP, _BASELINES, _REGISTRY_ACCOUNT, _REGISTRY_LEDGER_READ, _LEDGER_READ,
            CodePath("invoke every variant with baseline rows", (
                Access(("sagemaker:InvokeEndpoint",), ENDPOINT),)),
        ),
        metrics=_published_by(metric_catalogue.PROBE),
        settings_type=ProbeSettings),
    FunctionContract(
        "stream_scorer", "stream-scorer",
        env=(_ENDPOINT,
             EnvVar("OUTPUT_STREAM_NAME", "output_stream_name", required=False, default=""),
             EnvVar("OUTPUT_DELIVERY_STREAM_NAME", "output_delivery_stream_name",
                    required=False, default=""),
             EnvVar("FEATURE_ORDER", "feature_order", tuple, required=False, default=(),
                    doc="feature names in the model's order; needed for JSON records"),
             EnvVar("RECORD_ID_FIELD", "record_id_field", required=False, default="id"),
             # The sample schema's (pipelines/steps/schema.py FRAUD_SAMPLE_SCHEMA; a test holds
             # them equal): the one id/label rule of inference.RowReader, in the Lambda.
             EnvVar("ID_COLUMNS", "id_columns", tuple, required=False,
                    default=("transaction_id",), doc="the data's id columns: passed through"),
             EnvVar("LABEL_COLUMN", "label_column", required=False, default="is_fraud",
                    doc="the data's label: ignored in a record"),
             EnvVar("DATA_COLUMNS", "data_columns", tuple, required=False, default=(),
                    doc="the data's column order when it is not ids, features, label")),
        paths=(
            CodePath("score a record", (Access(("sagemaker:InvokeEndpoint",), ENDPOINT),)),
            CodePath("write the scores to the output stream", (
                Access(("kinesis:PutRecords",), OUTPUT_STREAM),)),
        ),
        metrics=(Metric(SCORING_NAMESPACE, "*", ("service",)),),
        settings_type=StreamScorerSettings),
)}

PLATFORM_ACTIONS = {
    "logs:CreateLogStream": "the function's own log group",
    "logs:PutLogEvents": "the function's own log group",
    "xray:PutTraceSegments": "active tracing (Tracer)",
    "xray:PutTelemetryRecords": "active tracing (Tracer)",
    "kms:Decrypt": "the stage key encrypts tables, buckets, the topic and the streams",
    "kms:GenerateDataKey": "the stage key encrypts tables, buckets, the topic and the streams",
    "sqs:SendMessage": "the on-failure destination of asynchronous invocations",
}
"""Granted for the Lambda platform, not called by the function's code: each with its reason.
The Kinesis event source mapping's read actions are listed by `EVENT_SOURCE_ACTIONS`."""

EVENT_SOURCE_ACTIONS = {
    action: "the Kinesis event source mapping reads the input stream as the function's role"
    for action in ("kinesis:DescribeStream", "kinesis:DescribeStreamSummary",
                   "kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:ListShards",
                   "kinesis:ListStreams", "kinesis:SubscribeToShard",
                   "kinesis:DescribeStreamConsumer", "sqs:GetQueueAttributes",
                   "sqs:GetQueueUrl")}


def approval_event_pattern(model_group: str) -> dict[str, Any]:
    """The EventBridge pattern of the deployment controller's rule: a change of the approval
    status to Approved in this group (a version created as Approved carries no updated-field
    list), never the kit's own metadata write-backs. `core.approvals.deploy_decision` applies
    the same rule to what still arrives (tests/deployed/test_event_rules.py holds both to it)."""
    return {"source": ["aws.sagemaker"], "detail-type": ["SageMaker Model Package State Change"],
            "detail": {"ModelPackageGroupName": [model_group],
                       "ModelApprovalStatus": ["Approved"],
                       "$or": [{"UpdatedModelPackageFields": ["ModelApprovalStatus"]},
                               {"UpdatedModelPackageFields": [{"exists": False}]}]}}


def promotion_event_pattern(environment: str) -> dict[str, Any]:
    """The pattern of a fleet environment's deployment controller rule: a version's
    `ModelLifeCycle` updated to this environment, approved — whichever model (the function
    routes by group, `mlops_kit.fleet.routes`), so the pattern does not grow with the fleet.
    The registry account forwards the same pattern to the environment's bus.
    `core.approvals.deploy_decision` applies the same rule to what arrives."""
    return {"source": ["aws.sagemaker"], "detail-type": ["SageMaker Model Package State Change"],
            "detail": {"ModelLifeCycle": {"Stage": [environment], "StageStatus": [PROMOTED]},
                       "UpdatedModelPackageFields": ["ModelLifeCycle"]}}


ALARM_DEFINITIONS = Path(__file__).parent / "core" / "alarm_definitions.json"


def _rollback_alarm_ids() -> tuple[str, ...]:
    """The rollback alarms' ids, read from the definition file with the standard library only
    (`core.alarms.rollback_alarm_ids` reads the same file typed; a test holds them equal)."""
    alarms = json.loads(ALARM_DEFINITIONS.read_text())["alarms"]
    return tuple(a["id"] for a in alarms if a["rollback"])


def alarm_event_pattern(endpoint_name: str,
                        rollback_alarm_ids: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The rollback controller's rule: the kit's rollback alarms of this endpoint going into
    ALARM, by name (`<endpoint>-<id>`, `core.alarms.AlarmDefinition.alarm_name`). The kit's
    notify-only alarms (`rollback: false`: data capture stopped, ...) share the name prefix and
    are not matched: a broken disk or bucket policy is not a bad model. `rollback_alarm_ids`
    defaults to the definition file's (`core.alarms.rollback_alarm_ids`)."""
    if rollback_alarm_ids is None:
        rollback_alarm_ids = _rollback_alarm_ids()
    return {"source": ["aws.cloudwatch"], "detail-type": ["CloudWatch Alarm State Change"],
            "detail": {"alarmName": [f"{endpoint_name}-{ident}"
                                     for ident in sorted(rollback_alarm_ids)],
                       "state": {"value": ["ALARM"]}}}


def fleet_alarm_event_pattern(environment: str,
                              rollback_alarm_ids: tuple[str, ...] | None = None
                              ) -> dict[str, Any]:
    """A fleet environment's rollback rule: the rollback alarms of any of its endpoints
    (`<model>-<environment>`, `ModelDeclaration.endpoint_name`) going into ALARM, matched by
    name suffix so the pattern does not grow with the fleet; the function routes by the
    alarm's endpoint and its controller checks the exact name (`RollbackController.owns`)."""
    if rollback_alarm_ids is None:
        rollback_alarm_ids = _rollback_alarm_ids()
    return {"source": ["aws.cloudwatch"], "detail-type": ["CloudWatch Alarm State Change"],
            "detail": {"alarmName": [{"suffix": f"-{environment}-{ident}"}
                                     for ident in sorted(rollback_alarm_ids)],
                       "state": {"value": ["ALARM"]}}}


def function(name: str) -> FunctionContract:
    try:
        return FUNCTIONS[name]
    except KeyError:
        raise KeyError(f"no function {name!r} in the contract "
                       f"(known: {', '.join(sorted(FUNCTIONS))})") from None

