import pytest

from mlops_kit.data.synthetic import DriftSpec, generate
from mlops_pipelines.steps.schema import FRAUD_SAMPLE_SCHEMA


def test_same_arguments_same_frame(small_frame):
    again = generate(len(small_frame), seed=7)
    assert again.equals(small_frame)
    assert not generate(len(small_frame), seed=8).equals(small_frame)


def test_realistic_imbalanced_task_in_the_contract():
    frame = generate(40_000, seed=1)
    assert list(frame.columns) == ["transaction_id", *FRAUD_SAMPLE_SCHEMA.features,
                                   FRAUD_SAMPLE_SCHEMA.target]
    assert 0.02 <= frame["is_fraud"].mean() <= 0.05
    missing = frame.isna().mean()
    assert missing["device_trust_score"] > 0.02 and missing["country"] > 0.002
    assert missing["is_fraud"] == 0
    assert frame["transaction_id"].is_unique
    assert frame["merchant_category"].nunique() == 10


def test_prior_drift_raises_the_fraud_rate_only():
    base = generate(40_000, seed=2)
    drifted = generate(40_000, seed=2, drift=DriftSpec("prior", 1.0))
    assert drifted["is_fraud"].mean() > 2 * base["is_fraud"].mean()
    assert drifted["amount"].equals(base["amount"])


def test_covariate_drift_moves_features():
    base = generate(40_000, seed=3)
    drifted = generate(40_000, seed=3, drift=DriftSpec("covariate", 1.0))
    assert drifted["ip_risk_score"].mean() > base["ip_risk_score"].mean() * 1.2
    assert (drifted["channel"] == "online").mean() > (base["channel"] == "online").mean()


def test_concept_drift_keeps_features_and_changes_the_rule():
    base = generate(40_000, seed=4)
    drifted = generate(40_000, seed=4, drift=DriftSpec("concept", 1.0))
    assert drifted["amount"].equals(base["amount"])
    # Under the old rule fraud sat on untrusted devices; after the change it sits on trusted ones.
    def trusted_share(f):
        return float(f.loc[f["is_fraud"] == 1, "device_trust_score"].mean())
    assert trusted_share(drifted) > trusted_share(base) + 0.1


@pytest.mark.parametrize("kwargs,match", [
    ({"rows": 0}, "rows"),
    ({"positive_rate": 0.9}, "positive_rate"),
    ({"drift": DriftSpec("sideways")}, "unknown drift"),  # type: ignore[arg-type]
])
def test_bad_arguments(kwargs, match):
    rows = kwargs.pop("rows", 100)
    with pytest.raises(ValueError, match=match):
        generate(rows, **kwargs)
