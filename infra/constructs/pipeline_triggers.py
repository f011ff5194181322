"""PipelineTriggers: what starts the SageMaker training pipeline besides a person.

* `Schedule` (stage key `trainingSchedule`, null = off): an EventBridge rule on a schedule
  expression; the run uses the definition's default parameters.
* `NewData` (stage key `newDataTrigger`): the artifact bucket sends its object events to
  EventBridge; a rule matches "Object Created" for exactly one key (`newDataKey`, default
  `incoming/latest.parquet`) and starts the pipeline with `InputDataUri=s3://<bucket>/<key>`.

Why one fixed key and not "any object under incoming/": an EventBridge target's
SageMakerPipelineParameters are static values. The input transformer rewrites the event into the
target's *Input*, which a SageMaker pipeline target ignores; it cannot fill a pipeline parameter
from the event. A fixed key is also what the preprocess step accepts: its input channel must hold
exactly one CSV/Parquet file (pipelines/steps/_io.py find_table), so the uploader overwrites
`incoming/latest.parquet` (the bucket is versioned; older uploads stay as non-current versions).

Both targets use one role that may only `sagemaker:StartPipelineExecution` on this pipeline, a
retry policy and an SQS dead-letter queue for starts that still fail.

EventBridge's SageMaker pipeline target has no L2 in aws-cdk-lib 2.275 (its rule target config
has no SageMakerPipelineParameters), so the rules are CfnRule.
"""

from __future__ import annotations

from aws_cdk import Aws, Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from constructs import Construct

RETRY_ATTEMPTS = 8
MAX_EVENT_AGE_SECONDS = 6 * 3600
START_ACTIONS = ("sagemaker:StartPipelineExecution",)


def pipeline_arn(pipeline_name: str) -> str:
    """SageMaker lower-cases pipeline names in ARNs."""
    return (f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}:pipeline/"
            f"{pipeline_name.lower()}")


class PipelineTriggers(Construct):
    def __init__(self, scope: Construct, id: str, *, pipeline_name: str, bucket_name: str,
                 schedule: str | None, new_data: bool, new_data_key: str) -> None:
        super().__init__(scope, id)
        self.pipeline_arn = pipeline_arn(pipeline_name)
        self.rules: dict[str, events.CfnRule] = {}
        self.new_data_uri = f"s3://{bucket_name}/{new_data_key}"
        if schedule is None and not new_data:
            return

        self.role = iam.Role(self, "StartRole",
                             assumed_by=iam.ServicePrincipal("events.amazonaws.com"),
                             description=f"EventBridge: start {pipeline_name} only")
        self.role.add_to_policy(iam.PolicyStatement(
            sid="StartPipeline", actions=list(START_ACTIONS), resources=[self.pipeline_arn]))
        self.dlq = sqs.Queue(self, "Dlq", encryption=sqs.QueueEncryption.SQS_MANAGED,
                             enforce_ssl=True, retention_period=Duration.days(14))

        if schedule is not None:
            self.rules["schedule"] = self._rule(
                "Schedule", f"Scheduled training run of {pipeline_name}",
                schedule_expression=schedule, parameters=None)
        if new_data:
            self.rules["new_data"] = self._rule(
                "NewData", f"s3://<artifact bucket>/{new_data_key} written: train on it",
                event_pattern={
                    "source": ["aws.s3"], "detail-type": ["Object Created"],
                    "detail": {"bucket": {"name": [bucket_name]},
                               "object": {"key": [new_data_key]}}},
                parameters={"InputDataUri": self.new_data_uri})

        self.dlq.add_to_resource_policy(iam.PolicyStatement(
            sid="EventBridgeDeadLetters", actions=["sqs:SendMessage"],
            principals=[iam.ServicePrincipal("events.amazonaws.com")],
            resources=[self.dlq.queue_arn],
            conditions={"ArnEquals": {"aws:SourceArn": [r.attr_arn for r in self.rules.values()]}}))

    def _rule(self, id: str, description: str, *, parameters: dict[str, str] | None,
              **pattern_or_schedule) -> events.CfnRule:
        target = events.CfnRule.TargetProperty(
            id="TrainingPipeline", arn=self.pipeline_arn, role_arn=self.role.role_arn,
            dead_letter_config=events.CfnRule.DeadLetterConfigProperty(arn=self.dlq.queue_arn),
            retry_policy=events.CfnRule.RetryPolicyProperty(
                maximum_retry_attempts=RETRY_ATTEMPTS,
                maximum_event_age_in_seconds=MAX_EVENT_AGE_SECONDS),
            sage_maker_pipeline_parameters=events.CfnRule.SageMakerPipelineParametersProperty(
                pipeline_parameter_list=[
                    events.CfnRule.SageMakerPipelineParameterProperty(name=k, value=v)
                    for k, v in parameters.items()]) if parameters else None)
        rule = events.CfnRule(self, id, description=description, state="ENABLED",
                              targets=[target], **pattern_or_schedule)
        rule.node.add_dependency(self.role)  # its policy must exist before the first start
        return rule
