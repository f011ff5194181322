"""Evaluation step: quality, calibration, stability and latency of the candidate, against the
champion when there is one, with the gate verdicts and a report a person wants to read.

SageMaker Processing layout (defaults) and the local remapping (arguments):
  model     /opt/ml/processing/model        model.tar.gz or a model directory   --model
  test      /opt/ml/processing/test                                             --test-dir
  train     /opt/ml/processing/train        for the training score distribution --train-dir
  output    /opt/ml/processing/evaluation   evaluation.json, report.html, PNGs  --output-dir
"""

from __future__ import annotations

import argparse
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mlops_kit.core import champion_comparison, drift
from mlops_kit.core.gates import GATES, evaluate_gates, failed_summary

from . import _io
from .calibration import CALIBRATION_BINS, expected_calibration_error
from .report import write_report
from .inference import SPEC_FILE, LoadedModel, input_fn, model_fn, output_fn, predict_fn
from .train import encode_frame

DEFAULT_MODEL = "/opt/ml/processing/model"
DEFAULT_TEST = "/opt/ml/processing/test"
DEFAULT_TRAIN = "/opt/ml/processing/train"
DEFAULT_OUTPUT = "/opt/ml/processing/evaluation"
SCORE_BINS = 10
BOOTSTRAP_SAMPLES = 20
LATENCY_SAMPLES = 1000
LATENCY_ROUNDS = 3


def load_model(location: str | Path) -> tuple[LoadedModel, Path]:
    """Load from a model directory, a model.tar.gz, a directory holding one, or an s3:// URI."""
    location = str(location)
    if location.startswith("s3://"):
        location = _download(location)
    path = Path(location)
    if path.is_dir() and not (path / SPEC_FILE).exists():
        archives = sorted(path.glob("*.tar.gz"))
        if archives:
            path = archives[0]
    if path.is_file() and path.name.endswith(".tar.gz"):
        target = Path(tempfile.mkdtemp(prefix="model-"))
        with tarfile.open(path) as archive:
            _safe_extract(archive, target)
        path = target
    if not (path / SPEC_FILE).exists():
        raise _io.BadInputError(f"no model found at {location}")
    return model_fn(str(path)), path


def _safe_extract(archive: tarfile.TarFile, target: Path) -> None:
    """Extract regular files only, inside `target` (containers may run a Python without
    tarfile's extraction filters)."""
    root = target.resolve()
    for member in archive.getmembers():
        destination = (target / member.name).resolve()
        if not member.isfile() or not destination.is_relative_to(root):
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        source = archive.extractfile(member)
        if source is not None:
            destination.write_bytes(source.read())


def _download(uri: str) -> str:
    import boto3

    bucket, _, key = uri[len("s3://"):].partition("/")
    target = Path(tempfile.mkdtemp(prefix="champion-")) / Path(key).name
    boto3.client("s3").download_file(bucket, key, str(target))
    return str(target)


def score(model: LoadedModel, frame) -> np.ndarray:
    return predict_fn(encode_frame(frame, model.spec), model)


def quality_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    return {
        "aupr": float(average_precision_score(labels, scores)),
        "roc_auc": float(roc_auc_score(labels, scores)),
        "brier": float(brier_score_loss(labels, scores)),
        "ece": expected_calibration_error(labels, scores),
    }


def bootstrap_std(labels: np.ndarray, scores: np.ndarray, seed: int = 0) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {"aupr": [], "roc_auc": []}
    for _ in range(BOOTSTRAP_SAMPLES):
        pick = rng.integers(0, labels.size, labels.size)
        if labels[pick].min() == labels[pick].max():
            continue
        samples["aupr"].append(average_precision_score(labels[pick], scores[pick]))
        samples["roc_auc"].append(roc_auc_score(labels[pick], scores[pick]))
    return {k: float(np.std(v)) if v else 0.0 for k, v in samples.items()}


