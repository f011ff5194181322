import numpy as np
import pytest

from mlops_kit.core import drift


def test_quantile_edges_split_into_equal_shares():
    values = np.arange(1000, dtype=float)
    edges = drift.quantile_edges(values, 10)
    assert len(edges) == 9
    props = drift.proportions(drift.numeric_counts(values, edges))
    assert props[:-1] == pytest.approx([0.1] * 10, abs=0.002)
    assert props[-1] == 0  # the missing bin


def test_missing_values_have_their_own_bin_and_ties_collapse_edges():
    values = np.array([1.0, 1.0, 1.0, 1.0, np.nan, 2.0])
    baseline = drift.numeric_baseline(values, 4)
    assert len(baseline["edges"]) == len(set(baseline["edges"]))
    assert baseline["proportions"][-1] == pytest.approx(1 / 6)
    assert sum(baseline["proportions"]) == pytest.approx(1.0)


def test_right_closed_bins():
    counts = drift.numeric_counts(np.array([1.0, 1.5, 2.0, 3.0]), np.array([1.0, 2.0]))
    assert counts.tolist() == [1, 2, 1, 0]


def test_psi_zero_for_same_distribution_and_grows_with_shift():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=50_000)
    baseline = drift.numeric_baseline(reference, 10)
    same = drift.psi_against_baseline(baseline, rng.normal(size=50_000))
    small = drift.psi_against_baseline(baseline, rng.normal(0.2, 1, size=50_000))
    large = drift.psi_against_baseline(baseline, rng.normal(1.0, 1, size=50_000))
    assert same < 0.01 < small < large
    assert large > 0.25


def test_psi_matches_textbook_formula():
    expected = np.array([0.25, 0.25, 0.5])
    actual = np.array([0.5, 0.25, 0.25])
    reference = np.sum((actual - expected) * np.log(actual / expected))
    assert drift.psi(expected, actual, epsilon=0) == pytest.approx(reference)


def test_psi_empty_bin_is_finite():
    assert np.isfinite(drift.psi(np.array([0.5, 0.5, 0.0]), np.array([0.0, 0.5, 0.5])))


def test_categorical_baseline_orders_by_frequency_and_counts_unseen_and_missing():
    baseline = drift.categorical_baseline(["b", "a", "a", None, "c", "a", "b"])
    assert baseline["categories"] == ["a", "b", "c"]
    current = ["z", "z", None, "a"]
    counts = drift.categorical_counts(current, baseline["categories"])
    assert counts.tolist() == [1, 0, 0, 2, 1]
    assert drift.psi_against_baseline(baseline, current) > 0.5


def test_bin_count_mismatch_is_an_error():
    with pytest.raises(ValueError, match="bin counts differ"):
        drift.psi(np.ones(3) / 3, np.ones(4) / 4)


def test_numeric_drift_equals_the_separate_functions_and_scipy():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(3)
    ref = np.round(rng.normal(size=20_000), 2)
    cur = np.round(rng.normal(0.1, 1.1, size=50_000), 2)
    ref[::50] = np.nan
    cur[::70] = np.nan
    combined = drift.numeric_drift(ref, cur, 10)
    baseline = drift.numeric_baseline(ref, 10)
    assert combined["edges"] == baseline["edges"]
    assert combined["reference_proportions"] == pytest.approx(baseline["proportions"], abs=1e-15)
    assert combined["psi"] == pytest.approx(drift.psi_against_baseline(baseline, cur), abs=1e-12)
    expected = ks_2samp(ref[~np.isnan(ref)], cur[~np.isnan(cur)]).statistic
    assert abs(combined["ks"] - expected) < 1e-12
    assert abs(drift.ks_statistic(ref, cur) - expected) < 1e-12


def test_average_precision_matches_sklearn():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(5)
    for _ in range(50):
        labels = (rng.random(300) < 0.1).astype(int)
        labels[0] = 1
        scores = np.round(rng.random(300), 2)
        assert drift.average_precision(labels, scores) == pytest.approx(
            average_precision_score(labels, scores), abs=1e-12)


from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402


@st.composite
def two_samples(draw):
    """Sample pairs around and above the size where the KS search goes block by block: continuous
    values, heavy ties, values shared by both samples, missing values and shifts."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n_ref = draw(st.sampled_from([1, 2, 50, 511, 512, 513, 700, 2_000, 6_000]))
    n_cur = draw(st.sampled_from([1, 3, 100, 1_000, 9_000]))
    kind = draw(st.sampled_from(["continuous", "ties", "many_ties", "shared", "shifted"]))
    ref = rng.normal(size=n_ref)
    cur = rng.normal(draw(st.floats(-0.5, 0.5)), 1, size=n_cur)
    if kind == "ties":
        ref, cur = np.round(ref, 1), np.round(cur, 1)
    elif kind == "many_ties":  # ties and more distinct values than the block search's threshold
        ref, cur = np.round(ref, 3), np.round(cur, 3)
    elif kind == "shared":
        cur[: n_cur // 2] = rng.choice(ref, n_cur // 2)
    elif kind == "shifted":
        cur = cur + 3
    if draw(st.booleans()) and n_ref > 2:
        ref[::7] = np.nan
    if draw(st.booleans()) and n_cur > 2:
        cur[::5] = np.nan
    return ref, cur


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(two_samples())
def test_ks_statistic_equals_scipy_on_any_samples(samples):
    from scipy.stats import ks_2samp

    ref, cur = samples
    expected = ks_2samp(ref[~np.isnan(ref)], cur[~np.isnan(cur)]).statistic
    assert abs(drift.ks_statistic(ref, cur) - expected) < 1e-12
    assert abs(drift.numeric_drift(ref, cur)["ks"] - expected) < 1e-12
