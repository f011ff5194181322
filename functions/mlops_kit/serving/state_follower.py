"""Following one endpoint's state file: the routing table that serves its newest good state.

The state file (`endpoint_state.py`) is written by the deployment and rollback controllers. A
follower keeps every variant in it loaded, warm fallbacks included.

Following the file costs one `os.stat` (and one clock read) per request. The stat signature
(mtime, ctime, inode, size) alone can miss a change: the controllers replace the file
atomically, and writes of the same size within one filesystem timestamp tick (a few ms) may
reuse a freed inode, so a later file can carry exactly the signature of an earlier one. The
follower therefore also compares the file's bytes: on every request while the file it applied
is younger than `STATE_SETTLE_SECONDS` (only then can a same-tick replacement still come; a
later write gets a later timestamp), and every `recheck_seconds` afterwards (a safety net for
clock steps and filesystems with odd timestamps). A quiet file costs the stat and nothing else.
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
  *unavailable* (`RoutingTable.unavailable`, `last_error`, the log; `serving/routing.py` says
  where its traffic goes) and its load is retried with the same back-off. If no variant with
  positive weight loaded, a running follower keeps its last good table (it could still serve
  traffic); a freshly started one, having none, applies the state anyway, so pinned requests
  and probes reach the healthy fallbacks while unpinned ones get 503 naming the broken
  variant(s). A state in which no variant at all loaded is not applied.

A newest state that was not applied (unreadable, or kept out as above) is named in `unapplied`
(its generation, the reason, its broken variants) until a state is applied: the endpoint's
/ping reports it as "Degraded", so a promotion or rollback that never took effect does not look
healthy while the previous generation keeps serving.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_kit.serving.model_loader import ModelCache, ModelHandle, ModelLoader
from mlops_kit.serving.routing import RoutingTable, takes_traffic, variant_set
from mlops_kit.endpoint_state import EndpointState, state_path

log = logging.getLogger(__name__)

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


class StateFollower:
    """Keeps `table` on the newest applicable state of one endpoint's state file.

    Thread-safe: `refresh` serialises state changes; readers get an immutable table.
    """

    def __init__(self, home: str | Path, endpoint_name: str, *,
                 loader: ModelLoader | None = None, background: bool = False,
                 retry_seconds: float = 1.0, recheck_seconds: float = STATE_RECHECK_SECONDS):
        self.home = Path(home)
        self.endpoint_name = endpoint_name
        self.path = state_path(self.home, endpoint_name)
        self._path_str = str(self.path)
        self._models = ModelCache(loader)
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
        self._executor: ThreadPoolExecutor | None = None
        self._pending = None
        self.last_error: str | None = None

    @property
    def table(self) -> RoutingTable | None:
        return self._table

    def unapplied_reason(self, variant_name: str) -> str | None:
        """Why `variant_name`, a variant of a newer state that was not applied because models
        failed to load, is unavailable; None if it is not one."""
        return self._unapplied_unavailable.get(variant_name)

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

    # -- applying a changed file ---------------------------------------------------------------
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

    def _apply(self, stat_key: tuple | None) -> None:
        with self._lock:
            now = time.monotonic()
            if stat_key == self._seen and now < self._check_at:
                return  # another thread has just checked it
            if stat_key is None:
                self._state_gone()
                return
            changed = self._read_changed(stat_key, now)
            if changed is not None:
                self._adopt(*changed, now)

    def _state_gone(self) -> None:
        self._seen = self._seen_content = None
        self._check_at = self._variants_retry_at = NEVER
        self._wanted += 1
        if self._table is not None:
            log.warning("endpoint %s: state file %s is gone; serving stops",
                        self.endpoint_name, self.path)
            self._swap(None)

    def _read_changed(self, stat_key: tuple, now: float
                      ) -> tuple[EndpointState, tuple, bytes, bool] | None:
        """(state, its signature, its bytes, whether unavailable variants are due a retry) when
        the file holds a state to apply; None when it is unchanged, or not applicable (the
        failure is recorded)."""
        try:
            key, content = _read_state_file(self._path_str)
        except FileNotFoundError:
            return None  # replaced or removed since the stat: the next refresh sees which
        except OSError as exc:
            self._fail(stat_key, f"state file {self.path} is unreadable: {exc}")
            return None
        retry_variants = now >= self._variants_retry_at
        if key == self._seen and content == self._seen_content and not retry_variants:
            self._check_at = self._next_check(key, now)
            return None
        try:
            state = EndpointState.from_dict(json.loads(content))
        except (ValueError, KeyError, TypeError) as exc:
            self._fail(key, f"state file {self.path} is unreadable: {exc}")
            return None
        if state.endpoint_name != self.endpoint_name:
            self._fail(key, f"state file {self.path} names endpoint "
                            f"'{state.endpoint_name}', not '{self.endpoint_name}'")
            return None
        return state, key, content, retry_variants

    def _adopt(self, state: EndpointState, key: tuple, content: bytes, retry_variants: bool,
               now: float) -> None:
        self._seen, self._seen_content = key, content
        self._wanted += 1
        token = self._wanted
        current = self._table
        if (current is not None and not retry_variants
                and variant_set(current.state) == variant_set(state)
                and takes_traffic(state, current.unavailable)):
            # Weights only: same models, the same ones still unavailable (their retry keeps its
            # schedule), applied at once. New weights that only an unavailable variant would
            # carry go the loading way below: it retries that model first.
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
        handles, unavailable = self._models.load(state)
        with self._lock:
            if token != self._wanted:
                return  # a newer state superseded this one while it loaded
            table = self._install(state, handles, unavailable, key, attempted=True)
        if table is not None:
            log.info("endpoint %s: serving generation %d (%s), models ready in %.0f ms",
                     self.endpoint_name, state.generation, table.describe(),
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
        if not handles or (keeps_traffic and not takes_traffic(state, unavailable)):
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
            self._schedule_variant_retry(table, attempted)
        return table

    def _schedule_variant_retry(self, table: RoutingTable, attempted: bool) -> None:
        if attempted:
            self._variant_failures += 1
        delay = min(60.0, self._retry_seconds * 2 ** max(0, self._variant_failures - 1))
        self._variants_retry_at = time.monotonic() + delay
        self._check_at = min(self._check_at, self._variants_retry_at)
        log.error("endpoint %s: serving generation %d without unavailable variant(s) (%s); "
                  "retrying in %.1f s", self.endpoint_name, table.generation,
                  table.unavailable_reason(), delay)

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
        served = table.variants.values() if table is not None else ()
        self._models.retain(v.handle.key for v in served)

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
