"""The pipeline on one machine: the same step scripts as SageMaker, in one process, with the
container paths remapped under $MLOPS_HOME/runs/<run id>/.

Any number of runs may share a home at once, and any of them may die at any point (SIGKILL
included) without blocking the next:
- a run builds `runs/.staging-<id>/` while it holds an flock on `runs/.staging-<id>.lock` (taken
  before the folder exists, dropped by the kernel however the process ends); each run first
  sweeps the staging folders whose lock nobody holds, and marks their MLflow runs KILLED
  (`pipeline_staging.py`);
- MLflow's SQLite store is created once per home, under `$MLOPS_HOME/.mlflow.lock`, in a
  temporary file renamed into place when migrated, so parallel first runs never race alembic
  and a run killed mid-migration leaves no half-made store (`pipeline_tracking.py`);
- registration is one SQLite transaction (`registry/local.py`).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol

from mlops_kit.config import LocalSettings
from mlops_kit.core.gates import GATES, GateVerdict, evaluate_gates
from mlops_kit.local import lineage
from mlops_kit.local.pipeline_staging import (CLAIM_PREFIX, LOCK_SUFFIX, RUN_ID, STAGING_PREFIX,
                                              UNLOCKED_STAGING_MAX_AGE_S, StagingClaim,
                                              sweep_abandoned_runs)
from mlops_kit.local.pipeline_tracking import (TRACKING_LOCK_TIMEOUT_S, prepare_tracking,
                                               quiet_mlflow)
from mlops_kit.registry.base import ModelRegistry, ModelVersion, RegistrationRequest
from mlops_kit.tracking import run_log
from mlops_pipelines import parameters
from mlops_pipelines.steps import evaluate, preprocess, train
from mlops_pipelines.steps._io import BadInputError, write_table
from mlops_pipelines.steps.schema import FRAUD_SAMPLE_SCHEMA, DatasetSchema

__all__ = ["CLAIM_PREFIX", "LOCK_SUFFIX", "RUN_ID", "SAMPLE_ROWS", "STAGING_PREFIX", "STEPS",
           "TRACKING_LOCK_TIMEOUT_S", "UNLOCKED_STAGING_MAX_AGE_S", "PipelineRunResult",
           "Reporter", "SilentReporter", "StagingClaim", "ensure_sample_data",
           "prepare_tracking", "run_pipeline", "sweep_abandoned_runs"]

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


def declared_overrides(model: Any) -> dict[str, str]:
    """A declared model's pipeline parameters (`ModelDeclaration.pipeline_parameters`) as the
    NAME=VALUE overrides `run_pipeline` takes."""
    return {name: str(value) for name, value in model.pipeline_parameters().items()}


def ensure_sample_data(settings: LocalSettings, rows: int = SAMPLE_ROWS, seed: int = 42) -> Path:
    """The default input: generated once, then reused (deterministic, so reuse is exact)."""
    from mlops_kit.data.synthetic import generate

    path = settings.data_dir / f"fraud-sample-{rows}-seed{seed}.parquet"
    if not path.exists():
        write_table(generate(rows, seed=seed), path)
    return path


@dataclass
class _Run:
    """One run's resolved inputs, and where its steps report and time themselves."""
    settings: LocalSettings
    reporter: Reporter
    params: dict[str, Any]
    schema: DatasetSchema
    data: Path
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class _StepOutputs:
    """What the steps before registration produced, as the registration needs it."""
    manifest: dict[str, Any]
    training: dict[str, Any]
    code_version: str
    evaluation: dict[str, Any]
    verdicts: list[GateVerdict]


def run_pipeline(settings: LocalSettings, registry: ModelRegistry, *,
                 data: Path | None = None, overrides: Mapping[str, str] | None = None,
                 schema_path: Path | None = None, reporter: Reporter | None = None
                 ) -> PipelineRunResult:
    """Run every step; register only when every gate passes. BadInputError leaves nothing."""
    params, schema = _resolve_parameters_and_schema(overrides, schema_path)
    data = Path(data) if data else ensure_sample_data(settings)
    run = _Run(settings, reporter or SilentReporter(), params, schema, data.absolute())

    abandoned = sweep_abandoned_runs(settings.runs_dir)
    run_id, final, outputs = _run_steps_staged(run, registry, abandoned)

    result = PipelineRunResult(run_id, final, params, outputs.evaluation, outputs.verdicts, None,
                               run.timings)
    # Best-effort views for the scientist (a warning, never a lost registration).
    run_log.record_evaluation(settings.mlflow_uri, outputs.training["run_id"], outputs.evaluation,
                              outputs.verdicts, final / "evaluation", manifest=outputs.manifest,
                              code_version=outputs.code_version)
    if not result.passed:
        run.reporter.step_finished("register", 0.0, "skipped: a gate failed")
        return result

    request = _registration_request(run, registry, run_id, final, outputs)
    result.version = _step(run.reporter, run.timings, "register",
                           lambda: registry.register(request))
    run_log.record_registration(settings, registry, outputs.training["run_id"], result.version)
    return result


