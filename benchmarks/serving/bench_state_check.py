"""Benchmark following the state file: the per-request cost of `ScoringRouter.refresh()`.

    .venv/bin/python benchmarks/serving/bench_state_check.py [--calls 20000] [--rounds 15]
        [--dir DIR] [--json PATH]

Every request the endpoint serves starts with `router.refresh()` (serving/router.py): one
`os.stat` of the state file when it is settled, and a re-read of its bytes (open, fstat, read,
compare) on every request while it is younger than `STATE_SETTLE_SECONDS` (2 s). Measured, in
one process, on a real state file and a real (tiny) model, per call:

  os.stat            a bare `os.stat` of the state file: the floor
  refresh, settled   `router.refresh()` on a file older than 2 s (the usual case; includes the
                     re-check of its bytes once a second, amortised)
  refresh, fresh     `router.refresh()` in the 2 s after the file was replaced (same content,
                     new inode; each round rewrites it, applies it, then times its calls)

Each round times `--calls` calls in a row; the table gives the median and the best round's
mean per call. `--json PATH` also writes the figures, with benchmarks/_common.py's machine
block and the command line, to PATH (atomically). Standard library, numpy and XGBoost only;
no HTTP, no `wrk`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import (add_json_argument, machine_line, report as json_report,  # noqa: E402
                     table, write_json)

ENDPOINT = "bench-state-check"


def tiny_model(model_dir: Path) -> Path:
    """A 3-feature, 2-tree booster: the model does not matter to refresh(), loading one does."""
    import numpy as np
    import xgboost as xgb

    from mlops_pipelines.steps.inference import FeatureSpec
    from mlops_pipelines.steps.train import save_model

    rng = np.random.default_rng(0)
    matrix = rng.random((200, 3), dtype=np.float32)
    labels = (matrix[:, 0] > 0.5).astype(np.float32)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1},
                        xgb.DMatrix(matrix, label=labels), num_boost_round=2)
    save_model(booster, FeatureSpec(("a", "b", "c"), {}), model_dir)
    return model_dir


def filesystem(path: Path) -> str:
    """The filesystem type holding `path` (longest mount point prefix in /proc/self/mounts)."""
    best, kind = "", "unknown"
    try:
        for line in Path("/proc/self/mounts").read_text().splitlines():
            fields = line.split()
            mount = fields[1]
            if (str(path) == mount or str(path).startswith(mount.rstrip("/") + "/")) \
                    and len(mount) >= len(best):
                best, kind = mount, fields[2]
    except (OSError, IndexError):
        pass
    return kind


def per_call(function, calls: int) -> float:
    """Seconds per call of `function` over `calls` calls in a row."""
    started = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - started) / calls


def rewrite(home: Path, state) -> None:
    """Replace the state file (atomically, new inode), as the controllers do."""
    from mlops_kit.endpoint_state import save_state

    save_state(home, state)


def bench(root: Path, calls: int, rounds: int) -> dict:
    from mlops_kit.serving.router import STATE_RECHECK_SECONDS, STATE_SETTLE_SECONDS, \
        ScoringRouter
    from mlops_kit.clock import utc_now_iso
    from mlops_kit.endpoint_state import EndpointState, ServedVariant, save_state

    home = root / "home"
    model_dir = tiny_model(root / "model")
    state = EndpointState(ENDPOINT, "InService", (ServedVariant("v1", 1, str(model_dir), 1.0),),
                          f"{ENDPOINT}-config", utc_now_iso(), 1)
    save_state(home, state)
    router = ScoringRouter(home, ENDPOINT)
    try:
        assert router.refresh() is not None, router.last_error
        path = str(router.path)

        # Fresh: each round replaces the file, applies it (the first refresh after a write
        # loads nothing: same models), then times calls that must all fall in the 2 s window.
        fresh, fresh_outside = [], 0
        for _ in range(rounds):
            rewrite(home, state)
            written = time.monotonic()
            router.refresh()
            seconds = per_call(router.refresh, calls)
            if time.monotonic() - written < STATE_SETTLE_SECONDS:
                fresh.append(seconds)
            else:  # the round ran past the window: part of it measured the settled path
                fresh_outside += 1

        # Settled: wait until the last write is older than the settle window.
        time.sleep(STATE_SETTLE_SECONDS + 0.2)
        router.refresh()
        settled, bare = [], []
        for _ in range(rounds):
            settled.append(per_call(router.refresh, calls))
            bare.append(per_call(lambda: os.stat(path), calls))
        assert router.table is not None and router.last_error is None, router.last_error
    finally:
        router.close()

    def figures(samples: list[float]) -> dict:
        return {"rounds": len(samples), "calls_per_round": calls,
                "median_us": statistics.median(samples) * 1e6 if samples else None,
                "best_us": min(samples) * 1e6 if samples else None,
                "samples_us": [round(s * 1e6, 4) for s in samples]}

    return {"directory": str(root), "filesystem": filesystem(root),
            "state_file_bytes": os.path.getsize(path),
            "settle_seconds": STATE_SETTLE_SECONDS, "recheck_seconds": STATE_RECHECK_SECONDS,
            "cases": {"os.stat": figures(bare), "refresh, settled": figures(settled),
                      "refresh, fresh": figures(fresh)},
            "fresh_rounds_past_the_window": fresh_outside}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000,
                        help="calls timed in a row per round (a fresh round must fit in 2 s)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to put the state file (default: a temporary directory)")
    add_json_argument(parser)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-state-", dir=args.dir) as tmp:
        results = bench(Path(tmp), args.calls, args.rounds)
    doc = json_report("serving_state_check", results, started=started,
                      packages=("numpy", "xgboost-cpu", "xgboost"))
    cases = results["cases"]
    settled = cases["refresh, settled"]["median_us"]
    print(machine_line(doc["machine"]))
    print(f"state file: {results['state_file_bytes']} bytes on {results['filesystem']} "
          f"({results['directory']}); {args.rounds} rounds of {args.calls:,} calls each\n")
    print(table(["per request", "median µs/call", "best round µs/call", "× os.stat"], [
        [name, f"{c['median_us']:.3f}" if c["median_us"] is not None else "n/a",
         f"{c['best_us']:.3f}" if c["best_us"] is not None else "n/a",
         f"{c['median_us'] / cases['os.stat']['median_us']:.2f}"
         if c["median_us"] is not None else "n/a"]
        for name, c in cases.items()]))
    if results["fresh_rounds_past_the_window"]:
        print(f"\n{results['fresh_rounds_past_the_window']} fresh round(s) ran past the 2 s "
              f"window and were left out: lower --calls")
    print(f"\nrefresh() on a settled file: {settled:.2f} µs a request")
    if args.json is not None:
        write_json(args.json, doc)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
