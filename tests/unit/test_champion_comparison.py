"""The paired bootstrap behind the no-regression gate: exact where it can be checked against
scikit-learn, paired (narrower than unpaired), and telling a worse model from an equal one."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from mlops_kit.core.champion_comparison import (compare, weighted_average_precision,
                                                 weighted_calibration_error)
from mlops_pipelines.steps.evaluate import expected_calibration_error


def fraud_like(rows=12_000, seed=0):
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=rows)
    labels = (rng.random(rows) < 1 / (1 + np.exp(-(risk * 2 - 4.5)))).astype(int)
    good = 1 / (1 + np.exp(-(risk * 2 - 4.5 + rng.normal(0, 0.3, rows))))
    return rng, labels, good.round(4)


def test_weighted_average_precision_is_scikit_learns_with_ties_and_weights():
    rng, labels, scores = fraud_like(3000)
    weights = rng.integers(0, 3, size=(4, labels.size))
    for row in weights:
        assert weighted_average_precision(labels, scores, row[None, :])[0] == pytest.approx(
            average_precision_score(labels, scores, sample_weight=row), rel=1e-12)
    assert np.isnan(weighted_average_precision(np.zeros(5, int), np.arange(5.0),
                                               np.ones((1, 5))))[0]


def test_unit_weights_give_the_reported_calibration_error():
    _, labels, scores = fraud_like(5000)
    assert weighted_calibration_error(labels, scores, np.ones((1, labels.size)), 10)[0] == \
        pytest.approx(expected_calibration_error(labels, scores), rel=1e-9)


def test_a_worse_candidate_is_shown_worse_and_an_equal_one_is_not():
    rng, labels, champion = fraud_like()
    noisy = np.clip(champion + rng.normal(0, 0.08, labels.size), 0, 1)
    worse = compare(labels, noisy, champion, samples=300)
    assert worse.aupr.worsening > 0 and worse.aupr.lower > 0  # the whole interval says "lost"
    same = compare(labels, champion, champion, samples=300)
    assert same.aupr.lower == same.aupr.upper == 0.0


def test_pairing_makes_the_interval_narrower_than_either_aupr_alone():
    rng, labels, champion = fraud_like()
    candidate = np.clip(champion + rng.normal(0, 0.01, labels.size), 0, 1)
    paired = compare(labels, candidate, champion, samples=300)
    picks = rng.integers(0, labels.size, size=(300, labels.size))
    alone = [average_precision_score(labels[p], candidate[p]) for p in picks[:60]]
    unpaired_width = np.percentile(alone, 95) - np.percentile(alone, 5)
    assert paired.aupr.upper - paired.aupr.lower < unpaired_width / 3


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="same, non-empty rows"):
        compare(np.array([0, 1]), np.array([0.1]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="confidence"):
        compare(np.array([0, 1]), np.array([0.1, 0.2]), np.array([0.1, 0.2]), confidence=1.5)
