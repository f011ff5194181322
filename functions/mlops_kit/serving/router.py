"""The scoring router: one scoring path for the REST endpoint, batch scoring and streaming.

A router follows one endpoint's state file and keeps every variant in it loaded, warm fallbacks
included. Because the endpoint server, `mlops batch-score` and `mlops stream` all score through
a router, a rollback (a weight change in the state file) moves all three at once.

It is three parts, one module each:

* `serving/state_follower.py` follows the state file (written by the deployment and rollback
  controllers, `endpoint_state.py`) and keeps the routing table of its newest good state: what
  a changed, unreadable or partly loadable file does, and why a quiet file costs one `os.stat`;
* `serving/model_loader.py` loads each model directory once, shared by every table serving it;
* `serving/routing.py` holds the table: weighted random routing, pinned variants, where an
  unavailable variant's traffic goes, and the errors a request can get.

This module puts them together for a request: pick the variant, score the payload, answer in
the negotiated media type. The names callers use are importable from here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from mlops_kit.serving.model_loader import ModelHandle, ModelLoader
from mlops_kit.serving.routing import (EndpointUnavailable, LoadedVariant, NoTrafficError,
                                       RoutingTable, ServingError, UnknownVariantError,
                                       VariantUnavailableError)
from mlops_kit.serving.state_follower import (STATE_RECHECK_SECONDS, STATE_SETTLE_SECONDS,
                                              StateFollower, UnappliedState)
from mlops_pipelines.steps.inference import response_type

__all__ = [
    "EndpointUnavailable", "Invocation", "LoadedVariant", "ModelHandle", "ModelLoader",
    "NoTrafficError", "RoutingTable", "STATE_RECHECK_SECONDS", "STATE_SETTLE_SECONDS",
    "ScoringRouter", "ServingError", "UnappliedState", "UnknownVariantError",
    "VariantUnavailableError", "negotiate_accept",
]


@dataclass(frozen=True)
class Invocation:
    """One scored request: the response body and type, and the variant that served it."""
    body: bytes
    content_type: str
    variant: LoadedVariant
    scores: np.ndarray


def negotiate_accept(accept: str | bytes | None) -> str:
    """The media type `output_fn` answers for an Accept header (`inference.response_type`: a
    missing header or `*/*` means `inference.DEFAULT_ACCEPT`, as the container's toolkit fills it
    in from SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT). An Accept naming nothing the handlers produce
    is returned unchanged, for `output_fn` to refuse (406) with its usual message."""
    if isinstance(accept, (bytes, bytearray)):
        accept = accept.decode("latin-1")
    return response_type(accept) or accept


class ScoringRouter:
    """Routes requests across an endpoint's variants by the weights in its state file.

    Thread-safe: the follower serialises state changes; scoring reads an immutable table.
    """

    def __init__(self, home: str | Path, endpoint_name: str, *, seed: int | None = None,
                 loader: ModelLoader | None = None, background: bool = False,
                 retry_seconds: float = 1.0, recheck_seconds: float = STATE_RECHECK_SECONDS):
        self.follower = StateFollower(home, endpoint_name, loader=loader, background=background,
                                      retry_seconds=retry_seconds,
                                      recheck_seconds=recheck_seconds)
        self.home = self.follower.home
        self.endpoint_name = endpoint_name
        self.path = self.follower.path
        self._random = random.Random(seed).random
        # Bound once: every request calls it, and the state follows from it.
        self.refresh = self.follower.refresh
        self.wait_loaded = self.follower.wait_loaded
        self.close = self.follower.close

    @property
    def last_error(self) -> str | None:
        return self.follower.last_error

    @property
    def unapplied(self) -> UnappliedState | None:
        return self.follower.unapplied

    @property
    def table(self) -> RoutingTable | None:
        return self.follower.table

    @property
    def ready(self) -> bool:
        return self.follower.table is not None

    def current(self) -> RoutingTable:
        table = self.refresh()
        if table is None:
            raise EndpointUnavailable(self._missing_reason())
        return table

    def _missing_reason(self) -> str:
        if self.last_error:
            return f"endpoint '{self.endpoint_name}' is not serving: {self.last_error}"
        return (f"endpoint '{self.endpoint_name}' has no deployed state "
                f"({self.path} not found): deploy a model version first")

    def _select_in(self, table: RoutingTable, target_variant: str | None) -> LoadedVariant:
        """`table.select`; a pinned variant missing from the table that belongs to a newer state
        not applied because its models failed to load is called unavailable (503, so its probe
        fails with the load error), not unknown."""
        try:
            return table.select(target_variant, self._random)
        except UnknownVariantError:
            reason = self.follower.unapplied_reason(target_variant or "")
            if reason is None:
                raise
            raise VariantUnavailableError(
                f"variant '{target_variant}' of endpoint '{self.endpoint_name}' is unavailable: "
                f"{reason} (its state was not applied; still serving generation "
                f"{table.generation})") from None

    def select(self, target_variant: str | None = None) -> LoadedVariant:
        """The variant for one request: pinned, else drawn by weight."""
        return self._select_in(self.current(), target_variant)

    def champion(self) -> LoadedVariant:
        """The variant taking the traffic: the highest weight, newest version on ties; among
        the loaded variants (an unavailable champion's traffic goes to the others)."""
        table = self.current()
        if table.champion is None:
            raise table.no_traffic_error()
        return table.champion

    def invoke(self, body: bytes, content_type: str | None, accept: str | None = None,
               target_variant: str | None = None) -> Invocation:
        """Score one request payload as the endpoint does (CSV or JSON, one or many rows).

        Raises PayloadError for a bad payload (its `status_code`: 400, 406 or 415, what the
        container answers), UnknownVariantError and EndpointUnavailable (400 ValidationError),
        NoTrafficError or VariantUnavailableError (503).
        """
        from mlops_pipelines.steps.inference import output_fn

        variant = self._select_in(self.current(), target_variant)
        scores = variant.handle.kernel.score_payload(body, content_type)
        text, produced = output_fn(scores, negotiate_accept(accept))
        return Invocation(text.encode(), produced, variant, scores)

    def score_rows(self, rows: Sequence, target_variant: str | None = None
                   ) -> tuple[np.ndarray, LoadedVariant]:
        """Rows (lists in feature order or dicts by name) → (scores, variant that scored)."""
        variant = self._select_in(self.current(), target_variant)
        return variant.handle.kernel.score_rows(list(rows)), variant

    def variants(self) -> Iterable[LoadedVariant]:
        return self.current().variants.values()
