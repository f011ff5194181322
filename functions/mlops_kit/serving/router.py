"""The scoring router: one scoring path for the REST endpoint, batch scoring and streaming.

A router follows one endpoint's state file (`serving/state.py`, written by the deployment and
rollback controllers) and keeps every variant in it loaded, warm fallbacks included. Because the
endpoint server, `mlops batch-score` and `mlops stream` all score through a router, a rollback
(a weight change in the state file) moves all three at once.

Following the file costs one `os.stat` (and one clock read) per request. The stat signature
(mtime, ctime, inode, size) alone can miss a change: the controllers replace the file
atomically, and writes of the same size within one filesystem timestamp tick (a few ms) may
reuse a freed inode, so a later file can carry exactly the signature of an earlier one. The
router therefore also compares the file's bytes: on every request while the file it applied is
younger than `STATE_SETTLE_SECONDS` (only then can a same-tick replacement still come; a later
write gets a later timestamp), and every `recheck_seconds` afterwards (a safety net for clock
steps and filesystems with odd timestamps). A quiet file costs the stat and nothing else.
When the file changes:

* weights only (same variant names, versions and model directories): a new routing table is
  built around the already-loaded models and swapped in; the very next request uses it;
* a new variant set: the models not loaded yet are loaded first (a variant whose model is
  already loaded is reused), then the new table replaces the old one in a single assignment.
  Requests already holding the old table finish on it; nothing is dropped. With
  `background=True` (the endpoint server) the loading runs on a helper thread and requests keep
  being served by the old table meanwhile; otherwise the request that noticed the change waits;
* an unreadable file: the last good table keeps serving, the error is logged and kept in
  `last_error`, and the state is applied again as soon as the file changes, or retried after
  `retry_seconds` (doubling per failure, at most a minute);
* a variant whose model fails to load (a missing or corrupt model directory) does not keep the
  others from serving: the state is applied with the variants that loaded, the broken one is
  *unavailable* (`RoutingTable.unavailable`, `last_error`, the log) and its load is retried with
  the same back-off. A request pinned to it gets 503 with the load error, so a synthetic probe
  of it fails and the rollback controller never moves traffic to it. Its weight share is served
  by the other variants with positive weight, in proportion to their weights: every answer then
  comes from a model the control plane chose to take traffic, whereas a 503 for that share
  would fail live requests that a healthy weighted model can answer, and a weight-0 fallback is
  never given traffic without the rollback controller's decision (its probe, cooldown and
  blocked versions). If no variant with positive weight loaded, a running router keeps its last
  good table (it could still serve traffic); a freshly started one, having none, applies the
  state anyway, so pinned requests and probes reach the healthy fallbacks while unpinned ones
  get 503 naming the broken variant(s). A state in which no variant at all loaded is not
  applied.

A newest state that was not applied (unreadable, or kept out as above) is named in `unapplied`
(its generation, the reason, its broken variants) until a state is applied: the endpoint's
/ping reports it as "Degraded", so a promotion or rollback that never took effect does not look
healthy while the previous generation keeps serving.

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
from mlops_kit.serving.kernel import ModelKernel
from mlops_pipelines.steps.inference import response_type
from mlops_kit.serving.state import EndpointState, state_path

log = logging.getLogger(__name__)

ModelLoader = Callable[[str], Any]
"""`inference.model_fn`: a model directory to a LoadedModel."""

STATE_SETTLE_SECONDS = 2.0
"""While the applied state file was modified (or renamed) less than this long ago, its bytes are
re-read on every refresh: a replacement in the same timestamp tick can carry the same stat
signature. File timestamps on ext4, xfs and tmpfs move in kernel ticks (<= 10 ms); 2 s also
covers filesystems with 1-2 s timestamps."""
STATE_RECHECK_SECONDS = 1.0
"""Once the file is settled its bytes are re-read at most this often (bounds how long a missed
change could survive a wall-clock step backwards)."""
NEVER = float("inf")


@dataclass(frozen=True)
class UnappliedState:
    """The newest state file, not applied: the router serves an older generation (or none)."""
    generation: int | None
    """Its generation; None when the file could not be read or parsed."""
    reason: str
    unavailable: dict[str, str] = field(default_factory=dict)
    """Its variants whose model failed to load, with the load error."""

    def as_dict(self) -> dict[str, Any]:
        return {"generation": self.generation, "reason": self.reason,
                "unavailable": dict(self.unavailable)}


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
                f"{self._names()}; pin one with X-Amzn-SageMaker-Target-Variant")
        return NoTrafficError(
            f"endpoint '{self.endpoint_name}' has total weight 0: no variant takes traffic "
            f"(variants: {self._names()}); pin one with X-Amzn-SageMaker-Target-Variant "
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
                f"(variants: {self._names()})")
        return variant

    def _names(self) -> str:
        served = [f"{n}={v.weight:g}" for n, v in self.variants.items()]
        return ", ".join(served + [f"{n} unavailable" for n in self.unavailable]) or "none"


def _variant_set(state: EndpointState) -> tuple:
    return tuple(sorted((v.variant_name, v.version, v.model_uri) for v in state.variants))


def _takes_traffic(state: EndpointState, unavailable: dict[str, str]) -> bool:
    """Whether a loaded variant has positive weight, or the state gives none any weight (a
    deliberate "serve nothing" is applied as such: nothing is lost by applying it)."""
    weighted = [v.variant_name for v in state.variants if v.weight > 0]
    return not weighted or any(name not in unavailable for name in weighted)


def _signature(st: os.stat_result) -> tuple:
    return (st.st_mtime_ns, st.st_ino, st.st_size, st.st_ctime_ns)


def _read_state_file(path: str) -> tuple[tuple, bytes]:
    """The file's bytes and the stat signature of exactly those bytes: fstat of the descriptor
    read, so a replacement between a stat and the read cannot pair one file's signature with
    another file's content."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        chunks = []
        while True:
            chunk = os.read(fd, max(st.st_size + 1, 4096))
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return _signature(st), b"".join(chunks)


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
    """The media type `output_fn` answers for an Accept header (`inference.response_type`: a
    missing header or `*/*` means `inference.DEFAULT_ACCEPT`, as the container's toolkit fills it
    in from SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT). An Accept naming nothing the handlers produce
    is returned unchanged, for `output_fn` to refuse (406) with its usual message."""
    if isinstance(accept, (bytes, bytearray)):
        accept = accept.decode("latin-1")
    return response_type(accept) or accept


