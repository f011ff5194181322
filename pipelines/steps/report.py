"""The evaluation report: PR curve, calibration and score histograms as PNGs, and one HTML page
with the gates, the champion comparison and every figure. Written atomically (a reader never
sees half a report)."""

from __future__ import annotations

import base64
import os
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from .calibration import calibration_bins


def write_report(evaluation: dict[str, Any], output_dir: Path) -> None:
    """PR curve, calibration curve and score histograms as PNGs, and one HTML page with all."""
    import matplotlib

    matplotlib.use("Agg")

    for name, _, draw in FIGURES:
        draw(evaluation, output_dir / name)
    figures = {name: title for name, title, _ in FIGURES}
    _atomic_text(output_dir / "report.html", _page(evaluation, output_dir, figures))


def _pr_curve(evaluation: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    curves = evaluation["_curves"]
    labels, scores = curves["labels"], curves["scores"]
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
    _save(fig, path)


def _calibration(evaluation: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    curves = evaluation["_curves"]
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    bins = calibration_bins(curves["labels"], curves["scores"])
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
    _save(fig, path)


def _score_histogram(evaluation: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    curves = evaluation["_curves"]
    labels, scores = curves["labels"], curves["scores"]
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    bins = np.linspace(0, 1, 41)
    ax.hist(curves["train_scores"], bins=bins, density=True, histtype="step", label="train")
    ax.hist(scores, bins=bins, density=True, histtype="step", label="test")
    ax.hist(scores[labels == 1], bins=bins, density=True, alpha=0.3, label="test, fraud only")
    ax.set_yscale("log")
    ax.set(xlabel="score", ylabel="density (log)",
           title=f"Score distributions (PSI {evaluation['metrics']['score_psi']:.4f})")
    ax.legend(fontsize=8)
    _save(fig, path)


FIGURES = (("pr_curve.png", "Precision-recall curve", _pr_curve),
           ("calibration.png", "Calibration curve", _calibration),
           ("score_histogram.png", "Score histograms", _score_histogram))


def _page(evaluation: dict[str, Any], output_dir: Path, figures: dict[str, str]) -> str:
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
    counts = evaluation["counts"]
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
<p>Test rows: {counts['test_rows']} ({counts['test_positives']} positive).
Champion compared: {'yes' if evaluation['champion']['present'] else 'no champion yet'}.</p>
<h2>Curves</h2>{images}</body></html>
"""
    return page


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