def measure_latency(model: LoadedModel, frame, samples: int = LATENCY_SAMPLES,
                    warmup: int = 50, rounds: int = LATENCY_ROUNDS) -> dict[str, float]:
    """Single-row cost of the serving path: CSV payload → input_fn → predict_fn → output_fn,
    the functions the endpoint runs, one request at a time.

    Gated (`p50_ms`, `p99_ms`): CPU time of this thread per request (`time.thread_time_ns`),
    the round (of `rounds`, `samples` requests each) with the lowest p99. The serving path is
    one thread (the booster's nthread is 1, as in `model_fn`), so its CPU time is the whole
    work of a request, and it does not include the time the request waited: for a core another
    process held, for the GIL, for a page from disk. A model that does more work per row
    costs more CPU time on any machine; a busy evaluation machine no longer looks like a slow
    model. The best of several rounds drops a round that a burst of interference (cache and
    TLB misses after preemption, a co-tenant VM) happened to hit; noise only ever adds.
    `wall_p50_ms`, `wall_p99_ms`: the same requests by the wall clock, which follows the
    machine's load; kept for the report, not gated.
    """
    features = list(model.spec.features)
    head = frame[features].head(samples)
    rows = head.astype(object).where(head.notna(), "")
    payloads = [",".join(str(v) for v in row) for row in rows.itertuples(index=False)]
    if not payloads:
        raise _io.BadInputError("no rows to measure latency on")
    model.booster.set_param({"nthread": 1})  # the serving path's one thread (model_fn's too)

    def request(payload: str) -> None:
        output_fn(predict_fn(input_fn(payload, "text/csv"), model), "text/csv")

    for index in range(warmup):
        request(payloads[index % len(payloads)])
    best: dict[str, float] | None = None
    for _ in range(max(1, rounds)):
        cpu = np.empty(samples, dtype=np.int64)
        wall = np.empty(samples, dtype=np.int64)
        for index in range(samples):
            payload = payloads[index % len(payloads)]
            wall_start, cpu_start = time.perf_counter_ns(), time.thread_time_ns()
            request(payload)
            cpu[index] = time.thread_time_ns() - cpu_start
            wall[index] = time.perf_counter_ns() - wall_start
        figures = {"p50_ms": float(np.percentile(cpu, 50)) / 1e6,
                   "p99_ms": float(np.percentile(cpu, 99)) / 1e6,
                   "wall_p50_ms": float(np.percentile(wall, 50)) / 1e6,
                   "wall_p99_ms": float(np.percentile(wall, 99)) / 1e6}
        if best is None or figures["p99_ms"] < best["p99_ms"]:
            best = figures
    assert best is not None
    return {**best, "samples": samples, "rounds": max(1, rounds)}


