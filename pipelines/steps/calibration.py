"""Calibration over equal-count score bins: the error the gate reads and the bins the report
draws, one definition for both."""

from __future__ import annotations

import numpy as np

CALIBRATION_BINS = 10


def expected_calibration_error(labels: np.ndarray, scores: np.ndarray,
                               bins: int = CALIBRATION_BINS) -> float:
    """Weighted gap between mean score and observed rate over equal-count score bins.

    Equal-count bins, because with a few percent positives equal-width bins put nearly every
    row in the first bin and hide miscalibration where the decisions are made.
    """
    order = np.argsort(scores, kind="stable")
    gap = 0.0
    for chunk in np.array_split(order, bins):
        if chunk.size:
            gap += chunk.size * abs(float(scores[chunk].mean()) - float(labels[chunk].mean()))
    return gap / scores.size


def calibration_bins(labels: np.ndarray, scores: np.ndarray,
                     bins: int = CALIBRATION_BINS) -> list[dict[str, float]]:
    """The equal-count bins of `expected_calibration_error`, each with its rows, positives and a
    95% Wilson interval of the observed rate (a bin with 3 positives says little)."""
    order = np.argsort(scores, kind="stable")
    result = []
    for chunk in np.array_split(order, bins):
        if not chunk.size:
            continue
        rows, positives = int(chunk.size), int(labels[chunk].sum())
        rate, z = positives / rows, 1.96
        centre = (rate + z * z / (2 * rows)) / (1 + z * z / rows)
        half = (z * np.sqrt(rate * (1 - rate) / rows + z * z / (4 * rows * rows))
                / (1 + z * z / rows))
        result.append({"mean_score": float(scores[chunk].mean()), "observed": rate,
                       "rows": rows, "positives": positives,
                       "low": float(max(0.0, centre - half)),
                       "high": float(min(1.0, centre + half))})
    return result
