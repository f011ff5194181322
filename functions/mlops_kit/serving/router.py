"""The scoring router: one scoring path for the REST endpoint, batch scoring and streaming.

A router follows one endpoint's state file (`serving/state.py`, written by the deployment and
rollback controllers) and keeps every variant in it loaded, warm fallbacks included. Because the
endpoint server, `mlops batch-score` and `mlops stream` all score through a router, a rollback
(a weight change in the state file) moves all three at once.

Following the file costs one `os.stat` per request. When the file changes:

* weights only (same variant names, versions and model directories): a new routing table is
  built around the already-loaded models and swapped in; the very next request uses it;
* a new variant set: the models not loaded yet are loaded first (a variant whose model is
  already loaded is reused), then the new table replaces the old one in a single assignment.
  Requests already holding the old table finish on it; nothing is dropped. With
  `background=True` (the endpoint server) the loading runs on a helper thread and requests keep
  being served by the old table meanwhile; otherwise the request that noticed the change waits;
* an unreadable file or a model that fails to load: the last good table keeps serving, the
  error is logged and kept in `last_error`, and the state is applied again as soon as the file
  changes, or retried after `retry_seconds` (doubling per failure, at most a minute).

Routing is weighted random (`random.Random`, seeded per router; pass `seed` for reproducible
tests): each request independently goes to variant i with probability weight_i / total. It
needs no shared state between worker processes, keeps exact proportions in expectation, and,
unlike a round-robin sequence, cannot fall into step with a client's own request pattern. A
table with a single variant of positive weight skips the draw. A request may pin a variant (the
`X-Amzn-SageMaker-Target-Variant` header); a pinned variant is served whatever its weight, so a
synthetic probe can exercise a warm fallback at weight 0.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from mlops_kit.core.rotation import serving_champion
from mlops_kit.serving.kernel import ModelKernel, media_type
from mlops_kit.serving.state import EndpointState, state_path

log = logging.getLogger(__name__)

ModelLoader = Callable[[str], Any]
"""`inference.model_fn`: a model directory to a LoadedModel."""


class ServingError(Exception):
    """A request the router cannot serve; `status` is the HTTP status it maps to."""
    status = 500
    code = "InternalFailure"


class EndpointUnavailable(ServingError):
    """The endpoint has no state file (never deployed, or deleted)."""
    status = 404
    code = "EndpointNotFound"


class NoTrafficError(ServingError):
    """Every variant has weight 0 and the request pinned none."""
    status = 503
    code = "ServiceUnavailable"


class UnknownVariantError(ServingError):
    """The request pinned a variant the endpoint does not serve."""
    status = 400
    code = "ValidationError"


@dataclass(frozen=True, eq=False)
class ModelHandle:
    """A loaded model directory; shared by every table that serves it."""
    key: tuple
    model_uri: str
    kernel: ModelKernel

    @property
    def model(self):
        return self.kernel.model


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
    """An immutable snapshot: one state generation with its loaded variants."""

    def __init__(self, state: EndpointState, handles: dict[str, ModelHandle]):
        self.state = state
        self.generation = state.generation
        self.variants: dict[str, LoadedVariant] = {
            v.variant_name: LoadedVariant(
                v.variant_name, v.version, v.model_uri, float(v.weight), v.instance_count,
                handles[v.variant_name],
                b"X-Amzn-Invoked-Production-Variant: %s\r\n" % v.variant_name.encode())
            for v in state.variants
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
        best = serving_champion([v.as_weight() for v in state.variants])
        self.champion: LoadedVariant | None = self.variants[best.variant_name] if best else None

    @property
    def endpoint_name(self) -> str:
        return self.state.endpoint_name

    def weights(self) -> dict[str, float]:
        return {name: v.weight for name, v in self.variants.items()}

    def pick(self, draw: Callable[[], float]) -> LoadedVariant:
        single = self._single
        if single is not None:
            return single
        if not self._live:
            raise NoTrafficError(
                f"endpoint '{self.endpoint_name}' has total weight 0: no variant takes traffic "
                f"(variants: {self._names()}); pin one with X-Amzn-SageMaker-Target-Variant "
                f"or give one a positive weight")
        index = bisect.bisect_right(self._cumulative, draw() * self.total_weight)
        return self._live[min(index, len(self._live) - 1)]

    def select(self, target_variant: str | None, draw: Callable[[], float]) -> LoadedVariant:
        if not target_variant:
            return self.pick(draw)
        variant = self.variants.get(target_variant)
        if variant is None:
            raise UnknownVariantError(
                f"variant '{target_variant}' is not served by endpoint '{self.endpoint_name}' "
                f"(variants: {self._names()})")
        return variant

    def _names(self) -> str:
        return ", ".join(f"{n}={v.weight:g}" for n, v in self.variants.items()) or "none"


def _variant_set(state: EndpointState) -> tuple:
    return tuple(sorted((v.variant_name, v.version, v.model_uri) for v in state.variants))


def _model_key(model_uri: str, version: int) -> tuple:
    """Identifies a model directory's content cheaply: path, version and the model file's stat."""
    from mlops_pipelines.steps.inference import MODEL_FILE

    path = os.path.realpath(model_uri)
    try:
        st = os.stat(os.path.join(path, MODEL_FILE))
        return (path, version, st.st_mtime_ns, st.st_size)
    except OSError:
        return (path, version, None, None)


@dataclass(frozen=True)
class Invocation:
    """One scored request: the response body and type, and the variant that served it."""
    body: bytes
    content_type: str
    variant: LoadedVariant
    scores: np.ndarray


def negotiate_accept(accept: str | bytes | None) -> str:
    """The response media type for an Accept header: the first type the handlers produce."""
    if isinstance(accept, (bytes, bytearray)):
        accept = accept.decode("latin-1")
    if not accept:
        return "text/csv"
    offered = [media_type(part) for part in accept.split(",")]
    for candidate in offered:
        if candidate in ("text/csv", "application/json"):
            return candidate
        if candidate in ("*/*", "text/*", ""):
            return "text/csv"
        if candidate == "application/*":
            return "application/json"
    return accept  # output_fn rejects it with a clear message


class ScoringRouter:
    """Routes requests across an endpoint's variants by the weights in its state file.

    Thread-safe: `refresh` serialises state changes; scoring reads an immutable table.
    """

    def __init__(self, home: str | Path, endpoint_name: str, *, seed: int | None = None,
                 loader: ModelLoader | None = None, background: bool = False,
                 retry_seconds: float = 1.0):
        self.home = Path(home)
        self.endpoint_name = endpoint_name
        self.path = state_path(self.home, endpoint_name)
        self._path_str = str(self.path)
        self._loader = loader
        self._random = random.Random(seed).random
        self._background = background
        self._retry_seconds = retry_seconds
        self._lock = threading.RLock()
        self._table: RoutingTable | None = None
        self._seen: tuple | None = None       # stat key of the file the table reflects
        self._retry_at = 0.0
        self._failed: tuple | None = None    # stat key whose state failed to apply (retry later)
        self._failures = 0
        self._wanted = 0                      # token of the newest load requested
        self._handles: dict[tuple, ModelHandle] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._pending = None
        self.last_error: str | None = None

    # -- following the state file --------------------------------------------------------------
    def refresh(self) -> RoutingTable | None:
        """Apply a changed state file; one `os.stat` when nothing changed. Returns the table."""
        try:
            st = os.stat(self._path_str)
            key = (st.st_mtime_ns, st.st_ino, st.st_size, st.st_ctime_ns)
        except FileNotFoundError:
            key = None
        if key != self._seen:
            if key != self._failed or self._retry_at <= time.monotonic():
                self._apply(key)
        return self._table

    def _apply(self, key: tuple | None) -> None:
        with self._lock:
            if key == self._seen:
                return
            if key is None:
                self._seen = None
                self._wanted += 1
                if self._table is not None:
                    log.warning("endpoint %s: state file %s is gone; serving stops",
                                self.endpoint_name, self.path)
                    self._swap(None)
                return
            try:
                state = EndpointState.from_dict(json.loads(self.path.read_text()))
            except FileNotFoundError:
                return
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self._fail(key, f"state file {self.path} is unreadable: {exc}")
                return
            if state.endpoint_name != self.endpoint_name:
                self._fail(key, f"state file {self.path} names endpoint "
                                f"'{state.endpoint_name}', not '{self.endpoint_name}'")
                return
            self._seen = key
            self._wanted += 1
            token = self._wanted
            current = self._table
            if current is not None and _variant_set(current.state) == _variant_set(state):
                handles = {name: v.handle for name, v in current.variants.items()}
                self._swap(RoutingTable(state, handles))
                return
            if self._background and current is not None:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix="model-loader")
                self._pending = self._executor.submit(self._load_and_swap, state, token, key)
            else:
                self._load_and_swap(state, token, key)

    def _load_and_swap(self, state: EndpointState, token: int, key: tuple) -> None:
        started = time.perf_counter()
        try:
            handles = {v.variant_name: self._handle(v.model_uri, v.version)
                       for v in state.variants}
        except Exception as exc:  # a bad model dir must not take the endpoint down
            with self._lock:
                if token == self._wanted:
                    self._fail(key, f"generation {state.generation}: loading models failed: "
                                    f"{type(exc).__name__}: {exc}")
            return
        table = RoutingTable(state, handles)
        with self._lock:
            if token != self._wanted:
                return  # a newer state superseded this one while it loaded
            self._swap(table)
        log.info("endpoint %s: serving generation %d (%s), models ready in %.0f ms",
                 self.endpoint_name, state.generation, table._names(),
                 (time.perf_counter() - started) * 1000)

    def _handle(self, model_uri: str, version: int) -> ModelHandle:
        key = _model_key(model_uri, version)
        with self._lock:
            handle = self._handles.get(key)
        if handle is None:  # load outside the lock: requests keep flowing meanwhile
            loader = self._loader
            if loader is None:
                from mlops_pipelines.steps.inference import model_fn as loader
            handle = ModelHandle(key, model_uri, ModelKernel(loader(model_uri)))
            with self._lock:
                handle = self._handles.setdefault(key, handle)
        return handle

    def _swap(self, table: RoutingTable | None) -> None:
        self._table = table
        self.last_error = None
        self._failed = None
        self._failures = 0
        keep = {v.handle.key for v in table.variants.values()} if table else set()
        for cached in list(self._handles):
            if cached not in keep:
                del self._handles[cached]

    def _fail(self, key: tuple, message: str) -> None:
        self.last_error = message
        self._failures = self._failures + 1 if key == self._failed else 1
        self._failed = key
        if self._seen == key:
            self._seen = ("failed",)  # never equal to a stat key: retried after the delay
        delay = min(60.0, self._retry_seconds * 2 ** (self._failures - 1))
        self._retry_at = time.monotonic() + delay
        log.error("endpoint %s: %s; still serving %s", self.endpoint_name, message,
                  f"generation {self._table.generation}" if self._table else "nothing")

    def wait_loaded(self, timeout: float = 30.0) -> RoutingTable | None:
        """Refresh, then wait for a background load in progress (tests, probes, start-up)."""
        from concurrent.futures import wait

        self.refresh()
        pending = self._pending
        if pending is not None:
            wait([pending], timeout=timeout)
        return self._table

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # -- routing and scoring -------------------------------------------------------------------
    @property
    def table(self) -> RoutingTable | None:
        return self._table

    @property
    def ready(self) -> bool:
        return self._table is not None

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

    def select(self, target_variant: str | None = None) -> LoadedVariant:
        """The variant for one request: pinned, else drawn by weight."""
        return self.current().select(target_variant, self._random)

    def champion(self) -> LoadedVariant:
        """The variant taking the traffic: the highest weight, newest version on ties."""
        table = self.current()
        if table.champion is None:
            raise NoTrafficError(f"endpoint '{self.endpoint_name}' has total weight 0: "
                                 f"no champion to score with")
        return table.champion

    def invoke(self, body: bytes, content_type: str | None, accept: str | None = None,
               target_variant: str | None = None) -> Invocation:
        """Score one request payload as the endpoint does (CSV or JSON, one or many rows).

        Raises PayloadError (HTTP 400) for a bad payload, UnknownVariantError (400),
        EndpointUnavailable (404) or NoTrafficError (503).
        """
        from mlops_pipelines.steps.inference import output_fn

        variant = self.current().select(target_variant, self._random)
        scores = variant.handle.kernel.score_payload(body, content_type)
        text, produced = output_fn(scores, negotiate_accept(accept))
        return Invocation(text.encode(), produced, variant, scores)

    def score_rows(self, rows: Sequence, target_variant: str | None = None
                   ) -> tuple[np.ndarray, LoadedVariant]:
        """Rows (lists in feature order or dicts by name) → (scores, variant that scored)."""
        variant = self.current().select(target_variant, self._random)
        return variant.handle.kernel.score_rows(list(rows)), variant

    def variants(self) -> Iterable[LoadedVariant]:
        return self.current().variants.values()
