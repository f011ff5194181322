"""Training step: seeded XGBoost with early stopping, tracked in MLflow.

SageMaker script mode (defaults) and the local remapping (arguments):
  channels  SM_CHANNEL_TRAIN, SM_CHANNEL_VALIDATION   --train-dir, --validation-dir
  model     SM_MODEL_DIR (/opt/ml/model)              --model-dir
  outputs   SM_OUTPUT_DATA_DIR                        --output-data-dir
Hyperparameters arrive as `--name value`, as SageMaker passes them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import _io
from .inference import MODEL_FILE, SPEC_FILE, FeatureSpec, category_key
from .schema import DatasetSchema, factorize_categories

HYPERPARAMETER_DEFAULTS: dict[str, Any] = {
    "max_depth": 5, "eta": 0.1, "num_round": 400, "early_stopping_rounds": 30,
    "subsample": 0.8, "colsample_bytree": 0.8, "min_child_weight": 1.0, "reg_lambda": 1.0,
    "seed": 42,
}
RoundCallback = Callable[[int, int, float], None]


def build_feature_spec(train, schema: DatasetSchema) -> FeatureSpec:
    vocabulary = {column: tuple(sorted(factorize_categories(train[column])[1]))
                  for column in schema.categorical}
    return FeatureSpec(schema.features, vocabulary, schema.target, schema.id_columns,
                       schema.data_columns)


def encode_frame(frame, spec: FeatureSpec) -> np.ndarray:
    """Vectorised twin of inference's row encoding: same codes, unknown or missing → NaN."""
    columns = []
    for name in spec.features:
        if name in spec.categorical:
            # encode_row's lookup, once per distinct value: categories by `category_key`, the
            # first vocabulary entry of a category keeps it (an old spec may name one twice).
            codes, names = factorize_categories(frame[name])
            position: dict[str, int] = {}
            for code, category in enumerate(spec.categorical[name]):
                position.setdefault(category_key(category), code)
            lookup = np.array([position.get(n, np.nan) for n in names] + [np.nan], np.float32)
            columns.append(lookup[codes])
        else:
            columns.append(frame[name].to_numpy(dtype=np.float32, na_value=np.nan))
    return np.column_stack(columns) if columns else np.empty((len(frame), 0), np.float32)


def xgboost_params(hp: dict[str, Any]) -> dict[str, Any]:
    return {
        "objective": "binary:logistic",
        "eval_metric": ["logloss", "aucpr"],  # the last one drives early stopping
        "tree_method": "hist",
        "max_depth": int(hp["max_depth"]), "eta": float(hp["eta"]),
        "subsample": float(hp["subsample"]), "colsample_bytree": float(hp["colsample_bytree"]),
        "min_child_weight": float(hp["min_child_weight"]), "lambda": float(hp["reg_lambda"]),
        "seed": int(hp["seed"]), "max_cat_to_onehot": 1,
    }


def train_model(train, validation, schema: DatasetSchema, hp: dict[str, Any],
                on_round: RoundCallback | None = None):
    """Train on frames; returns (booster cut at its best round, feature spec, history)."""
    import xgboost as xgb

    spec = build_feature_spec(train, schema)
    matrices = {
        name: xgb.DMatrix(encode_frame(frame, spec), label=frame[schema.target].to_numpy(),
                          feature_names=list(spec.features), feature_types=spec.feature_types,
                          enable_categorical=True)
        for name, frame in (("train", train), ("validation", validation))
    }
    history: dict[str, dict[str, list[float]]] = {}
    callbacks = []
    if on_round:
        total = int(hp["num_round"])

        class Progress(xgb.callback.TrainingCallback):
            def after_iteration(self, model, epoch, evals_log):
                latest = evals_log.get("validation", {}).get("aucpr", [float("nan")])[-1]
                on_round(epoch + 1, total, float(latest))
                return False

        callbacks.append(Progress())
    booster = xgb.train(
        xgboost_params(hp), matrices["train"], num_boost_round=int(hp["num_round"]),
        evals=[(matrices["train"], "train"), (matrices["validation"], "validation")],
        early_stopping_rounds=int(hp["early_stopping_rounds"]), evals_result=history,
        verbose_eval=False, callbacks=callbacks)
    best = int(booster.best_iteration)
    return booster[: best + 1], spec, history


def save_model(booster, spec: FeatureSpec, model_dir: str | Path) -> None:
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    # The explicit suffix picks UBJSON, which the SageMaker XGBoost 3.0-5 container reads too;
    # the file keeps the name that container's loader expects.
    staged = model_dir / f".{MODEL_FILE}.ubj"
    booster.save_model(str(staged))
    os.replace(staged, model_dir / MODEL_FILE)
    (model_dir / SPEC_FILE).write_text(json.dumps(spec.to_dict(), indent=2, sort_keys=True))