def evaluate(model: LoadedModel, test, train, *, thresholds: dict[str, float],
             champion: LoadedModel | None = None,
             latency_samples: int = LATENCY_SAMPLES) -> dict[str, Any]:
    target = model.spec.target
    labels = test[target].to_numpy()
    scores = score(model, test)
    train_scores = score(model, train)
    metrics = quality_metrics(labels, scores)
    score_baseline = drift.numeric_baseline(train_scores, SCORE_BINS)
    metrics["score_psi"] = drift.psi_against_baseline(score_baseline, scores)
    champion_info: dict[str, Any] = {"present": champion is not None}
    # Always present (0 without a champion): the ConditionStep and the registry read them.
    metrics["aupr_regression"] = metrics["aupr_regression_lower"] = 0.0
    metrics["aupr_regression_upper"] = 0.0
    metrics["champion_compared"] = float(champion is not None)
    champion_scores = None
    comparison = None
    if champion is not None:
        champion_scores = score(champion, test)
        champion_metrics = quality_metrics(labels, champion_scores)
        champion_info["metrics"] = champion_metrics
        comparison = champion_comparison.compare(labels, scores, champion_scores,
                                                 calibration_bins=CALIBRATION_BINS).to_dict()
        metrics["champion_aupr"] = champion_metrics["aupr"]
        metrics["aupr_regression"] = comparison["aupr"]["worsening"]
        metrics["aupr_regression_lower"] = comparison["aupr"]["lower"]
        metrics["aupr_regression_upper"] = comparison["aupr"]["upper"]
        metrics["ece_increase"] = comparison["ece"]["worsening"]
        metrics["ece_increase_upper"] = comparison["ece"]["upper"]
    std = bootstrap_std(labels, scores)
    evaluation: dict[str, Any] = {
        "version": 1,
        "metrics": metrics,
        "latency": measure_latency(model, test, latency_samples),
        "champion": champion_info,
        "comparison": comparison,
        "counts": {"test_rows": int(labels.size), "test_positives": int(labels.sum()),
                   "train_rows": int(len(train))},
        "score_baseline": score_baseline,
        # SageMaker's model-quality format, so Studio shows the metrics on the model version.
        "binary_classification_metrics": {
            "pr_auc": {"value": metrics["aupr"], "standard_deviation": std["aupr"]},
            "auc": {"value": metrics["roc_auc"], "standard_deviation": std["roc_auc"]},
            "brier_score": {"value": metrics["brier"], "standard_deviation": 0.0},
            "expected_calibration_error": {"value": metrics["ece"], "standard_deviation": 0.0},
        },
    }
    verdicts = evaluate_gates(evaluation, thresholds)
    evaluation["gates"] = {v.gate: v.to_dict() for v in verdicts}
    evaluation["gates_passed"] = all(v.passed for v in verdicts)
    evaluation["gates_failed"] = failed_summary(verdicts)
    evaluation["_curves"] = {"labels": labels, "scores": scores, "train_scores": train_scores,
                             "train_labels": train[target].to_numpy(),
                             "champion_scores": champion_scores}
    return evaluation


def run(model_location: str | Path, test_dir: str | Path, train_dir: str | Path,
        output_dir: str | Path, *, thresholds: dict[str, float], champion_location: str = "",
        latency_samples: int = LATENCY_SAMPLES, report: bool = True) -> dict[str, Any]:
    model, model_dir = load_model(model_location)
    champion = load_model(champion_location)[0] if champion_location else None
    test = _io.read_table(_io.find_table(test_dir))
    train = _io.read_table(_io.find_table(train_dir))
    evaluation = evaluate(model, test, train, thresholds=thresholds, champion=champion,
                          latency_samples=latency_samples)
    training = model_dir / "training.json"
    if training.exists():
        trained = _io.read_json(training)
        evaluation["model"] = {"run_id": trained.get("run_id", ""),
                               "sha256": trained.get("model_sha256", ""),
                               "best_round": trained.get("best_round", 0)}
    if champion_location:
        evaluation["champion"]["location"] = str(champion_location)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if report:
        write_report(evaluation, output_dir)
    evaluation.pop("_curves")
    _io.write_json(output_dir / "evaluation.json", evaluation)
    return evaluation


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--test-dir", default=DEFAULT_TEST)
    parser.add_argument("--train-dir", default=DEFAULT_TRAIN)
    parser.add_argument("--output-dir", default=DEFAULT_OUTPUT)
    parser.add_argument("--champion-model", default="",
                        help="champion model (directory, model.tar.gz or s3:// URI); empty: none")
    parser.add_argument("--latency-samples", type=int, default=LATENCY_SAMPLES)
    for gate in GATES:
        parser.add_argument(f"--{gate.name.replace('_', '-')}", dest=gate.name, type=float,
                            default=gate.default,
                            help=gate.description.replace("%", "%%"))  # argparse formats help
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    thresholds = {gate.name: getattr(args, gate.name) for gate in GATES}
    try:
        evaluation = run(args.model, args.test_dir, args.train_dir, args.output_dir,
                         thresholds=thresholds, champion_location=args.champion_model,
                         latency_samples=args.latency_samples)
    except (_io.BadInputError, ValueError) as exc:
        print(f"bad input: {exc}", file=sys.stderr)
        return 2
    # The ConditionStep decides in SageMaker; the step itself succeeds either way.
    print(f"evaluate: AUPR {evaluation['metrics']['aupr']:.4f}; gates: "
          + ("passed" if evaluation["gates_passed"] else evaluation["gates_failed"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
