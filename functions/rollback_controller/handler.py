"""Rollback controller Lambda: an alarm of the kit's going into ALARM shifts the endpoint's
traffic to the newest healthy warm fallback (UpdateEndpointWeightsAndCapacities: no new fleet).

Accepts both shapes: the EventBridge "CloudWatch Alarm State Change" event and the payload of
an alarm's direct Lambda action, parsed once into a typed alarm transition. Anything else
(another alarm, another transition, a malformed event) is logged and ignored without an error.
Exactly once per alarm transition: Powertools idempotency keyed on alarm/state/time, plus the
deployment history's own check. Once per incident: before shifting, the invocation claims
"roll back this endpoint from its current head deployment" in the ledger (conditional write),
so of two alarms at once only one shifts and records; the other returns "none" naming it
(reserved concurrency 1 makes that rare, but is not a lock). While a deployment is in flight
the error surfaces, so the event is retried once the endpoint is InService: Lambda retries the
asynchronous invocation twice, then the event lands in the stage's on-failure queue, which
alarms; `mlops events replay` delivers it again.

Settings and IAM: `mlops_kit.contract.FUNCTIONS["rollback_controller"]`; the wiring shared
with the deployment controller: `mlops_kit.aws.lambda_runtime`.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops_kit.aws.lambda_runtime import ControlRuntime
from mlops_kit.deploy.events import InvalidEventError
from mlops_kit.fleet.routes import Route
from mlops_kit.homes import aws
from mlops_kit.monitoring.alarm_events import AlarmTransition, parse_alarm_event

runtime = ControlRuntime("rollback_controller")
clients, persistence = runtime.clients, runtime.persistence
controller = runtime.per_route(lambda settings: aws.rollback_controller(settings, clients))
"""One per endpoint, built on first use from its route's settings and `clients`, as the CLI's
`--backend aws` builds it (tests inject clients, or a controller)."""


@runtime.once("transition")
def shift_once(*, transition: dict[str, Any], alarm: AlarmTransition,
               route: Route) -> dict[str, Any]:
    return controller(route).handle_alarm(alarm).to_dict()


@runtime.handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        alarm = parse_alarm_event(event)
    except InvalidEventError as exc:  # not an alarm state change: nothing to retry
        return runtime.ignored(str(exc))
    route = runtime.routes.by_endpoint(alarm.endpoint_name or "")
    act, why = (controller(route).admits(alarm) if route else
                (False, f"endpoint {alarm.endpoint_name} is not served here"))
    if not act:
        return runtime.ignored(why, alarm=alarm.alarm_name)
    runtime.idempotency.register_lambda_context(context)
    return runtime.handled("Rollback", shift_once(transition={"key": alarm.transition_key},
                                                  alarm=alarm, route=route),
                           errors=frozenset({"no_healthy_fallback"}))