def _resolve_parameters_and_schema(overrides: Mapping[str, str] | None,
                                   schema_path: Path | None
                                   ) -> tuple[dict[str, Any], DatasetSchema]:
    """The run's parameters (defaults with `overrides`) and its data contract; BadInputError
    when either is wrong."""
    try:
        params = parameters.resolve(dict(overrides or {}))
    except ValueError as exc:
        raise BadInputError(str(exc)) from None
    try:
        schema = DatasetSchema.load(schema_path) if schema_path else FRAUD_SAMPLE_SCHEMA
    except ValueError as exc:
        raise BadInputError(f"bad schema: {exc}") from None
    return params, schema.with_target(str(params["target"]))


def _run_steps_staged(run: _Run, registry: ModelRegistry, abandoned: list[str]
                      ) -> tuple[str, Path, _StepOutputs]:
    """preprocess → train → evaluate → gate in a staging folder of this run's own, renamed to
    `runs/<run id>` once they are done; returns the run id, that folder and what they made."""
    with StagingClaim(run.settings.runs_dir) as claim:
        run_id, staging = claim.run_id, claim.folder
        final = run.settings.runs_dir / run_id
        try:
            manifest = _step(run.reporter, run.timings, "preprocess", lambda: preprocess.run(
                run.data, staging / "preprocess", schema=run.schema,
                validation_fraction=float(run.params["validation_fraction"]),
                test_fraction=float(run.params["test_fraction"]), seed=int(run.params["seed"]),
                bins=int(run.params["baseline_bins"])))
            code_version = lineage.code_version()
            training = _train(run, staging, run_id, manifest, code_version, abandoned)
            evaluation, verdicts = _evaluate_and_gate(run, registry, staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        # The run directory appears whole: a crash above leaves only a .staging-* folder, which
        # a later run sweeps once this process is gone (SIGKILL skips the except clause).
        staging.rename(final)
    return run_id, final, _StepOutputs(manifest, training, code_version, evaluation, verdicts)


def _train(run: _Run, staging: Path, run_id: str, manifest: dict[str, Any], code_version: str,
           abandoned: list[str]) -> dict[str, Any]:
    """The train step, tracked in MLflow (its store prepared first, the abandoned runs' MLflow
    runs marked KILLED), reporting each round's validation AUPR."""
    params, reporter = run.params, run.reporter
    hyperparameters = {name: params[name] for name in parameters.TRAINING_HYPERPARAMETERS}
    reporter.step_started("train", int(params["num_round"]))
    started = time.perf_counter()
    quiet_mlflow()
    prepare_tracking(run.settings, abandoned_runs=abandoned)
    training = train.run(
        staging / "preprocess" / "train", staging / "preprocess" / "validation",
        staging / "model", staging / "train-output", hyperparameters,
        tracking_uri=run.settings.mlflow_uri, experiment=run.settings.model_group,
        artifact_root=run.settings.mlflow_artifact_root,
        run_tags={"mlops.pipeline_run": run_id, "mlops.code_version": code_version,
                  "mlops.data_sha256": manifest["data"]["sha256"]},
        on_round=lambda done, total, aupr: reporter.step_progress(
            "train", done, total, f"validation AUPR {aupr:.4f}"))
    run.timings["train"] = time.perf_counter() - started
    reporter.step_finished("train", run.timings["train"], f"best round {training['best_round']}")
    return training


def _evaluate_and_gate(run: _Run, registry: ModelRegistry, staging: Path
                       ) -> tuple[dict[str, Any], list[GateVerdict]]:
    """The evaluate step (against the champion's model when there is one) and the gates'
    verdicts on its figures."""
    thresholds = {gate.name: float(run.params[gate.name]) for gate in GATES}
    champion = registry.champion()
    evaluation = _step(run.reporter, run.timings, "evaluate", lambda: evaluate.run(
        staging / "model", staging / "preprocess" / "test",
        staging / "preprocess" / "train", staging / "evaluation", thresholds=thresholds,
        champion_location=champion.model_uri if champion else ""))
    verdicts = _step(run.reporter, run.timings, "gate",
                     lambda: evaluate_gates(evaluation, thresholds))
    return evaluation, verdicts


def _registration_request(run: _Run, registry: ModelRegistry, run_id: str, final: Path,
                          outputs: _StepOutputs) -> RegistrationRequest:
    """The version to register, with its lineage: data, code, parameters, libraries, image,
    model digest, and where the run's baseline and evaluation are."""
    settings, evaluation, training = run.settings, outputs.evaluation, outputs.training
    manifest = outputs.manifest
    return RegistrationRequest(
        model_group=registry.model_group, model_artifact=str(final / "model"),
        training_run_id=training["run_id"], metrics=evaluation["metrics"],
        # The gated figures and their wall-clock companions; counts stay in evaluation.json.
        latency={k: v for k, v in evaluation["latency"].items() if k.endswith("_ms")},
        gates=[v.to_dict() for v in outputs.verdicts],
        lineage={
            "pipeline_run": run_id,
            "data": {"uri": run.data.as_uri(), "sha256": manifest["data"]["sha256"],
                     "rows": manifest["data"]["rows"], "splits": manifest["splits"]},
            "code": {"version": outputs.code_version,
                     "step_scripts": lineage.step_script_digests()},
            "parameters": run.params,
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


def _step(reporter: Reporter, timings: dict[str, float], name: str, action):
    reporter.step_started(name)
    started = time.perf_counter()
    outcome = action()
    timings[name] = time.perf_counter() - started
    reporter.step_finished(name, timings[name])
    return outcome
