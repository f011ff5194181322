"""Deployment controller Lambda: "SageMaker Model Package State Change" → promote the approved
version (champion at weight 1, N-1 and N-2 warm at 0), exactly once.

EventBridge delivers at least once and SageMaker may repeat a change; our own metadata
write-backs emit the event too. The event is filtered (Approved, ModelApprovalStatus among the
updated fields), then the promotion runs under Powertools idempotency keyed on the state change
itself (group/version/status/time), and the controller checks the deployment history as well.
A busy endpoint is retried with backoff; past the last attempt the error surfaces: Lambda
retries the asynchronous invocation twice (the idempotency record is released on failure), then
the event lands in the stage's on-failure queue, which alarms; `mlops events replay` delivers
it again (docs/runbooks.md).

Settings and IAM: `mlops_kit.contract.FUNCTIONS["deployment_controller"]`.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.idempotency import (DynamoDBPersistenceLayer,
                                                         IdempotencyConfig, idempotent_function)
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops_kit.contract import DeploymentControllerSettings, function
from mlops_kit.deploy.controller import DeploymentController
from mlops_kit.deploy.events import InvalidEventError, deploy_decision, parse_model_package_event
from mlops_kit.registry.base import UnknownVersionError

CONTRACT = function("deployment_controller")
logger = Logger(service=CONTRACT.service)
tracer = Tracer(service=CONTRACT.service)
metrics = Metrics(namespace="MLOpsKit/Control", service=CONTRACT.service)

settings: DeploymentControllerSettings = CONTRACT.settings()
persistence = DynamoDBPersistenceLayer(table_name=settings.idempotency_table)
idempotency = IdempotencyConfig(expires_after_seconds=7 * 24 * 3600)
_controller: DeploymentController | None = None


def controller() -> DeploymentController:
    """Built on first use (tests may inject one); reused across warm invocations."""
    global _controller
    if _controller is None:
        from mlops_kit.homes import aws

        _controller = aws.deployment_controller(settings)
    return _controller


@idempotent_function(data_keyword_argument="change", persistence_store=persistence,
                     config=idempotency)
def promote_once(*, change: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    return controller().handle_event(event).to_dict()


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context
@event_source(data_class=EventBridgeEvent)
def lambda_handler(event: EventBridgeEvent, context: LambdaContext) -> dict[str, Any]:
    try:
        change = parse_model_package_event(event.raw_event)
    except InvalidEventError as exc:
        logger.warning("event rejected", extra={"reason": str(exc)})
        metrics.add_metric(name="InvalidEvents", unit=MetricUnit.Count, value=1)
        return {"action": "rejected", "reason": str(exc)}
    act, why = deploy_decision(change)
    if not act:
        logger.info("event ignored", extra={"reason": why, "version": change.version})
        return {"action": "ignored", "reason": why, "version": change.version}
    idempotency.register_lambda_context(context)
    try:
        outcome = promote_once(change={"key": change.change_key}, event=event.raw_event)
    except UnknownVersionError as exc:
        # An approval of a version the registry does not have: a retry cannot fix it.
        logger.warning("event rejected", extra={"reason": str(exc)})
        metrics.add_metric(name="InvalidEvents", unit=MetricUnit.Count, value=1)
        return {"action": "rejected", "reason": str(exc), "version": change.version}
    logger.info("promotion handled", extra=outcome)
    metrics.add_metric(name=f"Promotion_{outcome['action']}", unit=MetricUnit.Count, value=1)
    return outcome
