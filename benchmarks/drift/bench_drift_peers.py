"""Drift maths against the peers a user would otherwise pick, on the same data, values compared.

One run times, on the same 200k-row reference × 1M-row current × 30 numeric features (ties and
missing values included, built by bench_drift.frames):
  - the kit: `mlops drift`'s engine (mlops_kit.monitoring.adhoc.compare_frames), PSI + KS per
    feature, with its default 2 worker threads and with 1;
  - plain pandas/scipy, as a user would write it: reference-decile bins with pandas, PSI, and
    scipy.stats.ks_2samp;
  - Evidently's data drift report (DataDriftPreset), once with PSI and once with KS;
  - NannyML's UnivariateDriftCalculator, Kolmogorov-Smirnov, its default (estimated from 10,000
    bins when the reference has 10,000 rows or more), the same plus Jensen-Shannon (NannyML has
    no PSI; JS is its binned distance, so KS + JS matches the kit's KS + PSI in work), and its
    exact KS;
and checks the values: KS statistic against scipy and NannyML, the KS p-value against Evidently's,
PSI against the pandas version and, on Evidently's own bins, against Evidently's.

Needs the benchmark environment (peers are not in the default one): `make bench-setup`, then
    .venv-bench/bin/python benchmarks/drift/bench_drift_peers.py [--rows 1000000]
        [--reference 200000] [--features 30] [--repeat 3] [--repeat-evidently 1] [--json PATH]
Every implementation but Evidently is timed best of --repeat; each Evidently report best of
--repeat-evidently (minutes each at full size).
Exit 1 when a value disagrees beyond its tolerance. Figures: docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

# Peers phone home on import or first use; this machine has no route out, so say no up front.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")
os.environ.setdefault("EVIDENTLY_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import add_json_argument, machine_line, report, table, write_json  # noqa: E402
from drift.bench_drift import frames  # noqa: E402

from mlops_kit.core import drift  # noqa: E402
from mlops_kit.monitoring.adhoc import compare_frames  # noqa: E402

KIT = "kit, 2 threads (mlops drift default)"
KIT_ONE_THREAD = "kit, 1 thread"
KS_TOLERANCE = 1e-12          # the kit's KS is exact: it must equal scipy's
PSI_TOLERANCE = 1e-9          # same bins, same smoothing: same PSI up to float rounding
P_VALUE_TOLERANCE = 1e-9      # Evidently's p-value is scipy's; from the same statistic, the same
NANNYML_ESTIMATE_TOLERANCE = 2e-3  # NannyML's default KS is a 10,000-bin estimate


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def kit(reference: pd.DataFrame, current: pd.DataFrame, workers: int) -> dict[str, dict]:
    return compare_frames(reference, current, bins=10, workers=workers)["features"]


def plain_pandas_scipy(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, dict]:
    """What a user writes without a library: deciles of the reference as bin edges, PSI with the
    same additive smoothing as the kit, scipy's two-sample KS."""
    from scipy.stats import ks_2samp

    results = {}
    for name in reference.columns:
        ref, cur = reference[name], current[name]
        edges = np.unique(ref.quantile(np.linspace(0, 1, 11)[1:-1]).to_numpy())
        bins = np.concatenate(([-np.inf], edges, [np.inf]))
        expected = pd.cut(ref, bins, right=True).value_counts(sort=False).to_numpy()
        actual = pd.cut(cur, bins, right=True).value_counts(sort=False).to_numpy()
        expected = np.append(expected, ref.isna().sum()) / len(ref)
        actual = np.append(actual, cur.isna().sum()) / len(cur)
        eps = drift.PSI_EPSILON
        e = (expected + eps) / (1 + eps * expected.size)
        a = (actual + eps) / (1 + eps * actual.size)
        psi = float(np.sum((a - e) * np.log(a / e)))
        ks = ks_2samp(ref.dropna().to_numpy(), cur.dropna().to_numpy())
        results[name] = {"psi": psi, "ks": float(ks.statistic), "p_value": float(ks.pvalue)}
    return results


def evidently_report(reference: pd.DataFrame, current: pd.DataFrame, method: str) -> dict[str, float]:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    snapshot = Report([DataDriftPreset(num_method=method)]).run(current, reference)
    values = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith("ValueDrift"):
            values[config["column"]] = float(metric["value"])
    return values


