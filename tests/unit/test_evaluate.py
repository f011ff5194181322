import json

import numpy as np
import pytest

from mlops_pipelines.steps import _io, evaluate
from mlops_pipelines.steps.calibration import CALIBRATION_BINS, calibration_bins


def test_ece_of_perfect_and_biased_scores():
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 0.2, 200_000)
    labels = (rng.random(scores.size) < scores).astype(int)
    assert evaluate.expected_calibration_error(labels, scores) < 0.005
    assert evaluate.expected_calibration_error(labels, scores * 2) == pytest.approx(
        scores.mean(), rel=0.05)


def test_quality_metrics_match_sklearn_on_a_known_case():
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    metrics = evaluate.quality_metrics(labels, scores)
    assert metrics["roc_auc"] == pytest.approx(0.75)
    assert metrics["aupr"] == pytest.approx(0.8333333)
    assert metrics["brier"] == pytest.approx(np.mean((scores - labels) ** 2))


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, trained, prepared):
    out = tmp_path_factory.mktemp("evaluation")
    document = evaluate.run(trained[0], prepared / "test", prepared / "train", out,
                            thresholds={}, latency_samples=200)
    return out, document


def test_evaluation_document_and_report(evaluated):
    out, document = evaluated
    on_disk = json.loads((out / "evaluation.json").read_text())
    assert on_disk == json.loads(json.dumps(document))
    for key in ("aupr", "roc_auc", "brier", "ece", "score_psi", "aupr_regression",
                "aupr_regression_upper"):
        assert np.isfinite(on_disk["metrics"][key])
    assert on_disk["latency"]["samples"] == 200
    assert 0 < on_disk["latency"]["p50_ms"] <= on_disk["latency"]["p99_ms"]
    assert on_disk["champion"] == {"present": False} and on_disk["comparison"] is None
    assert on_disk["binary_classification_metrics"]["pr_auc"]["value"] == on_disk["metrics"]["aupr"]
    assert set(on_disk["gates"]) == {"min_aupr", "max_psi", "max_calibration_error",
                                     "max_p99_latency_ms", "max_aupr_regression",
                                     "min_test_positives"}
    for png in ("pr_curve.png", "calibration.png", "score_histogram.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "min_aupr" in html
    # The gate table's headers name its columns in order, and comparisons are escaped.
    assert "<th>gate</th><th>measured</th><th>value</th><th>needs</th>" in html
    assert "<td>&lt;= " in html and "<td><= " not in html
    assert not list(out.glob(".*"))  # no temporary files left
    # The small split has too few positives: the gate fails and the report says why.
    positives = on_disk["counts"]["test_positives"]
    assert positives < 100 and not on_disk["gates"]["min_test_positives"]["passed"]
    assert f"Only {positives} positive rows in the test split" in html
    assert "No champion yet" in html


def test_champion_comparison_on_the_same_test_split(trained, prepared, tmp_path, evaluated):
    document = evaluate.run(trained[0], prepared / "test", prepared / "train", tmp_path,
                            thresholds={}, champion_location=str(trained[0]),
                            latency_samples=50, report=False)
    assert document["champion"]["present"] is True
    # The champion is the same model here: no regression, identical AUPR, a zero-width
    # paired interval (every resample scores both the same).
    assert document["metrics"]["aupr_regression"] == pytest.approx(0.0, abs=1e-12)
    assert document["metrics"]["aupr_regression_upper"] == pytest.approx(0.0, abs=1e-12)
    assert document["champion"]["metrics"]["aupr"] == pytest.approx(evaluated[1]["metrics"]["aupr"])
    aupr = document["comparison"]["aupr"]
    assert aupr["lower"] == pytest.approx(0.0, abs=1e-12) and aupr["upper"] == pytest.approx(0.0, abs=1e-12)
    assert aupr["champion"] == pytest.approx(document["metrics"]["champion_aupr"])


def test_calibration_bins_carry_counts_and_an_interval():
    rng = np.random.default_rng(3)
    scores = rng.uniform(0, 0.2, 5000)
    labels = (rng.random(scores.size) < scores).astype(int)
    bins = calibration_bins(labels, scores)
    assert len(bins) == CALIBRATION_BINS
    assert sum(b["rows"] for b in bins) == 5000 and sum(b["positives"] for b in bins) == labels.sum()
    for b in bins:
        assert 0 <= b["low"] <= b["observed"] <= b["high"] <= 1
    assert bins[0]["mean_score"] < bins[-1]["mean_score"]


def test_model_tarball_is_accepted(trained, prepared, tmp_path):
    import tarfile

    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in trained[0].iterdir():
            tar.add(path, arcname=path.name)
    model, _ = evaluate.load_model(tmp_path)
    assert model.spec.target == "is_fraud"
    with pytest.raises(_io.BadInputError, match="no model found"):
        evaluate.load_model(tmp_path / "missing")


def test_gate_thresholds_flow_into_verdicts(trained, prepared, tmp_path):
    document = evaluate.run(trained[0], prepared / "test", prepared / "train", tmp_path,
                            thresholds={"min_aupr": 0.999}, latency_samples=20, report=False)
    assert document["gates_passed"] is False
    assert document["gates_failed"].startswith("min_aupr")


def _json_gets(node):
    if isinstance(node, dict):
        if "Std:JsonGet" in node:
            yield node["Std:JsonGet"]["Path"]
        for value in node.values():
            yield from _json_gets(value)
    elif isinstance(node, list):
        for value in node:
            yield from _json_gets(value)


def test_every_path_the_pipeline_reads_is_in_every_evaluation(evaluated, trained, prepared,
                                                              tmp_path):
    """The SageMaker pipeline's ConditionStep and RegisterModel metadata read evaluation.json
    with JsonGet, which fails the execution on a missing path: each one must exist with and
    without a champion."""
    from pathlib import Path

    from mlops_kit.core.gates import read_json_path

    definition = json.loads((Path(__file__).parents[2] / "pipelines" / "definition.json")
                            .read_text())
    paths = set(_json_gets(definition))
    assert {"metrics.aupr_regression_upper", "counts.test_positives", "metrics.aupr"} <= paths
    with_champion = evaluate.run(trained[0], prepared / "test", prepared / "train", tmp_path,
                                 thresholds={}, champion_location=str(trained[0]),
                                 latency_samples=20, report=False)
    for document in (evaluated[1], with_champion):
        for path in paths:
            read_json_path(document, path)
