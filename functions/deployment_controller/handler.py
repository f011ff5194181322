"""Deployment controller Lambda: "SageMaker Model Package State Change" → promote the approved
version (champion at weight 1, N-1 and N-2 warm at 0), exactly once.

EventBridge delivers at least once and SageMaker may repeat a change; our own metadata
write-backs emit the event too. The event is parsed once into a typed state change and filtered
(Approved, ModelApprovalStatus among the updated fields), then the promotion runs under
Powertools idempotency keyed on the state change itself (group/version/status/time), and the
controller checks the deployment history as well. A busy endpoint is retried with backoff;
past the last attempt the error surfaces: Lambda retries the asynchronous invocation twice (the
idempotency record is released on failure), then the event lands in the stage's on-failure
queue, which alarms; `mlops events replay` delivers it again (docs/runbooks.md).

Settings and IAM: `mlops_kit.contract.FUNCTIONS["deployment_controller"]`; the wiring shared
with the rollback controller: `mlops_kit.aws.lambda_runtime`.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops_kit.aws.lambda_runtime import ControlRuntime
from mlops_kit.core.approvals import deploy_decision
from mlops_kit.deploy.events import (InvalidEventError, ModelPackageStateChange,
                                     parse_model_package_event)
from mlops_kit.fleet.routes import Route
from mlops_kit.homes import aws
from mlops_kit.registry.base import UnknownVersionError

runtime = ControlRuntime("deployment_controller")
clients, persistence = runtime.clients, runtime.persistence
controller = runtime.per_route(lambda settings: aws.deployment_controller(settings, clients))
"""One per model, built on first use from its route's settings and `clients` (tests inject
clients, or a controller)."""


@runtime.once("change")
def promote_once(*, change: dict[str, Any], parsed: ModelPackageStateChange,
                 route: Route) -> dict[str, Any]:
    return controller(route).handle_change(parsed).to_dict()


@runtime.handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        change = parse_model_package_event(event)
    except InvalidEventError as exc:
        return runtime.rejected(exc)
    route = runtime.routes.by_group(change.model_group)
    act, why = (deploy_decision(change, route.settings.environment or None) if route else
                (False, f"group {change.model_group} has no endpoint here"))
    if not act:
        return runtime.ignored(why, version=change.version)
    runtime.idempotency.register_lambda_context(context)
    try:
        outcome = promote_once(change={"key": change.change_key}, parsed=change, route=route)
    except UnknownVersionError as exc:  # a version the registry lacks: no retry can fix it
        return runtime.rejected(exc, version=change.version)
    return runtime.handled("Promotion", outcome)
