"""Drift maths on plain numpy: quantile baselines and the population stability index (PSI).

The pipeline builds baselines with these functions and the monitors compare live data against
them with the same functions, so a baseline and its comparison can never disagree on binning.
Bins are right-closed: (-inf, e1], (e1, e2], ..., (ek, +inf), plus one bin for missing values.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

# Categories are counted by the one naming rule (`categories`, bundled with this module).
from mlops_kit.core.categories import category_key

PSI_EPSILON = 1e-4
"""Additive smoothing of bin proportions, so an empty bin gives a large but finite PSI."""
MISSING = "__missing__"
OTHER = "__other__"

def quantile_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Interior edges at the 1/bins .. (bins-1)/bins quantiles of the non-missing values."""
    if bins < 2:
        raise ValueError("bins must be at least 2")
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[~np.isnan(finite)]
    if finite.size == 0:
        return np.empty(0)
    quantiles = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1], method="linear")
    return np.unique(quantiles)


def numeric_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin: len(edges)+1 finite bins, then the missing bin."""
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    index = np.searchsorted(edges, values[~missing], side="left")
    counts = np.bincount(index, minlength=len(edges) + 1).astype(np.float64)
    return np.append(counts, missing.sum())


def _category_positions(categories: Sequence[str]) -> dict[str, int]:
    """Category → bin. Keyed by `category_key`, so a baseline written before the rule (an
    integer column's categories stored as "1.0") still counts live "1" in its bin."""
    position: dict[str, int] = {}
    for i, category in enumerate(categories):
        key = category_key(category)
        if key is not None:
            position.setdefault(key, i)
    return position


def categorical_counts(values: Iterable[Any], categories: Sequence[str]) -> np.ndarray:
    """Counts per known category, then OTHER (unseen), then MISSING."""
    position = _category_positions(categories)
    other = len(categories)
    counts = np.zeros(len(categories) + 2)
    for value in values:
        key = category_key(value)
        counts[-1 if key is None else position.get(key, other)] += 1
    return counts


def categorical_counts_from_frequencies(frequencies: Mapping[Any, int], missing: int,
                                        categories: Sequence[str]) -> np.ndarray:
    """Same bins as `categorical_counts`, from value counts a caller already has (e.g. pandas'
    hashed value_counts, much faster than a Python loop over a million values)."""
    position = _category_positions(categories)
    other = len(categories)
    counts = np.zeros(len(categories) + 2)
    for value, count in frequencies.items():
        key = category_key(value)
        counts[-1 if key is None else position.get(key, other)] += count
    counts[-1] += missing
    return counts


def proportions(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else np.zeros_like(counts, dtype=np.float64)


def psi(expected: np.ndarray, actual: np.ndarray, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of two proportion vectors over the same bins."""
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if expected.shape != actual.shape:
        raise ValueError(f"bin counts differ: {expected.shape} vs {actual.shape}")
    k = expected.size
    e = (expected + epsilon) / (1 + epsilon * k)
    a = (actual + epsilon) / (1 + epsilon * k)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_baseline(values: np.ndarray, bins: int) -> dict[str, Any]:
    edges = quantile_edges(values, bins)
    return {"kind": "numeric", "edges": edges.tolist(),
            "proportions": proportions(numeric_counts(values, edges)).tolist()}


def categorical_baseline(values: Sequence[Any], max_categories: int = 50) -> dict[str, Any]:
    """Most frequent categories (ties broken by name, so the baseline is deterministic)."""
    observed: dict[str, int] = {}
    missing = 0
    for value in values:
        key = category_key(value)
        if key is None:
            missing += 1
        else:
            observed[key] = observed.get(key, 0) + 1
    return categorical_baseline_from_frequencies(observed, missing, max_categories)


def categorical_baseline_from_frequencies(observed: Mapping[Any, int], missing: int,
                                          max_categories: int = 50) -> dict[str, Any]:
    # Values naming the same category (1.0 and "1") are one category, counted together.
    merged: dict[str, int] = {}
    for value, count in observed.items():
        key = category_key(value)
        if key is None:
            missing += int(count)
        else:
            merged[key] = merged.get(key, 0) + int(count)
    ranked = sorted(merged.items(), key=lambda item: (-item[1], item[0]))[:max_categories]
    categories = [name for name, _ in ranked]
    counts = categorical_counts_from_frequencies(merged, missing, categories)
    return {"kind": "categorical", "categories": categories,
            "proportions": proportions(counts).tolist()}


def psi_against_baseline(feature_baseline: Mapping[str, Any], values: Any) -> float:
    """PSI of current values against one feature's baseline entry."""
    expected = np.asarray(feature_baseline["proportions"])
    if feature_baseline["kind"] == "numeric":
        actual = proportions(numeric_counts(values, np.asarray(feature_baseline["edges"])))
    else:
        actual = proportions(categorical_counts(values, feature_baseline["categories"]))
    return psi(expected, actual)


KS_BLOCK = 64
"""Distinct reference values per block of the KS search (see `ks_statistic`)."""


def ks_statistic(reference: np.ndarray, current: np.ndarray, *,
                 reference_sorted: bool = False, current_sorted: bool = False) -> float:
    """Two-sample Kolmogorov-Smirnov statistic, equal to `scipy.stats.ks_2samp(...).statistic`.

    Missing values are dropped first. Between two consecutive distinct reference values the
    reference CDF is flat, so the supremum of |F_ref - F_cur| over that stretch is reached at
    its left end or just before its right end: evaluating the current CDF at (and just below)
    each distinct reference value gives the exact statistic.

    With many distinct reference values those evaluations (binary searches of the current
    sample) are most of the cost, so they run in blocks of KS_BLOCK values: both CDFs are
    monotone, so the ends of a block bound every gap inside it, and only blocks whose bound
    beats the largest gap already seen are searched value by value. The result is still exact.
    """
    a = np.asarray(reference, dtype=np.float64)
    if not reference_sorted:
        a = np.sort(a[~np.isnan(a)])
    b = np.asarray(current, dtype=np.float64)
    if not current_sorted:
        b = np.sort(b[~np.isnan(b)])
    if a.size == 0 or b.size == 0:
        return float("nan")
    last_of_run = np.append(a[1:] != a[:-1], True)
    grid = a[last_of_run]
    f_ref = (np.flatnonzero(last_of_run) + 1) / a.size
    f_ref_before = np.concatenate(([0.0], f_ref[:-1]))

    def current_cdf(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """F_cur at grid[index] and just below it."""
        at = np.searchsorted(b, grid[index], side="right") / b.size
        below = np.searchsorted(b, grid[index], side="left") / b.size
        return at, below

    def gaps(index: np.ndarray) -> np.ndarray:
        at, below = current_cdf(index)
        return np.maximum(np.abs(f_ref[index] - at), np.abs(f_ref_before[index] - below))

    if grid.size <= 8 * KS_BLOCK:
        return float(gaps(np.arange(grid.size)).max())
    starts = np.arange(0, grid.size, KS_BLOCK)
    ends = np.minimum(starts + KS_BLOCK - 1, grid.size - 1)
    at_start, below_start = current_cdf(starts)
    at_end, below_end = current_cdf(ends)
    largest = max(
        np.maximum(np.abs(f_ref[starts] - at_start), np.abs(f_ref_before[starts] - below_start)).max(),
        np.maximum(np.abs(f_ref[ends] - at_end), np.abs(f_ref_before[ends] - below_end)).max())
    bound = np.maximum.reduce([f_ref[ends] - at_start, at_end - f_ref[starts],
                               f_ref_before[ends] - below_start, below_end - f_ref_before[starts]])
    open_blocks = np.flatnonzero(bound > largest)
    if open_blocks.size:
        inside = (starts[open_blocks, None] + np.arange(1, KS_BLOCK - 1)).ravel()
        inside = inside[inside < np.repeat(ends[open_blocks], KS_BLOCK - 2)]
        if inside.size:
            largest = max(largest, gaps(inside).max())
    return float(largest)


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve as scikit-learn's `average_precision_score`
    computes it (step-wise, ties as one threshold), in plain numpy for the monitors."""
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.size == 0 or labels.sum() == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), labels.size - 1]
    true_positives = np.cumsum(labels)[last_of_tie]
    predicted = last_of_tie + 1
    precision = true_positives / predicted
    recall = true_positives / labels.sum()
    recall_steps = np.diff(np.r_[0.0, recall])
    return float(np.sum(recall_steps * precision))


def feature_drift(baseline: Mapping[str, Any], current: Mapping[str, Any],
                  reference: Mapping[str, np.ndarray] | None = None) -> dict[str, dict[str, float]]:
    """Per-feature PSI on the baseline's bins, and KS where a reference sample is given."""
    result: dict[str, dict[str, float]] = {}
    for name, entry in baseline["features"].items():
        if name not in current:
            continue
        values = current[name]
        metrics = {"psi": psi_against_baseline(entry, values)}
        if reference is not None and entry["kind"] == "numeric" and name in reference:
            metrics["ks"] = ks_statistic(reference[name], np.asarray(values, dtype=np.float64))
        result[name] = metrics
    return result


def sorted_valid(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Sorted non-missing values (a view: numpy sorts NaN last) and the number of missing."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    valid = int(np.searchsorted(ordered, np.inf, side="right"))
    return ordered[:valid], ordered.size - valid


def numeric_drift(reference: np.ndarray, current: np.ndarray, bins: int = 10
                  ) -> dict[str, Any]:
    """PSI on the reference's quantile bins and the KS statistic, sorting each sample once.

    Same numbers as `numeric_baseline` + `psi_against_baseline` + `ks_statistic`; the hot path
    of `mlops drift`, where sorting is most of the cost.
    """
    a, a_missing = sorted_valid(reference)
    b, b_missing = sorted_valid(current)
    edges = quantile_edges(a, bins)
    expected = _counts_from_sorted(a, a_missing, edges)
    actual = _counts_from_sorted(b, b_missing, edges)
    return {"psi": psi(proportions(expected), proportions(actual)),
            "ks": ks_statistic(a, b, reference_sorted=True, current_sorted=True)
            if a.size and b.size else float("nan"),
            "edges": edges.tolist(), "reference_proportions": proportions(expected).tolist()}


def _counts_from_sorted(ordered: np.ndarray, missing: int, edges: np.ndarray) -> np.ndarray:
    """`numeric_counts` for an already sorted sample: right-closed bins by binary search."""
    cumulative = np.searchsorted(ordered, edges, side="right")
    counts = np.diff(np.concatenate(([0], cumulative, [ordered.size]))).astype(np.float64)
    return np.append(counts, missing)