def run(train_dir: str | Path, validation_dir: str | Path, model_dir: str | Path,
        output_data_dir: str | Path, hp: dict[str, Any], *, tracking_uri: str = "",
        experiment: str = "mlops-kit", artifact_root: str = "", run_tags: dict[str, str] | None = None,
        on_round: RoundCallback | None = None) -> dict[str, Any]:
    train_file = _io.find_table(train_dir)
    validation_file = _io.find_table(validation_dir)
    schema = DatasetSchema.load(Path(train_dir) / "schema.json")
    train, validation = _io.read_table(train_file), _io.read_table(validation_file)
    started = time.perf_counter()
    booster, spec, history = train_model(train, validation, schema, hp, on_round)
    seconds = time.perf_counter() - started
    save_model(booster, spec, model_dir)
    best_round = booster.num_boosted_rounds()
    summary = {
        "best_round": best_round,
        "validation_aucpr": float(history["validation"]["aucpr"][best_round - 1]),
        "validation_logloss": float(history["validation"]["logloss"][best_round - 1]),
        "train_seconds": round(seconds, 3),
        "data_sha256": {"train": _io.sha256_file(train_file),
                        "validation": _io.sha256_file(validation_file)},
        "model_sha256": _io.sha256_file(Path(model_dir) / MODEL_FILE),
        "hyperparameters": hp,
    }
    summary["run_id"] = _track(tracking_uri, experiment, artifact_root, hp, history, summary,
                               model_dir, run_tags or {}) if tracking_uri else ""
    _io.write_json(Path(output_data_dir) / "training.json", summary)
    # Evaluation and registration find the run beside the model, in SageMaker and locally.
    _io.write_json(Path(model_dir) / "training.json", summary)
    return summary


def _track(tracking_uri: str, experiment: str, artifact_root: str, hp: dict[str, Any],
           history: dict, summary: dict[str, Any], model_dir: str | Path,
           run_tags: dict[str, str]) -> str:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(
        experiment, artifact_location=artifact_root or None)
    run = client.create_run(experiment_id, run_name=run_tags.get("mlops.pipeline_run", None))
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    metrics = [Metric(f"{split}_{name}", float(value), now, step)
               for split, by_metric in history.items()
               for name, values in by_metric.items()
               for step, value in enumerate(values)]
    metrics += [Metric(k, float(summary[k]), now, 0)
                for k in ("best_round", "validation_aucpr", "validation_logloss", "train_seconds")]
    tags = {**run_tags, "mlops.model_sha256": summary["model_sha256"],
            **{f"mlops.data_sha256.{k}": v for k, v in summary["data_sha256"].items()}}
    for start in range(0, len(metrics), 900):  # MLflow takes at most 1000 entries per batch
        client.log_batch(run_id, metrics=metrics[start:start + 900],
                         params=[Param(k, str(v)) for k, v in hp.items()] if start == 0 else [],
                         tags=[RunTag(k, str(v)) for k, v in tags.items()] if start == 0 else [])
    client.log_artifacts(run_id, str(model_dir), artifact_path="model")
    client.set_terminated(run_id)
    return run_id


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-dir", default=env("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train"))
    parser.add_argument("--validation-dir",
                        default=env("SM_CHANNEL_VALIDATION", "/opt/ml/input/data/validation"))
    parser.add_argument("--model-dir", default=env("SM_MODEL_DIR", "/opt/ml/model"))
    parser.add_argument("--output-data-dir",
                        default=env("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"))
    parser.add_argument("--mlflow-tracking-uri", default=env("MLFLOW_TRACKING_URI", ""))
    parser.add_argument("--mlflow-experiment", default=env("MLFLOW_EXPERIMENT_NAME", "mlops-kit"))
    parser.add_argument("--mlflow-artifact-root", default="")
    parser.add_argument("--code-version", default=env("MLOPS_CODE_VERSION", "unknown"))
    for name, default in HYPERPARAMETER_DEFAULTS.items():
        parser.add_argument(f"--{name}", type=type(default), default=default)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    hp = {name: getattr(args, name) for name in HYPERPARAMETER_DEFAULTS}
    try:
        summary = run(args.train_dir, args.validation_dir, args.model_dir, args.output_data_dir,
                      hp, tracking_uri=args.mlflow_tracking_uri,
                      experiment=args.mlflow_experiment, artifact_root=args.mlflow_artifact_root,
                      run_tags={"mlops.code_version": args.code_version})
    except (_io.BadInputError, ValueError) as exc:
        print(f"bad input: {exc}", file=sys.stderr)
        return 2
    print(f"train: best round {summary['best_round']}, "
          f"validation AUPR {summary['validation_aucpr']:.4f}, run {summary['run_id'] or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
