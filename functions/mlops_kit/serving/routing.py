"""The routing table: one applied state generation with its loaded variants, and the choice of
the variant for one request.

Routing is weighted random (`random.Random`, seeded per router; pass `seed` for reproducible
tests): each request independently goes to variant i with probability weight_i / total. It
needs no shared state between worker processes, keeps exact proportions in expectation, and,
unlike a round-robin sequence, cannot fall into step with a client's own request pattern. A
table with a single variant of positive weight skips the draw. A request may pin a variant (the
`X-Amzn-SageMaker-Target-Variant` header); a pinned variant is served whatever its weight, so a
synthetic probe can exercise a warm fallback at weight 0.

A variant whose model failed to load is *unavailable* (`RoutingTable.unavailable`). A request
pinned to it gets 503 with the load error, so a synthetic probe of it fails and the rollback
controller never moves traffic to it. Its weight share is served by the other variants with
positive weight, in proportion to their weights: every answer then comes from a model the
control plane chose to take traffic, whereas a 503 for that share would fail live requests that
a healthy weighted model can answer, and a weight-0 fallback is never given traffic without the
rollback controller's decision (its probe, cooldown and blocked versions).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from mlops_kit.core.rotation import serving_champion
from mlops_kit.serving.kernel import ModelKernel
from mlops_kit.serving.model_loader import ModelHandle
from mlops_kit.endpoint_state import EndpointState


class ServingError(Exception):
    """A request the router cannot serve; `status` is the HTTP status it maps to."""
    status = 500
    code = "InternalFailure"


class EndpointUnavailable(ServingError):
    """The endpoint has no state file (never deployed, or deleted), or none could be applied.
    400 ValidationError: SageMaker's answer for an endpoint that does not exist (it has no
    "not found" error code for InvokeEndpoint)."""
    status = 400
    code = "ValidationError"


class NoTrafficError(ServingError):
    """Every variant has weight 0 and the request pinned none."""
    status = 503
    code = "ServiceUnavailable"


class VariantUnavailableError(ServingError):
    """The variant (pinned, or every variant with weight) is in the state but its model could not
    be loaded. 503, not 400: the request is valid, the endpoint cannot serve it now."""
    status = 503
    code = "ServiceUnavailable"


class UnknownVariantError(ServingError):
    """The request pinned a variant the endpoint does not serve."""
    status = 400
    code = "ValidationError"


@dataclass(frozen=True, eq=False)
class LoadedVariant:
    variant_name: str
    version: int
    model_uri: str
    weight: float
    instance_count: int
    handle: ModelHandle
    invoked_header: bytes = field(default=b"", repr=False)
    """The response header line naming this variant, preformatted for the HTTP layer."""

    @property
    def kernel(self) -> ModelKernel:
        return self.handle.kernel

    @property
    def model(self):
        return self.handle.kernel.model

    def score_rows(self, rows: list) -> np.ndarray:
        return self.handle.kernel.score_rows(rows)


class RoutingTable:
    """An immutable snapshot: one state generation with its loaded variants.

    `variants` holds only the variants that can serve; `unavailable` names the state's other
    variants with the reason their model did not load. Weighted routing draws among the loaded
    variants with positive weight, so an unavailable variant's share goes to them (see the
    module docstring for why).
    """

    def __init__(self, state: EndpointState, handles: dict[str, ModelHandle],
                 unavailable: dict[str, str] | None = None):
        self.state = state
        self.generation = state.generation
        self.unavailable: dict[str, str] = dict(unavailable or {})
        self.variants: dict[str, LoadedVariant] = {
            v.variant_name: LoadedVariant(
                v.variant_name, v.version, v.model_uri, float(v.weight), v.instance_count,
                handles[v.variant_name],
                b"X-Amzn-Invoked-Production-Variant: %s\r\n" % v.variant_name.encode())
            for v in state.variants if v.variant_name in handles
        }
        live = [v for v in self.variants.values() if v.weight > 0]
        self.total_weight = float(sum(v.weight for v in live))
        self._live = live
        self._cumulative: list[float] = []
        running = 0.0
        for variant in live:
            running += variant.weight
            self._cumulative.append(running)
        self._single = live[0] if len(live) == 1 else None
        best = serving_champion([v.as_weight() for v in state.variants
                                 if v.variant_name in self.variants])
        self.champion: LoadedVariant | None = self.variants[best.variant_name] if best else None

    @property
    def endpoint_name(self) -> str:
        return self.state.endpoint_name

    def weights(self) -> dict[str, float]:
        """The weights of the variants this table serves (unavailable ones are left out: a
        reader must not take a variant that cannot answer for one that takes traffic)."""
        return {name: v.weight for name, v in self.variants.items()}

    def no_traffic_error(self) -> ServingError:
        """Why an unpinned request cannot be served: every weighted variant is unavailable
        (503 with the load errors), or the state gives no variant weight."""
        weighted_broken = [v.variant_name for v in self.state.variants
                           if v.weight > 0 and v.variant_name in self.unavailable]
        if weighted_broken:
            return VariantUnavailableError(
                f"endpoint '{self.endpoint_name}': every variant with traffic weight is "
                f"unavailable ({self.unavailable_reason(weighted_broken)}); loaded variants: "
                f"{self.describe()}; pin one with X-Amzn-SageMaker-Target-Variant")
        return NoTrafficError(
            f"endpoint '{self.endpoint_name}' has total weight 0: no variant takes traffic "
            f"(variants: {self.describe()}); pin one with X-Amzn-SageMaker-Target-Variant "
            f"or give one a positive weight")

    def unavailable_reason(self, names: Iterable[str] | None = None) -> str:
        return "; ".join(f"{name}: {self.unavailable[name]}"
                         for name in (self.unavailable if names is None else names))

    def pick(self, draw: Callable[[], float]) -> LoadedVariant:
        single = self._single
        if single is not None:
            return single
        if not self._live:
            raise self.no_traffic_error()
        index = bisect.bisect_right(self._cumulative, draw() * self.total_weight)
        return self._live[min(index, len(self._live) - 1)]

    def select(self, target_variant: str | None, draw: Callable[[], float]) -> LoadedVariant:
        if not target_variant:
            return self.pick(draw)
        variant = self.variants.get(target_variant)
        if variant is None:
            reason = self.unavailable.get(target_variant)
            if reason is not None:  # 503, so a probe of a broken fallback fails, and says why
                raise VariantUnavailableError(
                    f"variant '{target_variant}' of endpoint '{self.endpoint_name}' is "
                    f"unavailable: {reason}")
            raise UnknownVariantError(
                f"variant '{target_variant}' is not served by endpoint '{self.endpoint_name}' "
                f"(variants: {self.describe()})")
        return variant

    def describe(self) -> str:
        """The variants with their weights, then the unavailable ones: "v3=1, v1 unavailable"."""
        served = [f"{n}={v.weight:g}" for n, v in self.variants.items()]
        return ", ".join(served + [f"{n} unavailable" for n in self.unavailable]) or "none"


def variant_set(state: EndpointState) -> tuple:
    """What a state serves, weights aside: equal sets mean a change of weights only."""
    return tuple(sorted((v.variant_name, v.version, v.model_uri) for v in state.variants))


def takes_traffic(state: EndpointState, unavailable: dict[str, str]) -> bool:
    """Whether a loaded variant has positive weight, or the state gives none any weight (a
    deliberate "serve nothing" is applied as such: nothing is lost by applying it)."""
    weighted = [v.variant_name for v in state.variants if v.weight > 0]
    return not weighted or any(name not in unavailable for name in weighted)