class ScoringRouter:
    """Routes requests across an endpoint's variants by the weights in its state file.

    Thread-safe: `refresh` serialises state changes; scoring reads an immutable table.
    """

    def __init__(self, home: str | Path, endpoint_name: str, *, seed: int | None = None,
                 loader: ModelLoader | None = None, background: bool = False,
                 retry_seconds: float = 1.0, recheck_seconds: float = STATE_RECHECK_SECONDS):
        self.home = Path(home)
        self.endpoint_name = endpoint_name
        self.path = state_path(self.home, endpoint_name)
        self._path_str = str(self.path)
        self._loader = loader
        self._random = random.Random(seed).random
        self._background = background
        self._retry_seconds = retry_seconds
        self._recheck_seconds = recheck_seconds
        self._lock = threading.RLock()
        self._table: RoutingTable | None = None
        self._seen: tuple | None = None       # stat signature of the file the table reflects
        self._seen_content: bytes | None = None  # ... and its bytes (the signature can repeat)
        self._check_at = NEVER                # monotonic time to re-read the unchanged file
        self._retry_at = 0.0
        self._failed: tuple | None = None    # stat key whose state failed to apply (retry later)
        self._failures = 0
        self._variants_retry_at = NEVER       # when to retry the table's unavailable variants
        self._variant_failures = 0
        self._unapplied_unavailable: dict[str, str] = {}  # broken variants of a state not applied
        self.unapplied: UnappliedState | None = None  # the newest state, if it was not applied
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
            key = (st.st_mtime_ns, st.st_ino, st.st_size, st.st_ctime_ns)  # _signature, inlined
        except FileNotFoundError:
            key = None
        if key == self._seen:
            if time.monotonic() < self._check_at:
                return self._table
        elif key == self._failed and time.monotonic() < self._retry_at:
            return self._table
        self._apply(key)
        return self._table

    def _next_check(self, key: tuple, now: float) -> float:
        """When to re-read a file whose signature has not changed: at once (the next refresh)
        while it is young enough for a same-tick replacement to repeat its signature, else
        after `recheck_seconds`; earlier if unavailable variants are due for a retry."""
        age_ns = time.time_ns() - max(key[0], key[3])
        settle_ns = int(STATE_SETTLE_SECONDS * 1e9)
        # A timestamp far in the future (clock skew) would otherwise mean a re-read per request
        # for as long as the skew lasts; the periodic re-check still covers it.
        verify_at = now if -settle_ns < age_ns < settle_ns else now + self._recheck_seconds
        return min(verify_at, self._variants_retry_at)

    def _apply(self, key: tuple | None) -> None:
        with self._lock:
            now = time.monotonic()
            if key == self._seen and now < self._check_at:
                return  # another thread has just checked it
            if key is None:
                self._seen = self._seen_content = None
                self._check_at = self._variants_retry_at = NEVER
                self._wanted += 1
                if self._table is not None:
                    log.warning("endpoint %s: state file %s is gone; serving stops",
                                self.endpoint_name, self.path)
                    self._swap(None)
                return
            try:
                key, content = _read_state_file(self._path_str)
            except FileNotFoundError:
                return  # replaced or removed since the stat: the next refresh sees which
            except OSError as exc:
                self._fail(key, f"state file {self.path} is unreadable: {exc}")
                return
            retry_variants = now >= self._variants_retry_at
            if key == self._seen and content == self._seen_content and not retry_variants:
                self._check_at = self._next_check(key, now)
                return
            try:
                state = EndpointState.from_dict(json.loads(content))
            except (ValueError, KeyError, TypeError) as exc:
                self._fail(key, f"state file {self.path} is unreadable: {exc}")
                return
            if state.endpoint_name != self.endpoint_name:
                self._fail(key, f"state file {self.path} names endpoint "
                                f"'{state.endpoint_name}', not '{self.endpoint_name}'")
                return
            self._seen, self._seen_content = key, content
            self._wanted += 1
            token = self._wanted
            current = self._table
            if (current is not None and not retry_variants
                    and _variant_set(current.state) == _variant_set(state)
                    and _takes_traffic(state, current.unavailable)):
                # Weights only: same models, the same ones still unavailable (their retry keeps
                # its schedule), applied at once. New weights that only an unavailable variant
                # would carry go the loading way below: it retries that model first.
                handles = {name: v.handle for name, v in current.variants.items()}
                self._install(state, handles, current.unavailable, key, attempted=False)
                self._check_at = self._next_check(key, now)
                return
            self._variants_retry_at = NEVER  # the load below schedules the next retry if needed
            self._check_at = self._next_check(key, now)
            if self._background and current is not None:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix="model-loader")
                self._pending = self._executor.submit(self._load_and_swap, state, token, key)
            else:
                self._load_and_swap(state, token, key)

    def _load_and_swap(self, state: EndpointState, token: int, key: tuple) -> None:
        started = time.perf_counter()
        handles: dict[str, ModelHandle] = {}
        unavailable: dict[str, str] = {}
        for variant in state.variants:
            try:
                handles[variant.variant_name] = self._handle(variant.model_uri, variant.version)
            except Exception as exc:  # one bad model dir must not keep the others from serving
                unavailable[variant.variant_name] = (
                    f"loading model version {variant.version} from {variant.model_uri} failed: "
                    f"{type(exc).__name__}: {exc}")
        with self._lock:
            if token != self._wanted:
                return  # a newer state superseded this one while it loaded
            table = self._install(state, handles, unavailable, key, attempted=True)
        if table is not None:
            log.info("endpoint %s: serving generation %d (%s), models ready in %.0f ms",
                     self.endpoint_name, state.generation, table._names(),
                     (time.perf_counter() - started) * 1000)

    def _install(self, state: EndpointState, handles: dict[str, ModelHandle],
                 unavailable: dict[str, str], key: tuple, *, attempted: bool
                 ) -> RoutingTable | None:
        """Swap in the table for `state` (under the lock), or keep the current one.

        Kept when nothing of the state loaded, or when no variant with weight loaded while the
        current table takes traffic: it can still answer what the new state cannot. A current
        table that takes no traffic (a fresh router has none) is replaced: the new one at least
        serves pinned requests and names the broken variants. `attempted`: the unavailable
        models were just tried (the retry back-off grows), not carried over from the last table.
        """
        current = self._table
        keeps_traffic = current is not None and current.total_weight > 0
        if not handles or (keeps_traffic and not _takes_traffic(state, unavailable)):
            self._unapplied_unavailable = unavailable
            message = (f"generation {state.generation}: loading models failed: "
                       + "; ".join(f"{n}: {r}" for n, r in unavailable.items()))
            if handles:
                message += (f" (no variant with traffic weight loaded; still serving generation "
                            f"{current.generation})")
            self._fail(key, message, UnappliedState(state.generation, message, dict(unavailable)))
            return None
        table = RoutingTable(state, handles, unavailable)
        self._swap(table)
        if not unavailable:
            self._variant_failures = 0
            self._variants_retry_at = NEVER
            return table
        if attempted or self._variants_retry_at == NEVER:
            if attempted:
                self._variant_failures += 1
            delay = min(60.0, self._retry_seconds * 2 ** max(0, self._variant_failures - 1))
            self._variants_retry_at = time.monotonic() + delay
            self._check_at = min(self._check_at, self._variants_retry_at)
            log.error("endpoint %s: serving generation %d without unavailable variant(s) (%s); "
                      "retrying in %.1f s", self.endpoint_name, state.generation,
                      table.unavailable_reason(), delay)
        return table

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
        # A table with unavailable variants serves, but /ping (when nothing serves) and
        # operators still need the reason.
        self.last_error = (f"generation {table.generation}: unavailable: "
                           f"{table.unavailable_reason()}"
                           if table is not None and table.unavailable else None)
        self._failed = None
        self._failures = 0
        self._unapplied_unavailable = {}
        self.unapplied = None
        keep = {v.handle.key for v in table.variants.values()} if table else set()
        for cached in list(self._handles):
            if cached not in keep:
                del self._handles[cached]

    def _fail(self, key: tuple, message: str, unapplied: UnappliedState | None = None) -> None:
        """The newest state (at `key`) was not applied: say why, retry after a back-off."""
        self.last_error = message
        self.unapplied = unapplied if unapplied is not None else UnappliedState(None, message)
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

    def _not_in_table(self, table: RoutingTable, target_variant: str | None,
                      unknown: UnknownVariantError) -> ServingError:
        """A pinned variant missing from the served table: if it belongs to a newer state that
        was not applied because its models failed to load, say so (503, so its probe fails
        with the load error) rather than call it unknown."""
        reason = self._unapplied_unavailable.get(target_variant or "")
        if reason is None:
            return unknown
        return VariantUnavailableError(
            f"variant '{target_variant}' of endpoint '{self.endpoint_name}' is unavailable: "
            f"{reason} (its state was not applied; still serving generation "
            f"{table.generation})")

    def select(self, target_variant: str | None = None) -> LoadedVariant:
        """The variant for one request: pinned, else drawn by weight."""
        table = self.current()
        try:
            return table.select(target_variant, self._random)
        except UnknownVariantError as exc:
            raise self._not_in_table(table, target_variant, exc) from None

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

        table = self.current()
        try:
            variant = table.select(target_variant, self._random)
        except UnknownVariantError as exc:
            raise self._not_in_table(table, target_variant, exc) from None
        scores = variant.handle.kernel.score_payload(body, content_type)
        text, produced = output_fn(scores, negotiate_accept(accept))
        return Invocation(text.encode(), produced, variant, scores)

    def score_rows(self, rows: Sequence, target_variant: str | None = None
                   ) -> tuple[np.ndarray, LoadedVariant]:
        """Rows (lists in feature order or dicts by name) → (scores, variant that scored)."""
        table = self.current()
        try:
            variant = table.select(target_variant, self._random)
        except UnknownVariantError as exc:
            raise self._not_in_table(table, target_variant, exc) from None
        return variant.handle.kernel.score_rows(list(rows)), variant

    def variants(self) -> Iterable[LoadedVariant]:
        return self.current().variants.values()
