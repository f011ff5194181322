"""What every Lambda handler of the kit wires the same way: its contract's settings (read once,
at import: a cold start fails fast naming what is missing), Powertools Logger, Tracer and
Metrics under the contract's service name, boto3 clients made once per container and
injectable, and for the control Lambdas Powertools idempotency on the stage's DynamoDB table.

A handler keeps its own flow (parse once, decide whether to act, call one service, answer);
the answers it logs and counts are shaped here so the two control Lambdas answer alike.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from mlops_kit.contract import CONTROL_NAMESPACE, function
from mlops_kit.fleet.routes import FleetRoutes, Route, load_routes

T = TypeVar("T")

IDEMPOTENCY_EXPIRY_SECONDS = 7 * 24 * 3600
"""Longer than EventBridge's and Lambda's retry horizons: a redelivery within it is a no-op."""


class Clients:
    """`service -> boto3 client`, each made once per container on first use (the kit's retry
    config, `aws.clients.default_client`). Tests inject moto- or Stubber-backed clients; the
    homes' builders take this as their `clients` factory."""

    def __init__(self, factory: Callable[[str], Any] | None = None):
        self._factory = factory
        self._made: dict[str, Any] = {}

    def __call__(self, service: str) -> Any:
        if service not in self._made:
            if self._factory is not None:
                self._made[service] = self._factory(service)
            else:
                from mlops_kit.aws.clients import default_client

                self._made[service] = default_client(service)
        return self._made[service]

    def inject(self, service: str, client: Any) -> None:
        self._made[service] = client


class PerRoute(Generic[T]):
    """A handler's service per model of the fleet (a controller per endpoint), each built on
    first use from its route's settings and kept for the container. `inject(service)` serves
    every route with it (tests), `inject(service, model)` one."""

    def __init__(self, build: Callable[[Any], T]):
        self._build = build
        self._made: dict[str, T] = {}
        self._injected: T | None = None

    def __call__(self, route: Route) -> T:
        if route.model not in self._made:
            self._made[route.model] = (self._injected if self._injected is not None
                                       else self._build(route.settings))
        return self._made[route.model]

    def inject(self, service: T, model: str | None = None) -> None:
        if model is None:
            self._made.clear()
            self._injected = service
        else:
            self._made[model] = service


class RouteAdapters:
    """A scheduled Lambda's adapters per model (`name -> adapter`), built on first use from the
    route's settings when its dict is empty, kept for the container. `only` is the single
    model's dict, which tests fill with their own adapters before the first run."""

    def __init__(self, routes: FleetRoutes, build: Callable[[Any], dict[str, Any]]):
        self._routes, self._build = routes, build
        self.only: dict[str, Any] = {}
        self._by_model: dict[str, dict[str, Any]] = {}

    def __call__(self, route: Route) -> dict[str, Any]:
        adapters = (self.only if route is self._routes.only
                    else self._by_model.setdefault(route.model, {}))
        if not adapters:
            adapters.update(self._build(route.settings))
        return adapters


class LambdaRuntime:
    """One function's wiring: `routes` (every model's settings; `settings` when there is one
    model), `logger`, `tracer`, `metrics`, `clients`."""

    def __init__(self, name: str, namespace: str, clients: Clients | None = None):
        self.contract = function(name)
        self.routes: FleetRoutes = load_routes(self.contract)
        only = self.routes.only
        self.settings: Any = only.settings if only else None
        """The settings of a single-model function (None in a fleet: see `routes`)."""
        service = self.contract.service
        self.logger = Logger(service=service)
        self.tracer = Tracer(service=service)
        self.metrics = Metrics(namespace=namespace, service=service)
        self.clients = clients or Clients()

    def handler(self, fn: Callable) -> Callable:
        """The Lambda entry point, observed: Logger's context, Tracer's segment, Metrics'
        flush (EMF) around every invocation."""
        return self.metrics.log_metrics(
            self.tracer.capture_lambda_handler(self.logger.inject_lambda_context(fn)))

    def adapters(self, build: Callable[[Any], dict[str, Any]]) -> RouteAdapters:
        """`build(settings)` per model on first use (see `RouteAdapters`)."""
        return RouteAdapters(self.routes, build)


class ControlRuntime(LambdaRuntime):
    """A control Lambda's wiring: also the idempotency store (`persistence`, whose `client`
    tests replace) and `once(argument)`, the Powertools idempotency decorator keyed on that
    keyword argument."""

    def __init__(self, name: str, clients: Clients | None = None):
        super().__init__(name, CONTROL_NAMESPACE, clients)
        from aws_lambda_powertools.utilities.idempotency import (DynamoDBPersistenceLayer,
                                                                 IdempotencyConfig)

        self.persistence = DynamoDBPersistenceLayer(
            table_name=self.routes.any.settings.idempotency_table)  # one table for all models
        self.idempotency = IdempotencyConfig(expires_after_seconds=IDEMPOTENCY_EXPIRY_SECONDS)

    def per_route(self, build: Callable[[Any], T]) -> PerRoute[T]:
        """`build(settings)` per model on first use (see `PerRoute`)."""
        return PerRoute(build)

    def once(self, key_argument: str) -> Callable:
        from aws_lambda_powertools.utilities.idempotency import idempotent_function

        return idempotent_function(data_keyword_argument=key_argument,
                                   persistence_store=self.persistence, config=self.idempotency)

    # -- answers -------------------------------------------------------------------------

    def rejected(self, reason: Exception | str, **fields: Any) -> dict[str, Any]:
        """An event that no retry can make valid: logged, counted (InvalidEvents), answered."""
        self.logger.warning("event rejected", extra={"reason": str(reason)})
        self.metrics.add_metric(name="InvalidEvents", unit=MetricUnit.Count, value=1)
        return {"action": "rejected", "reason": str(reason), **fields}

    def ignored(self, reason: str, **fields: Any) -> dict[str, Any]:
        """A valid event that is not this function's to act on."""
        self.logger.info("event ignored", extra={"reason": reason, **fields})
        return {"action": "ignored", "reason": reason, **fields}

    def handled(self, metric_prefix: str, outcome: dict[str, Any],
                errors: frozenset[str] = frozenset()) -> dict[str, Any]:
        """The service's outcome, logged (as an error when its action is one of `errors`) and
        counted as `<prefix>_<action>`."""
        log = self.logger.error if outcome["action"] in errors else self.logger.info
        log("event handled", extra=outcome)
        self.metrics.add_metric(name=f"{metric_prefix}_{outcome['action']}",
                                unit=MetricUnit.Count, value=1)
        return outcome