def nannyml_ks(reference: pd.DataFrame, current: pd.DataFrame, method: str,
               also: tuple[str, ...] = ()) -> dict[str, float]:
    """KS statistic per column; `also` adds NannyML methods to the same run (their values are
    computed and timed, not returned)."""
    import nannyml as nml

    columns = list(reference.columns)
    # NannyML 0.13.1 looks for the method's name as a key but reads the setting one level up,
    # so the setting goes in both places (with only the documented nesting, "exact" is ignored).
    params = {"kolmogorov_smirnov": {"calculation_method": method}, "calculation_method": method}
    calculator = nml.UnivariateDriftCalculator(
        column_names=columns, continuous_methods=["kolmogorov_smirnov", *also], chunk_number=1,
        computation_params=params)
    calculator.fit(reference)
    frame = calculator.calculate(current).filter(period="analysis").to_df()
    return {name: float(frame[(name, "kolmogorov_smirnov", "value")].iloc[0]) for name in columns}


def ks_p_value(statistic: float, n_reference: int, n_current: int) -> float:
    """Two-sided p-value as scipy's ks_2samp computes it for large samples (its asymptotic
    method, which it picks above 10,000 rows), from a statistic computed elsewhere."""
    from scipy.stats import kstwo

    effective = n_reference * n_current / (n_reference + n_current)
    return float(np.clip(kstwo.sf(statistic, np.round(effective)), 0, 1))


def evidently_bins_psi(reference: pd.Series, current: pd.Series) -> float:
    """The kit's psi() on the bins Evidently's PSI uses (Sturges bins over both samples, missing
    values dropped), with Evidently's zero filling instead of the kit's additive smoothing."""
    ref, cur = reference.dropna().to_numpy(), current.dropna().to_numpy()
    edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
    expected = np.histogram(ref, edges)[0] / ref.size
    actual = np.histogram(cur, edges)[0] / cur.size
    for shares in (expected, actual):
        smallest = shares[shares > 0].min()
        shares[shares == 0] = smallest / 1e6 if smallest <= 1e-4 else 1e-4
    return drift.psi(expected, actual, epsilon=0.0)


