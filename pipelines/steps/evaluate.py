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
import base64
import os
import sys
import tarfile
import tempfile
import time
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from mlops_kit.core import champion_comparison, drift
from mlops_kit.core.gates import GATES, evaluate_gates, failed_summary

from . import _io
from .inference import SPEC_FILE, LoadedModel, input_fn, model_fn, output_fn, predict_fn
from .train import encode_frame

DEFAULT_MODEL = "/opt/ml/processing/model"
DEFAULT_TEST = "/opt/ml/processing/test"
DEFAULT_TRAIN = "/opt/ml/processing/train"
DEFAULT_OUTPUT = "/opt/ml/processing/evaluation"
CALIBRATION_BINS = 10
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


def write_report(evaluation: dict[str, Any], output_dir: Path) -> None:
    """PR curve, calibration curve and score histograms as PNGs, and one HTML page with all."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    curves = evaluation["_curves"]
    labels, scores = curves["labels"], curves["scores"]
    figures: dict[str, str] = {}

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    precision, recall, _ = precision_recall_curve(labels, scores)
    ax.plot(recall, precision, label=f"candidate (AUPR {evaluation['metrics']['aupr']:.3f})")
    if curves["champion_scores"] is not None:
        cp, cr, _ = precision_recall_curve(labels, curves["champion_scores"])
        aupr = evaluation["champion"]["metrics"]["aupr"]
        ax.plot(cr, cp, linestyle="--", label=f"champion (AUPR {aupr:.3f})")
    ax.axhline(labels.mean(), color="grey", linewidth=0.8, label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test split)",
           xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="upper right", fontsize=8)
    figures["pr_curve.png"] = "Precision-recall curve"
    _save(fig, output_dir / "pr_curve.png")

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    bins = calibration_bins(labels, scores)
    low = min(min(b["mean_score"] for b in bins), min(max(b["low"], 1e-4) for b in bins)) / 1.5
    high = min(1.0, max(max(b["mean_score"] for b in bins), max(b["high"] for b in bins)) * 1.5)
    ax.plot([low, high], [low, high], color="grey", linewidth=0.8, label="perfect calibration")
    ax.errorbar([b["mean_score"] for b in bins], [max(b["observed"], low) for b in bins],
                yerr=[[max(b["observed"], low) - max(b["low"], low) for b in bins],
                      [b["high"] - max(b["observed"], low) for b in bins]],
                marker="o", capsize=3,
                label=f"candidate (ECE {evaluation['metrics']['ece']:.4f}), 95% interval")
    for index, b in enumerate(bins):  # alternate sides so neighbouring labels do not collide
        ax.annotate(f"{b['positives']}/{b['rows']}", (b["mean_score"], max(b["observed"], low)),
                    textcoords="offset points", xytext=(4, -10 if index % 2 else 6),
                    fontsize=6.5, color="#444")
    if any(b["positives"] == 0 for b in bins):
        ax.text(0.99, 0.02, "bins without a positive are drawn on the bottom edge",
                transform=ax.transAxes, ha="right", fontsize=7, color="#444")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlim=(low, high), ylim=(low, high),
           xlabel="mean predicted probability (log; equal-count bins)",
           ylabel="observed fraud rate (log)",
           title="Calibration (test split; labels: positives/rows per bin)")
    ax.legend(loc="upper left", fontsize=8)
    figures["calibration.png"] = "Calibration curve"
    _save(fig, output_dir / "calibration.png")

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    bins = np.linspace(0, 1, 41)
    ax.hist(curves["train_scores"], bins=bins, density=True, histtype="step", label="train")
    ax.hist(scores, bins=bins, density=True, histtype="step", label="test")
    ax.hist(scores[labels == 1], bins=bins, density=True, alpha=0.3, label="test, fraud only")
    ax.set_yscale("log")
    ax.set(xlabel="score", ylabel="density (log)",
           title=f"Score distributions (PSI {evaluation['metrics']['score_psi']:.4f})")
    ax.legend(fontsize=8)
    figures["score_histogram.png"] = "Score histograms"
    _save(fig, output_dir / "score_histogram.png")

    rows = "".join(
        f"<tr class='{'pass' if g['passed'] else 'fail'}'><td>{escape(name)}</td>"
        f"<td>{escape(g['json_path'])}</td>"
        f"<td>{g['value']:.5g}</td><td>{escape(g['comparison'])} {g['threshold']:.5g}</td>"
        f"<td>{'pass' if g['passed'] else 'FAIL'}</td><td>{g['margin']:+.4g}</td></tr>"
        for name, g in evaluation["gates"].items())
    metrics = "".join(f"<tr><td>{k}</td><td>{v:.6g}</td></tr>"
                      for k, v in {**evaluation["metrics"],
                                   **{f"latency_{k}": v for k, v in evaluation["latency"].items()}
                                   }.items())
    images = "".join(
        f"<figure><img alt='{title}' src='data:image/png;base64,"
        f"{base64.b64encode((output_dir / name).read_bytes()).decode()}'>"
        f"<figcaption>{title}</figcaption></figure>" for name, title in figures.items())
    verdict = "all gates passed" if evaluation["gates_passed"] else \
        f"gates failed: {evaluation['gates_failed']}"
    champion_section = _champion_section(evaluation)
    positives_warning = _positives_warning(evaluation)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Model evaluation</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px}}.warn{{background:#fed;padding:6px}}
tr.fail{{background:#fdd}}tr.pass{{background:#efe}}
figure{{display:inline-block;margin:0 1em 1em 0}}</style></head><body>
<h1>Model evaluation</h1><p><b>{escape(verdict)}</b></p>{positives_warning}
<h2>Gates</h2><table><tr><th>gate</th><th>measured</th><th>value</th><th>needs</th><th>verdict</th>
<th>margin</th></tr>{rows}</table>
{champion_section}
<h2>Metrics</h2><table>{metrics}</table>
<p>Test rows: {evaluation['counts']['test_rows']} ({evaluation['counts']['test_positives']} positive).
Champion compared: {'yes' if evaluation['champion']['present'] else 'no champion yet'}.</p>
<h2>Curves</h2>{images}</body></html>
"""
    _atomic_text(output_dir / "report.html", page)


