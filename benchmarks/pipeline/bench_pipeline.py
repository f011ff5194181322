"""`mlops pipeline run` wall time against the number of rows (default 10k, 100k, 1M).

    .venv/bin/python benchmarks/pipeline/bench_pipeline.py [--sizes 10k,100k,1M] [--json PATH]

Per size, in a temporary folder: `mlops data generate --rows N --seed 42` writes the input
(timed, not counted in the pipeline's time), then `mlops pipeline run --data FILE --json` runs
as a subprocess in a fresh, empty $MLOPS_HOME (so each run creates its MLflow store and
registry, like the first run of a new home). Imports are as the environment has them: on the
project machine there is no .pyc and PYTHONDONTWRITEBYTECODE=1, so every run compiles its
imports (MLflow's above all); the JSON's machine.bytecode records which. One untimed run at
--warmup-rows (2,000) goes first, so the first size does not also pay for a cold page cache.

Measured: the CLI subprocess's wall time; the per-step times the run reports
(`timings_seconds` of its JSON: preprocess, train, evaluate, gate, register; each includes its
imports); the rest of the wall time (interpreter and CLI start-up, set-up). Derived: rows/s
over the whole run and, between consecutive sizes, the growth of the wall time and of each step
against the ratio of rows (1.0: constant time; equal to the rows ratio: linear). Exit 3 (a gate
failed, nothing registered) still counts as a measurement and is reported; any other failure
stops the benchmark.

Expect ~25 s at 10k, ~30 s at 100k and a few minutes at 1M on 2 cores (training dominates).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import (ROOT, add_json_argument, machine_line, report, table,  # noqa: E402
                     write_json)

STEPS = ("preprocess", "train", "evaluate", "gate", "register")


def parse_size(text: str) -> int:
    text = text.strip().lower().replace("_", "")
    factor = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if factor > 1 else text) * factor)


def mlops() -> list[str]:
    script = Path(sys.executable).with_name("mlops")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mlops_kit.cli"]


def run_size(rows: int, workdir: Path, seed: int, params: list[str]) -> dict:
    env = {**os.environ, "MLOPS_HOME": str(workdir / "home")}
    data = workdir / f"data-{rows}.parquet"
    started = time.perf_counter()
    subprocess.run(mlops() + ["data", "generate", "--out", str(data), "--rows", str(rows),
                              "--seed", str(seed)], env=env, check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    generate_seconds = time.perf_counter() - started
    command = mlops() + ["pipeline", "run", "--data", str(data), "--json"]
    for param in params:
        command += ["--param", param]
    started = time.perf_counter()
    out = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if out.returncode not in (0, 3):
        raise SystemExit(f"mlops pipeline run at {rows:,} rows exited {out.returncode}:\n"
                         f"{out.stderr[-3000:]}")
    result = json.loads(out.stdout)
    return {"rows": rows, "exit_code": out.returncode, "status": result.get("status"),
            "version": result.get("version"), "wall_seconds": wall,
            "rows_per_second": rows / wall, "generate_seconds": generate_seconds,
            "input_bytes": data.stat().st_size,
            "steps_seconds": result.get("timings_seconds", {}),
            "outside_steps_seconds": wall - sum(result.get("timings_seconds", {}).values()),
            "aupr": result.get("metrics", {}).get("aupr"),
            "failed_gates": [g["gate"] for g in result.get("gates", []) if not g.get("passed")]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10k,100k,1M",
                        help="comma-separated row counts (10k, 1M, 250000 …)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--param", action="append", default=[],
                        help="NAME=VALUE passed to `mlops pipeline run --param` (repeatable)")
    parser.add_argument("--warmup-rows", type=int, default=2000,
                        help="one untimed run of this size first, so the first measured size "
                             "does not also pay for a cold page cache (0: none)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the homes and data under this folder instead of a temp dir")
    add_json_argument(parser)
    args = parser.parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    started = time.perf_counter()
    warmup = None
    if args.warmup_rows:
        with tempfile.TemporaryDirectory(prefix="bench-pipeline-warmup-") as tmp:
            warmup = run_size(args.warmup_rows, Path(tmp), args.seed, args.param)
        print(f"warm-up, {args.warmup_rows:,} rows: {warmup['wall_seconds']:.1f} s (not counted)",
              file=sys.stderr)
    runs = []
    for rows in sizes:
        if args.keep:
            workdir = args.keep / f"rows-{rows}"
            workdir.mkdir(parents=True, exist_ok=False)
            runs.append(run_size(rows, workdir, args.seed, args.param))
        else:
            with tempfile.TemporaryDirectory(prefix=f"bench-pipeline-{rows}-") as tmp:
                runs.append(run_size(rows, Path(tmp), args.seed, args.param))
        last = runs[-1]
        print(f"{rows:,} rows: {last['wall_seconds']:.1f} s ({last['status']})", file=sys.stderr)
    growth = []
    for before, after in zip(runs, runs[1:]):
        growth.append({"from_rows": before["rows"], "to_rows": after["rows"],
                       "rows_ratio": after["rows"] / before["rows"],
                       "wall_ratio": after["wall_seconds"] / before["wall_seconds"],
                       "steps_ratio": {s: after["steps_seconds"][s] / before["steps_seconds"][s]
                                       for s in STEPS
                                       if before["steps_seconds"].get(s)
                                       and s in after["steps_seconds"]}})
    doc = report("pipeline_run", {"sizes": runs, "growth": growth, "params": args.param,
                                  "warmup": warmup},
                 started=started, packages=("numpy", "pandas", "pyarrow", "pandera",
                                            "xgboost-cpu", "xgboost", "mlflow", "scikit-learn"))
    print_report(doc)
    if args.json:
        write_json(args.json, doc)
    return 0


def print_report(doc: dict) -> None:
    print(machine_line(doc["machine"]) + "\n")
    print("`mlops pipeline run --data FILE --json`, fresh $MLOPS_HOME per size:\n")
    rows = []
    for r in doc["results"]["sizes"]:
        steps = r["steps_seconds"]
        rows.append([f"{r['rows']:,}", f"{r['wall_seconds']:.1f} s", f"{r['rows_per_second']:,.0f}",
                     *(f"{steps[s]:.2f} s" if s in steps else "" for s in STEPS),
                     f"{r['outside_steps_seconds']:.2f} s",
                     f"{r['status']}" + (f" ({', '.join(r['failed_gates'])})"
                                         if r["failed_gates"] else ""),
                     f"{r['generate_seconds']:.1f} s"])
    print(table(["rows", "wall", "rows/s", *STEPS, "outside the steps (CLI start-up, set-up)",
                 "result", "data generate (not counted)"],
                rows))
    if doc["results"]["growth"]:
        print("\nGrowth between sizes (same run):\n")
        print(table(["sizes", "rows ×", "wall ×", "train ×", "preprocess ×", "evaluate ×"],
                    [[f"{g['from_rows']:,} → {g['to_rows']:,}", f"{g['rows_ratio']:g}",
                      f"{g['wall_ratio']:.2f}",
                      *(f"{g['steps_ratio'][s]:.2f}" if s in g["steps_ratio"] else ""
                        for s in ("train", "preprocess", "evaluate"))]
                     for g in doc["results"]["growth"]]))


if __name__ == "__main__":
    sys.exit(main())