def largest_difference(left: dict[str, float], right: dict[str, float]) -> float:
    return max(abs(left[name] - right[name]) for name in left)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reference", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each implementation but Evidently (the best is kept)")
    parser.add_argument("--repeat-evidently", type=int, default=1,
                        help="runs of each Evidently report (minutes each at full size)")
    add_json_argument(parser)
    args = parser.parse_args()
    started = time.perf_counter()
    packages = ("numpy", "pandas", "scipy", "evidently", "nannyml")
    warnings.filterwarnings("ignore")
    reference, current = frames(args.rows, args.reference, args.features)
    # Warm-up on a slice: imports and first-call set-up of every path are not part of any figure.
    small_reference, small_current = reference.head(2000), current.head(2000)
    compare_frames(small_reference, small_current)
    plain_pandas_scipy(small_reference, small_current)
    evidently_report(small_reference, small_current, "psi")
    evidently_report(small_reference, small_current, "ks")
    nannyml_ks(small_reference, small_current, "auto", ("jensen_shannon",))
    nannyml_ks(small_reference, small_current, "exact")

    def best(repeat: int, function, *call_args):
        """Best of `repeat` runs: the figure least disturbed by anything else on the machine."""
        return min((timed(function, *call_args) for _ in range(repeat)), key=lambda r: r[1])

    seconds: dict[str, float] = {}
    kit_values, seconds[KIT] = best(args.repeat, kit, reference, current, 2)
    _, seconds[KIT_ONE_THREAD] = best(args.repeat, kit, reference, current, 1)
    plain, seconds["pandas + scipy (PSI + KS)"] = best(args.repeat, plain_pandas_scipy,
                                                       reference, current)
    # Evidently takes minutes per report, so it runs --repeat-evidently times (default once).
    evidently_psi, psi_seconds = best(args.repeat_evidently, evidently_report, reference,
                                      current, "psi")
    evidently_ks, ks_seconds = best(args.repeat_evidently, evidently_report, reference,
                                    current, "ks")
    seconds["Evidently DataDriftPreset (PSI report + KS report)"] = psi_seconds + ks_seconds
    nannyml_default, seconds["NannyML univariate KS (default: estimated)"] = best(
        args.repeat, nannyml_ks, reference, current, "auto")
    # NannyML has no PSI; Jensen-Shannon is its binned distance of the same kind, so KS + JS is
    # the same amount of work as the kit's KS + PSI.
    _, seconds["NannyML univariate KS (estimated) + Jensen-Shannon"] = best(
        args.repeat, nannyml_ks, reference, current, "auto", ("jensen_shannon",))
    nannyml_exact, seconds["NannyML univariate KS (exact)"] = best(
        args.repeat, nannyml_ks, reference, current, "exact")

    names = list(reference.columns)
    kit_ks = {n: kit_values[n]["ks"] for n in names}
    kit_psi = {n: kit_values[n]["psi"] for n in names}
    kit_p = {n: ks_p_value(kit_ks[n], int(reference[n].notna().sum()),
                           int(current[n].notna().sum())) for n in names}
    on_evidently_bins = {n: evidently_bins_psi(reference[n], current[n]) for n in names}
    verdicts_agree = sum((kit_psi[n] >= 0.1) == (evidently_psi[n] >= 0.1) for n in names)
    comparisons = [
        ("KS statistic, kit vs scipy.stats.ks_2samp", largest_difference(
            kit_ks, {n: plain[n]["ks"] for n in names}), KS_TOLERANCE),
        ("KS statistic, kit vs NannyML exact", largest_difference(kit_ks, nannyml_exact),
         KS_TOLERANCE),
        ("KS statistic, kit vs NannyML default (estimate)", largest_difference(
            kit_ks, nannyml_default), NANNYML_ESTIMATE_TOLERANCE),
        ("KS p-value, kit's statistic vs Evidently", largest_difference(kit_p, evidently_ks),
         P_VALUE_TOLERANCE),
        ("PSI, kit vs pandas deciles", largest_difference(
            kit_psi, {n: plain[n]["psi"] for n in names}), PSI_TOLERANCE),
        ("PSI on Evidently's bins, kit psi() vs Evidently", largest_difference(
            on_evidently_bins, evidently_psi), PSI_TOLERANCE),
    ]

    kit_best, kit_one = seconds[KIT], seconds[KIT_ONE_THREAD]
    results = {
        "data": {"reference_rows": args.reference, "current_rows": args.rows,
                 "features": args.features},
        "seconds": seconds,
        "ratio_to_kit": {label: value / kit_best for label, value in seconds.items()},
        "ratio_to_kit_one_thread": {label: value / kit_one for label, value in seconds.items()},
        "comparisons": [{"what": label, "largest_difference": difference, "tolerance": tolerance,
                         "agree": difference <= tolerance}
                        for label, difference, tolerance in comparisons],
        "psi_verdicts_agree": f"{verdicts_agree}/{len(names)}",
    }
    document = report("drift_peers", results, packages=packages, started=started)
    print(machine_line(document["machine"]))
    print(f"data: reference {args.reference:,} × current {args.rows:,} rows × {args.features} "
          "numeric features (a third with ties, one with 1 % missing)\n")
    print(table(["implementation", "seconds", "× the kit's time (2 threads)",
                 "× the kit's time (1 thread)"],
                [(label, f"{value:.2f}", f"{value / kit_best:.1f}", f"{value / kit_one:.1f}")
                 for label, value in seconds.items()]))
    print()
    print(table(["values compared (all features)", "largest difference", "tolerance", "agree"],
                [(c["what"], f"{c['largest_difference']:.2e}", f"{c['tolerance']:.0e}",
                  "yes" if c["agree"] else "NO") for c in results["comparisons"]]))
    print(f"\nPSI ≥ 0.1 verdicts, kit (reference deciles) vs Evidently (Sturges bins over both "
          f"samples): {verdicts_agree} of {len(names)} features agree.")
    if args.json:
        write_json(args.json, document)
    failed = not all(c["agree"] for c in results["comparisons"])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
