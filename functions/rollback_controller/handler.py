"""Rollback controller Lambda: an alarm of the kit's going into ALARM shifts the endpoint's
traffic to the newest healthy warm fallback (UpdateEndpointWeightsAndCapacities: no new fleet).

Accepts both shapes: the EventBridge "CloudWatch Alarm State Change" event and the payload of
an alarm's direct Lambda action. Anything else (another alarm, another transition, a malformed
event) is logged and ignored without an error. Exactly once per alarm transition: Powertools
idempotency keyed on alarm/state/time, plus the deployment history's own check. Once per
incident: before shifting, the invocation claims "roll back this endpoint from its current head
deployment" in the ledger (conditional write), so of two alarms at once only one shifts and
records; the other returns "none" naming it (reserved concurrency 1 makes that rare, but is not
a lock). While a deployment is in flight the error surfaces, so the event is retried once the
endpoint is InService: Lambda retries the asynchronous invocation twice, then the event lands
in the stage's on-failure queue, which alarms; `mlops events replay` delivers it again.

Settings and IAM: `mlops_kit.contract.FUNCTIONS["rollback_controller"]`.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (DynamoDBPersistenceLayer,
                                                         IdempotencyConfig, idempotent_function)
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops_kit.contract import RollbackControllerSettings, function
from mlops_kit.deploy.events import InvalidEventError
from mlops_kit.deploy.rollback import RollbackController
from mlops_kit.monitoring.alarm_events import parse_alarm_event

CONTRACT = function("rollback_controller")
logger = Logger(service=CONTRACT.service)
tracer = Tracer(service=CONTRACT.service)
metrics = Metrics(namespace="MLOpsKit/Control", service=CONTRACT.service)

settings: RollbackControllerSettings = CONTRACT.settings()
persistence = DynamoDBPersistenceLayer(table_name=settings.idempotency_table)
idempotency = IdempotencyConfig(expires_after_seconds=7 * 24 * 3600)
_controller: RollbackController | None = None


def controller() -> RollbackController:
    """Built on first use (tests may inject one); the CLI's `--backend aws` builds the same."""
    global _controller
    if _controller is None:
        from mlops_kit.homes import aws

        _controller = aws.rollback_controller(settings)
    return _controller


@idempotent_function(data_keyword_argument="transition", persistence_store=persistence,
                     config=idempotency)
def shift_once(*, transition: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    return controller().handle_event(event).to_dict()


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        alarm = parse_alarm_event(event)
    except InvalidEventError as exc:
        logger.warning("event ignored: not an alarm state change", extra={"reason": str(exc)})
        return {"action": "ignored", "reason": str(exc)}
    if alarm.state != "ALARM" or alarm.previous_state == "ALARM":
        return {"action": "ignored", "reason": f"{alarm.previous_state} → {alarm.state}"}
    owned, why = controller().owns(alarm)
    if not owned:
        logger.info("alarm ignored", extra={"alarm": alarm.alarm_name, "reason": why})
        return {"action": "ignored", "reason": why}
    idempotency.register_lambda_context(context)
    outcome = shift_once(transition={"key": alarm.transition_key}, event=event)
    logger.info("alarm handled", extra=outcome)
    metrics.add_metric(name=f"Rollback_{outcome['action']}", unit=MetricUnit.Count, value=1)
    if outcome["action"] == "no_healthy_fallback":
        logger.error("no healthy fallback", extra=outcome)
    return outcome
