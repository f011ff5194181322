"""A pipeline run's evaluation, gate verdicts, data digests and registered version, added to
the MLflow run the training step created (resumed by its id: one run per pipeline run).

Metric keys: `test_<metric>` (evaluation.json `metrics`), `latency_<figure>` (`latency`),
`comparison.<metric>.<field>` (the paired champion comparison, when there was a champion),
`test_rows`/`test_positives`, and per gate `gate.<name>.value` / `gate.<name>.threshold`.
Tags: `mlops.gate.<name>` = pass | FAIL, `mlops.gates` = passed | failed, the data digests
(`mlops.data_sha256`, `mlops.data_rows`, `mlops.split.<split>.rows`), `mlops.code_version`,
and once registered `mlops.registry_version`. Artifacts: the evaluation folder (report.html,
the PNGs, evaluation.json) under `evaluation/`. Everything is written with set semantics, so
logging the same run twice changes nothing.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

log = logging.getLogger(__name__)

BATCH_LIMIT = 900
"""MLflow takes at most 1000 metrics, params and tags per log_batch call."""


def evaluation_metrics(evaluation: Mapping[str, Any]) -> dict[str, float]:
    """The evaluation's figures as flat MLflow metric keys (finite numbers only)."""
    figures: dict[str, float] = {}
    for name, value in (evaluation.get("metrics") or {}).items():
        figures[f"test_{name}"] = value
    for name, value in (evaluation.get("latency") or {}).items():
        figures[f"latency_{name}"] = value
    for name, value in (evaluation.get("counts") or {}).items():
        figures[name] = value
    comparison = evaluation.get("comparison") or {}
    for metric, interval in comparison.items():
        if isinstance(interval, Mapping):
            for field, value in interval.items():
                figures[f"comparison.{metric}.{field}"] = value
    return {key: float(value) for key, value in figures.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(float(value))}


def gate_records(verdicts: Iterable[Any]) -> tuple[dict[str, float], dict[str, str]]:
    """(metrics, tags) of the gate verdicts (`GateVerdict` objects or their `to_dict()`)."""
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    passed_all = True
    for verdict in verdicts:
        data = verdict.to_dict() if hasattr(verdict, "to_dict") else dict(verdict)
        name = data["gate"]
        for field in ("value", "threshold"):
            value = data.get(field)
            if isinstance(value, (int, float)) and math.isfinite(float(value)):
                metrics[f"gate.{name}.{field}"] = float(value)
        tags[f"mlops.gate.{name}"] = "pass" if data["passed"] else "FAIL"
        passed_all = passed_all and bool(data["passed"])
    if tags:
        tags["mlops.gates"] = "passed" if passed_all else "failed"
    return metrics, tags


def data_tags(manifest: Mapping[str, Any], code_version: str) -> dict[str, str]:
    """What the run was trained on and with: data digest, rows, split sizes, code version."""
    data = manifest.get("data", {})
    tags = {"mlops.data_sha256": str(data.get("sha256", "")),
            "mlops.data_rows": str(data.get("rows", "")),
            "mlops.code_version": code_version}
    for split, figures in (manifest.get("splits") or {}).items():
        tags[f"mlops.split.{split}.rows"] = str(figures.get("rows", ""))
        if "positives" in figures:
            tags[f"mlops.split.{split}.positives"] = str(figures["positives"])
    return {k: v for k, v in tags.items() if v}


def log_evaluation(client: Any, run_id: str, evaluation: Mapping[str, Any],
                   verdicts: Iterable[Any], evaluation_dir: Path, *,
                   manifest: Mapping[str, Any], code_version: str) -> None:
    """Add the evaluation to the training run `run_id`: metrics, gate verdicts, data tags and
    the evaluation folder as artifacts. Raises what MLflow raises (the caller decides)."""
    from mlflow.entities import Metric, RunTag

    client.get_run(run_id)  # an unknown run id fails here, before anything is written
    gate_metrics, gate_tags = gate_records(verdicts)
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, 0)
               for k, v in {**evaluation_metrics(evaluation), **gate_metrics}.items()]
    tags = [RunTag(k, v) for k, v in {**gate_tags, **data_tags(manifest, code_version)}.items()]
    for start in range(0, max(len(metrics), 1), BATCH_LIMIT):
        client.log_batch(run_id, metrics=metrics[start:start + BATCH_LIMIT],
                         tags=tags if start == 0 else [])
    if Path(evaluation_dir).is_dir():
        client.log_artifacts(run_id, str(evaluation_dir), artifact_path="evaluation")


def log_registration(client: Any, run_id: str, version: Any) -> None:
    """Tag the run with the registry version it became."""
    client.set_tag(run_id, "mlops.registry_version", str(version.version))
    client.set_tag(run_id, "mlops.model_group", version.model_group)


def best_effort(what: str, action, *args, **kwargs) -> bool:
    """Run an MLflow logging action; a failure is logged as a warning and swallowed (the
    registry is the record: MLflow is a view of it). True when it ran."""
    try:
        action(*args, **kwargs)
        return True
    except Exception as exc:  # any MLflow or store error: the pipeline goes on
        log.warning("MLflow: %s not logged (%s: %s); the registry is unaffected", what,
                    type(exc).__name__, exc)
        return False


def record_evaluation(tracking_uri: str, run_id: str, evaluation: Mapping[str, Any],
                      verdicts: Iterable[Any], evaluation_dir: Path, *,
                      manifest: Mapping[str, Any], code_version: str) -> bool:
    """`log_evaluation` on the store at `tracking_uri`, best-effort (False: not logged, a
    warning says why). A run without tracking (no run id) logs nothing."""
    if not run_id:
        return False

    def action() -> None:
        from mlflow import MlflowClient

        log_evaluation(MlflowClient(tracking_uri=tracking_uri), run_id, evaluation, verdicts,
                       evaluation_dir, manifest=manifest, code_version=code_version)
    return best_effort(f"the evaluation of run {run_id}", action)


def record_registration(settings: Any, registry: Any, run_id: str, version: Any) -> bool:
    """After a registration: the run tagged with its registry version, and the registry
    mirrored into MLflow's (`registry_mirror`), both best-effort."""
    from mlops_kit.tracking.registry_mirror import mirror_local_registry

    tagged = False
    if run_id:
        def action() -> None:
            from mlflow import MlflowClient

            log_registration(MlflowClient(tracking_uri=settings.mlflow_uri), run_id, version)
        tagged = best_effort(f"the registry version of run {run_id}", action)
    mirrored = mirror_local_registry(settings, registry) is not None
    return tagged and mirrored
