import math

import pytest

from mlops_kit.core.gates import (GATES, GATES_BY_NAME, default_thresholds, evaluate_gates,
                                  failed_summary, read_json_path)


def evaluation(**metrics):
    base = {"metrics": {"aupr": 0.6, "score_psi": 0.01, "ece": 0.005, "aupr_regression": 0.0,
                        "aupr_regression_upper": 0.01},
            "latency": {"p99_ms": 1.0}, "counts": {"test_positives": 450}}
    for path, value in metrics.items():
        section, key = path.split("__")
        base[section][key] = value
    return base


def test_defaults_pass_a_good_model():
    verdicts = evaluate_gates(evaluation())
    assert [v.gate for v in verdicts] == [g.name for g in GATES]
    assert all(v.passed for v in verdicts)
    assert failed_summary(verdicts) == "none"


@pytest.mark.parametrize("gate,path,value", [
    ("min_aupr", "metrics__aupr", 0.1),
    ("max_psi", "metrics__score_psi", 0.5),
    ("max_calibration_error", "metrics__ece", 0.2),
    ("max_p99_latency_ms", "latency__p99_ms", 500.0),
    ("max_aupr_regression", "metrics__aupr_regression_upper", 0.03),
    ("min_test_positives", "counts__test_positives", 19),
])
def test_each_gate_fails_alone_and_is_named(gate, path, value):
    verdicts = evaluate_gates(evaluation(**{path: value}))
    failed = [v for v in verdicts if not v.passed]
    assert [v.gate for v in failed] == [gate]
    assert failed[0].margin < 0
    assert gate in failed_summary(verdicts)


def test_threshold_equal_to_value_passes_both_directions():
    doc = evaluation()
    thresholds = {"min_aupr": 0.6, "max_psi": 0.01}
    verdicts = {v.gate: v for v in evaluate_gates(doc, thresholds)}
    assert verdicts["min_aupr"].passed and verdicts["max_psi"].passed
    assert verdicts["min_aupr"].margin == 0


def test_margin_reports_by_how_much():
    verdict = {v.gate: v for v in evaluate_gates(evaluation(), {"min_aupr": 0.999})}["min_aupr"]
    assert verdict.margin == pytest.approx(0.6 - 0.999)
    assert "FAIL" in verdict.describe()


def test_nan_value_fails():
    verdicts = {v.gate: v for v in evaluate_gates(evaluation(metrics__aupr=math.nan))}
    assert not verdicts["min_aupr"].passed


def test_unknown_threshold_and_missing_path_are_errors():
    with pytest.raises(ValueError, match="unknown gate"):
        evaluate_gates(evaluation(), {"min_auc": 0.5})
    with pytest.raises(KeyError, match="latency.p99_ms"):
        evaluate_gates({"metrics": evaluation()["metrics"], "latency": {}})


def test_json_path_and_defaults():
    assert read_json_path({"a": {"b": 3}}, "a.b") == 3
    assert default_thresholds() == {g.name: g.default for g in GATES}
    assert set(GATES_BY_NAME) == {g.name for g in GATES}


def test_regression_gate_decides_on_the_intervals_upper_bound_not_the_point_estimate():
    # The demo's old v2: a point estimate inside the old 0.05 allowance, an interval that
    # shows it worse than the champion.
    worse = evaluation(metrics__aupr_regression=0.036, metrics__aupr_regression_upper=0.05)
    verdicts = {v.gate: v for v in evaluate_gates(worse)}
    assert not verdicts["max_aupr_regression"].passed
    assert verdicts["max_aupr_regression"].json_path == "metrics.aupr_regression_upper"
    # A candidate no worse on the data (interval reaching only a little below the champion).
    even = evaluation(metrics__aupr_regression=-0.004, metrics__aupr_regression_upper=0.012)
    assert {v.gate: v for v in evaluate_gates(even)}["max_aupr_regression"].passed
