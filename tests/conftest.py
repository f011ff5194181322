"""Shared fixtures: small deterministic data and isolated $MLOPS_HOME folders."""

from __future__ import annotations

import os

os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

import pytest  # noqa: E402

SMALL_ROWS = 6000


@pytest.fixture(scope="session")
def small_frame():
    from mlops_kit.data.synthetic import generate

    return generate(SMALL_ROWS, seed=7)


@pytest.fixture()
def frame(small_frame):
    return small_frame.copy()


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, small_frame):
    """Preprocess output of the small frame: train/validation/test splits and the baseline."""
    from mlops_pipelines.steps import _io, preprocess
    from mlops_pipelines.steps.schema import FRAUD_SAMPLE_SCHEMA

    root = tmp_path_factory.mktemp("prepared")
    _io.write_table(small_frame, root / "data.parquet")
    preprocess.run(root / "data.parquet", root / "out", schema=FRAUD_SAMPLE_SCHEMA,
                   validation_fraction=0.15, test_fraction=0.15, seed=42, bins=10)
    return root / "out"


@pytest.fixture(scope="session")
def trained(tmp_path_factory, prepared):
    """A model trained on the small splits (no tracking), as the train step writes it."""
    from mlops_pipelines.steps import train

    root = tmp_path_factory.mktemp("trained")
    hp = dict(train.HYPERPARAMETER_DEFAULTS, num_round=60)
    summary = train.run(prepared / "train", prepared / "validation", root / "model",
                        root / "output", hp)
    return root / "model", summary
