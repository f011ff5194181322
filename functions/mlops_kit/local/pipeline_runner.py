"""The pipeline on one machine: the same step scripts as SageMaker, in one process, with the
container paths remapped under $MLOPS_HOME/runs/<run id>/."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Protocol

from mlops_kit.config import LocalSettings
from mlops_kit.core.gates import GATES, GateVerdict, evaluate_gates
from mlops_kit.local import lineage
from mlops_kit.registry.base import ModelRegistry, ModelVersion, RegistrationRequest
from mlops_pipelines import parameters
from mlops_pipelines.steps import evaluate, preprocess, train
from mlops_pipelines.steps._io import BadInputError, write_table
from mlops_pipelines.steps.schema import FRAUD_SAMPLE_SCHEMA, DatasetSchema

SAMPLE_ROWS = 100_000
STEPS = ("preprocess", "train", "evaluate", "gate", "register")


class Reporter(Protocol):
    def step_started(self, step: str, total: int | None = None) -> None: ...
    def step_progress(self, step: str, completed: int, total: int, note: str = "") -> None: ...
    def step_finished(self, step: str, seconds: float, note: str = "") -> None: ...


class SilentReporter:
    def step_started(self, step: str, total: int | None = None) -> None:
        pass

    def step_progress(self, step: str, completed: int, total: int, note: str = "") -> None:
        pass

    def step_finished(self, step: str, seconds: float, note: str = "") -> None:
        pass


@dataclass
class PipelineRunResult:
    run_id: str
    run_dir: Path
    parameters: dict[str, Any]
    evaluation: dict[str, Any]
    verdicts: list[GateVerdict]
    version: ModelVersion | None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "run_dir": str(self.run_dir),
            "status": "registered" if self.version else "gates_failed",
            "version": self.version.version if self.version else None,
            "parameters": self.parameters,
            "metrics": self.evaluation["metrics"], "latency": self.evaluation["latency"],
            "gates": [v.to_dict() for v in self.verdicts],
            "timings_seconds": self.timings,
        }


def ensure_sample_data(settings: LocalSettings, rows: int = SAMPLE_ROWS, seed: int = 42) -> Path:
    """The default input: generated once, then reused (deterministic, so reuse is exact)."""
    from mlops_kit.data.synthetic import generate

    path = settings.data_dir / f"fraud-sample-{rows}-seed{seed}.parquet"
    if not path.exists():
        write_table(generate(rows, seed=seed), path)
    return path


def run_pipeline(settings: LocalSettings, registry: ModelRegistry, *,
                 data: Path | None = None, overrides: Mapping[str, str] | None = None,
                 schema_path: Path | None = None, reporter: Reporter | None = None
                 ) -> PipelineRunResult:
    """Run every step; register only when every gate passes. BadInputError leaves nothing."""
    reporter = reporter or SilentReporter()
    try:
        params = parameters.resolve(dict(overrides or {}))
    except ValueError as exc:
        raise BadInputError(str(exc)) from None
    try:
        schema = DatasetSchema.load(schema_path) if schema_path else FRAUD_SAMPLE_SCHEMA
    except ValueError as exc:
        raise BadInputError(f"bad schema: {exc}") from None
    schema = schema.with_target(str(params["target"]))
    data = Path(data) if data else ensure_sample_data(settings)
    data = data.absolute()

    run_id = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    settings.runs_dir.mkdir(parents=True, exist_ok=True)
    staging = settings.runs_dir / f".staging-{run_id}"
    final = settings.runs_dir / run_id
    timings: dict[str, float] = {}
    try:
        manifest = _step(reporter, timings, "preprocess", lambda: preprocess.run(
            data, staging / "preprocess", schema=schema,
            validation_fraction=float(params["validation_fraction"]),
            test_fraction=float(params["test_fraction"]), seed=int(params["seed"]),
            bins=int(params["baseline_bins"])))

        hyperparameters = {name: params[name] for name in parameters.TRAINING_HYPERPARAMETERS}
        code_version = lineage.code_version()
        reporter.step_started("train", int(params["num_round"]))
        started = time.perf_counter()
        _quiet_mlflow()
        training = train.run(
            staging / "preprocess" / "train", staging / "preprocess" / "validation",
            staging / "model", staging / "train-output", hyperparameters,
            tracking_uri=settings.mlflow_uri, experiment=settings.model_group,
            artifact_root=settings.mlflow_artifact_root,
            run_tags={"mlops.pipeline_run": run_id, "mlops.code_version": code_version,
                      "mlops.data_sha256": manifest["data"]["sha256"]},
            on_round=lambda done, total, aupr: reporter.step_progress(
                "train", done, total, f"validation AUPR {aupr:.4f}"))
        timings["train"] = time.perf_counter() - started
        reporter.step_finished("train", timings["train"],
                               f"best round {training['best_round']}")

        thresholds = {gate.name: float(params[gate.name]) for gate in GATES}
        champion = registry.champion()
        evaluation = _step(reporter, timings, "evaluate", lambda: evaluate.run(
            staging / "model", staging / "preprocess" / "test", staging / "preprocess" / "train",
            staging / "evaluation", thresholds=thresholds,
            champion_location=champion.model_uri if champion else ""))
        verdicts = _step(reporter, timings, "gate",
                         lambda: evaluate_gates(evaluation, thresholds))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    # The run directory appears whole: a crash above leaves only a .staging-* folder.
    staging.rename(final)

    result = PipelineRunResult(run_id, final, params, evaluation, verdicts, None, timings)
    if not result.passed:
        reporter.step_finished("register", 0.0, "skipped: a gate failed")
        return result

    request = RegistrationRequest(
        model_group=registry.model_group, model_artifact=str(final / "model"),
        training_run_id=training["run_id"], metrics=evaluation["metrics"],
        latency={k: v for k, v in evaluation["latency"].items() if k != "samples"},
        gates=[v.to_dict() for v in verdicts],
        lineage={
            "pipeline_run": run_id,
            "data": {"uri": data.as_uri(), "sha256": manifest["data"]["sha256"],
                     "rows": manifest["data"]["rows"], "splits": manifest["splits"]},
            "code": {"version": code_version, "step_scripts": lineage.step_script_digests()},
            "parameters": params,
            "libraries": lineage.library_versions(),
            "container_image": lineage.container_image(),
            "model_sha256": training["model_sha256"],
            "drift_baseline": str(final / "preprocess" / "baseline" / "baseline.json"),
            "evaluation": str(final / "evaluation" / "evaluation.json"),
            "evaluation_report": str(final / "evaluation" / "report.html"),
            "champion_compared": evaluation["champion"].get("location", ""),
        },
        owner=settings.owner, use_case=settings.use_case,
        description=f"pipeline run {run_id}")
    result.version = _step(reporter, timings, "register", lambda: registry.register(request))
    return result


def _step(reporter: Reporter, timings: dict[str, float], name: str, action):
    reporter.step_started(name)
    started = time.perf_counter()
    outcome = action()
    timings[name] = time.perf_counter() - started
    reporter.step_finished(name, timings[name])
    return outcome


def _quiet_mlflow() -> None:
    # MLflow logs its database migrations at INFO on first use; they are not the user's concern.
    # It reads the level from the environment when it is first imported.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
