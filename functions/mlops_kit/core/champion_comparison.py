"""Champion against candidate on the same rows: the paired difference and its uncertainty.

Both models score the same test split, so most of the split's sampling noise is shared: a hard
split lowers both AUPRs. Resampling the rows (the same resample for both models) and taking the
difference each time keeps that pairing; the spread of the differences is the uncertainty of the
comparison, far smaller than the spread of either AUPR alone. The no-regression gate decides on
the interval's upper bound of the AUPR lost, so a candidate is refused unless the data show it
loses at most a small tolerance — a point estimate inside a loose allowance teaches people to
ignore the gate.

numpy only: it runs in the evaluation container and locally alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DEFAULT_SAMPLES = 500
DEFAULT_CONFIDENCE = 0.90
"""Two-sided 90 %: its upper bound is a one-sided 95 % bound on the AUPR lost."""
_CHUNK_CELLS = 2_000_000
"""Resamples scored at once are bounded by this many weight cells (resamples × rows), so the
memory stays near 100 MB at any test split size."""


@dataclass(frozen=True)
class PairedInterval:
    """champion − candidate for a metric where higher is better (AUPR: the AUPR lost), or
    candidate − champion where lower is better (ECE: the calibration error gained); positive
    is always worse for the candidate."""
    metric: str
    champion: float
    candidate: float
    worsening: float
    lower: float
    upper: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ChampionComparison:
    aupr: PairedInterval
    ece: PairedInterval
    confidence: float
    samples: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {"aupr": self.aupr.to_dict(), "ece": self.ece.to_dict(),
                "confidence": self.confidence, "samples": self.samples, "seed": self.seed}


def weighted_average_precision(labels: np.ndarray, scores: np.ndarray,
                               weights: np.ndarray) -> np.ndarray:
    """Average precision for each row of `weights` (resample counts), as scikit-learn computes
    it with `sample_weight`: a step per distinct score (ties form one step), precision at each
    step weighted by the recall it adds. Only steps holding a positive add recall, so only
    those are evaluated.

    labels, scores: shape (n,); weights: shape (k, n). Returns shape (k,); NaN for a resample
    without a positive.
    """
    order = np.argsort(-scores, kind="stable")
    y = labels[order] > 0
    w = weights[:, order]
    sorted_scores = scores[order]
    # The last row of each run of equal scores closes a step; keep the steps with a positive.
    closes = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    step_of_row = np.searchsorted(closes, np.arange(y.size))
    positive_steps = closes[np.unique(step_of_row[y])]
    if not positive_steps.size:
        return np.full(w.shape[0], np.nan)
    # Weight seen and positives caught down to each such step: sums over the segments between
    # steps (reduceat), then a running sum over the few segments, not over every row.
    starts = np.r_[0, positive_steps[:-1] + 1]
    head = slice(0, positive_steps[-1] + 1)  # the last segment ends at the last such step
    seen = np.cumsum(np.add.reduceat(w[:, head], starts, axis=1), axis=1)
    caught = np.cumsum(np.add.reduceat(w[:, head] * y[head], starts, axis=1), axis=1)
    positives = caught[:, -1:]
    added = np.diff(caught, axis=1, prepend=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(seen > 0, caught / np.maximum(seen, 1), 0.0)
        return np.where(positives[:, 0] > 0,
                        np.sum(added * precision, axis=1) / positives[:, 0], np.nan)


def weighted_calibration_error(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray,
                               bins: int) -> np.ndarray:
    """Expected calibration error over equal-count score bins for each row of `weights` (a
    resample): a row falls in the bin that holds the middle of its weight on the sorted scale,
    so with all weights 1 the bins are equal-count bins of the rows. Bins are contiguous in
    the sorted order, so their sums are differences of running sums at the bin edges."""
    order = np.argsort(scores, kind="stable")
    y = labels[order].astype(np.float64)
    s = scores[order].astype(np.float64)
    w = weights[:, order].astype(np.float64)
    running_weight = np.cumsum(w, axis=1)
    running_score = np.cumsum(w * s, axis=1)
    running_label = np.cumsum(w * y, axis=1)
    total = running_weight[:, -1]
    middle = running_weight - w / 2
    gaps = np.empty(w.shape[0])
    for row in range(w.shape[0]):
        edges = np.searchsorted(middle[row], total[row] * np.arange(1, bins) / bins)
        ends = np.r_[edges, w.shape[1]] - 1
        at = lambda running: np.diff(np.where(ends >= 0, running[row, np.maximum(ends, 0)], 0.0),
                                     prepend=0.0)
        # per bin: count × |mean score − observed rate| = |score sum − label sum|
        gaps[row] = np.abs(at(running_score) - at(running_label)).sum()
    return gaps / total


def compare(labels: np.ndarray, candidate: np.ndarray, champion: np.ndarray, *,
            samples: int = DEFAULT_SAMPLES, confidence: float = DEFAULT_CONFIDENCE,
            seed: int = 0, calibration_bins: int = 10) -> ChampionComparison:
    """Paired bootstrap of AUPR and ECE, the candidate against the champion on the same rows."""
    labels = np.asarray(labels)
    candidate, champion = np.asarray(candidate, float), np.asarray(champion, float)
    if not labels.size or candidate.shape != labels.shape or champion.shape != labels.shape:
        raise ValueError("labels and both models' scores must cover the same, non-empty rows")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    if samples < 1:
        raise ValueError("samples must be positive")
    rng = np.random.default_rng(seed)
    aupr_lost, ece_gained = [], []
    per_chunk = max(1, _CHUNK_CELLS // labels.size)
    for start in range(0, samples, per_chunk):
        chunk = min(per_chunk, samples - start)
        picks = rng.integers(0, labels.size, size=(chunk, labels.size))
        cells = (picks + labels.size * np.arange(chunk)[:, None]).ravel()
        weights = np.bincount(cells, minlength=chunk * labels.size).reshape(chunk, labels.size)
        aupr_lost.append(weighted_average_precision(labels, champion, weights)
                         - weighted_average_precision(labels, candidate, weights))
        ece_gained.append(weighted_calibration_error(labels, candidate, weights, calibration_bins)
                          - weighted_calibration_error(labels, champion, weights,
                                                       calibration_bins))
    ones = np.ones((1, labels.size))
    tail = (1 - confidence) / 2 * 100

    def interval(metric: str, differences: list[np.ndarray], champion_value: float,
                 candidate_value: float, worsening: float) -> PairedInterval:
        values = np.concatenate(differences)
        values = values[~np.isnan(values)]  # resamples without a positive have no AUPR
        if not values.size:
            raise ValueError("no resample of the test split holds a positive row")
        low, high = np.percentile(values, [tail, 100 - tail])
        return PairedInterval(metric, champion_value, candidate_value, worsening,
                              float(low), float(high))

    champion_aupr = float(weighted_average_precision(labels, champion, ones)[0])
    candidate_aupr = float(weighted_average_precision(labels, candidate, ones)[0])
    champion_ece = float(weighted_calibration_error(labels, champion, ones, calibration_bins)[0])
    candidate_ece = float(weighted_calibration_error(labels, candidate, ones, calibration_bins)[0])
    return ChampionComparison(
        aupr=interval("aupr", aupr_lost, champion_aupr, candidate_aupr,
                      champion_aupr - candidate_aupr),
        ece=interval("ece", ece_gained, champion_ece, candidate_ece,
                     candidate_ece - champion_ece),
        confidence=confidence, samples=samples, seed=seed)