def _champion_section(evaluation: dict[str, Any]) -> str:
    comparison = evaluation.get("comparison")
    if not comparison:
        return "<h2>Against the champion</h2><p>No champion yet: nothing to compare.</p>"
    share = round(comparison["confidence"] * 100)
    rows = "".join(
        f"<tr><td>{escape(label)}</td><td>{c['champion']:.4f}</td><td>{c['candidate']:.4f}</td>"
        f"<td>{c['worsening']:+.4f}</td><td>[{c['lower']:+.4f}, {c['upper']:+.4f}]</td></tr>"
        for label, c in (("AUPR lost", comparison["aupr"]),
                         ("calibration error gained", comparison["ece"])))
    gate = evaluation["gates"].get("max_aupr_regression")
    decision = "" if gate is None else (
        f"<p>The no-regression gate decides on the interval's upper bound: the candidate may "
        f"lose at most {gate['threshold']:.4g} AUPR; the data allow it to lose up to "
        f"{comparison['aupr']['upper']:.4f} &rarr; <b>{'pass' if gate['passed'] else 'FAIL'}"
        f"</b>.</p>")
    return (f"<h2>Against the champion (same test rows)</h2><table><tr><th>figure</th>"
            f"<th>champion</th><th>candidate</th><th>worse by</th><th>{share}% paired "
            f"bootstrap interval ({comparison['samples']} resamples)</th></tr>{rows}</table>"
            f"{decision}")


def _positives_warning(evaluation: dict[str, Any]) -> str:
    gate = evaluation["gates"].get("min_test_positives")
    if gate is None or gate["passed"]:
        return ""
    return (f"<p class='warn'>Only {evaluation['counts']['test_positives']} positive rows in "
            f"the test split (needs at least {gate['threshold']:.0f}): the AUPR and "
            f"calibration figures below are noise, not evidence. Use more data or a larger "
            f"test_fraction.</p>")


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.name}.tmp")
    fig.tight_layout()
    fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    os.replace(tmp, path)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
