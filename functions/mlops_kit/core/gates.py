"""Quality gates: the one definition that the local run and the SageMaker ConditionStep share.

A gate compares one value of `evaluation.json` (addressed by a dotted path, exactly what
`JsonGet` reads in SageMaker) with a threshold that is a pipeline parameter of the same name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping

Comparison = Literal[">=", "<="]


@dataclass(frozen=True)
class Gate:
    name: str
    """Pipeline parameter holding the threshold, e.g. ``min_aupr``."""
    json_path: str
    """Dotted path of the measured value inside evaluation.json."""
    comparison: Comparison
    """``>=``: the value must be at least the threshold; ``<=``: at most."""
    default: float
    description: str

    def passes(self, value: float, threshold: float) -> bool:
        if value is None or math.isnan(value):
            return False
        return value >= threshold if self.comparison == ">=" else value <= threshold


GATES: tuple[Gate, ...] = (
    Gate("min_aupr", "metrics.aupr", ">=", 0.40,
         "Area under the precision-recall curve on the test split"),
    Gate("max_psi", "metrics.score_psi", "<=", 0.10,
         "PSI of the score distribution, test split against training split"),
    Gate("max_calibration_error", "metrics.ece", "<=", 0.02,
         "Expected calibration error on the test split"),
    # CPU time, not the wall clock: the evaluation machine's load must not fail a model (nor
    # its quiet pass a slow one); see measure_latency in pipelines/steps/evaluate.py.
    Gate("max_p99_latency_ms", "latency.p99_ms", "<=", 25.0,
         "p99 single-row CPU time of the real inference path (best of 3 rounds), "
         "in milliseconds"),
    # Decided on the paired interval, not the point estimate: the champion and the candidate
    # score the same rows, so the interval is narrow (see core/champion_comparison.py), and a
    # candidate passes only when the data show it loses at most this much AUPR.
    Gate("max_aupr_regression", "metrics.aupr_regression_upper", "<=", 0.02,
         "Upper bound of the 90% paired-bootstrap interval of the AUPR lost against the current "
         "champion on the same test split (0 without a champion)"),
    # Below ~100 positives the AUPR and the calibration error of a test split are noise: the
    # other gates' verdicts would be coin flips.
    Gate("min_test_positives", "counts.test_positives", ">=", 100,
         "Positive rows in the test split; fewer and AUPR and calibration figures are noise"),
)

GATES_BY_NAME: dict[str, Gate] = {gate.name: gate for gate in GATES}


@dataclass(frozen=True)
class GateVerdict:
    gate: str
    json_path: str
    comparison: Comparison
    value: float
    threshold: float
    passed: bool

    @property
    def margin(self) -> float:
        """How far the value is on the passing side of the threshold (negative: failed by)."""
        delta = self.value - self.threshold
        return delta if self.comparison == ">=" else -delta

    def describe(self) -> str:
        verdict = "pass" if self.passed else "FAIL"
        return (f"{self.gate}: {self.json_path}={self.value:.6g} {self.comparison} "
                f"{self.threshold:.6g} -> {verdict} (margin {self.margin:+.4g})")

    def to_dict(self) -> dict[str, Any]:
        return {"gate": self.gate, "json_path": self.json_path, "comparison": self.comparison,
                "value": self.value, "threshold": self.threshold, "passed": self.passed,
                "margin": self.margin}


def read_json_path(document: Mapping[str, Any], path: str) -> Any:
    """Read a dotted path the way SageMaker's ``JsonGet`` does; KeyError names the path."""
    node: Any = document
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(f"evaluation has no value at '{path}'")
        node = node[part]
    return node


def default_thresholds() -> dict[str, float]:
    return {gate.name: gate.default for gate in GATES}


def evaluate_gates(evaluation: Mapping[str, Any],
                   thresholds: Mapping[str, float] | None = None) -> list[GateVerdict]:
    """Apply every gate to an evaluation document; thresholds default to each gate's default."""
    merged = default_thresholds() | dict(thresholds or {})
    unknown = set(merged) - set(GATES_BY_NAME)
    if unknown:
        raise ValueError(f"unknown gate threshold(s): {', '.join(sorted(unknown))}")
    verdicts = []
    for gate in GATES:
        value = float(read_json_path(evaluation, gate.json_path))
        threshold = float(merged[gate.name])
        verdicts.append(GateVerdict(gate.name, gate.json_path, gate.comparison, value, threshold,
                                    gate.passes(value, threshold)))
    return verdicts


def failed_summary(verdicts: list[GateVerdict]) -> str:
    """One line naming each failed gate and by how much; the SageMaker Fail step shows it."""
    failed = [v for v in verdicts if not v.passed]
    if not failed:
        return "none"
    return "; ".join(
        f"{v.gate} ({v.json_path}={v.value:.4g}, needs {v.comparison} {v.threshold:.4g})"
        for v in failed)
