"""Drift maths throughput: 1M current rows × 30 numeric features against a 200k-row
reference, PSI and KS per feature, with the KS statistic checked against scipy to 1e-12.

Run: .venv/bin/python benchmarks/drift/bench_drift.py [--rows 1000000] [--reference 200000]
     [--features 30] [--repeat 3] [--skip-scipy] [--json PATH]
Prints one table; the figures in docs/performance.md come from this command. With --json the
figures (and the machine block of benchmarks/_common.py) are also written to PATH.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_kit.monitoring.adhoc import compare_frames

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import add_json_argument, write_json  # noqa: E402
from _common import report as json_report  # noqa: E402


def frames(rows: int, reference: int, features: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    ref = {f"f{i:02d}": rng.normal(0, 1 + i / 10, reference) for i in range(features)}
    cur = {f"f{i:02d}": rng.normal(0.02 * (i % 5), 1 + i / 10, rows) for i in range(features)}
    for i in range(0, features, 3):  # some features with heavy ties, as real data has
        ref[f"f{i:02d}"] = np.round(ref[f"f{i:02d}"], 1)
        cur[f"f{i:02d}"] = np.round(cur[f"f{i:02d}"], 1)
    for column in (ref, cur):
        column["f01"][::97] = np.nan  # and missing values
    return pd.DataFrame(ref), pd.DataFrame(cur)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reference", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-scipy", action="store_true")
    add_json_argument(parser)
    args = parser.parse_args()
    bench_started = time.perf_counter()
    reference, current = frames(args.rows, args.reference, args.features)
    compare_frames(reference.head(1000), current.head(1000))  # warm-up
    timings = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        report = compare_frames(reference, current)
        timings.append(time.perf_counter() - started)
    best = min(timings)
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"python {platform.python_version()}, numpy {np.__version__}")
    print(f"kit drift (PSI + KS, {args.features} features, {args.rows:,} × {args.reference:,}):"
          f" best {best:.3f} s of {args.repeat} "
          f"({args.rows * args.features / best / 1e6:.1f} M values/s)")
    if not args.skip_scipy:
        from scipy.stats import ks_2samp

        started = time.perf_counter()
        worst = 0.0
        for name in reference.columns:
            ref = reference[name].dropna().to_numpy()
            cur = current[name].dropna().to_numpy()
            worst = max(worst, abs(ks_2samp(ref, cur).statistic - report["features"][name]["ks"]))
        scipy_seconds = time.perf_counter() - started
        print(f"scipy.stats.ks_2samp, KS only: {scipy_seconds:.3f} s; "
              f"largest |difference| of the KS statistic: {worst:.3e}")
    figures = {"rows": args.rows, "reference_rows": args.reference, "features": args.features,
               "repeat": args.repeat, "kit_seconds": timings, "kit_best_seconds": best,
               "kit_values_per_second": args.rows * args.features / best}
    if not args.skip_scipy:
        figures.update({"scipy_ks_seconds": scipy_seconds,
                        "scipy_over_kit": scipy_seconds / best,
                        "ks_max_abs_difference": worst})
    if args.json:
        write_json(args.json, json_report("drift_maths", figures, started=bench_started,
                                          packages=("numpy", "pandas", "scipy")))
    if not args.skip_scipy and worst > 1e-12:
        raise SystemExit("KS statistic differs from scipy by more than 1e-12")


if __name__ == "__main__":
    main()
