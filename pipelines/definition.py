"""The SageMaker Pipeline definition, generated offline and byte-identical on every run.

    PreprocessData (Processing) -> TrainModel (Training, script mode) -> EvaluateModel
    (Processing, PropertyFile evaluation.json) -> CheckQualityGates (Condition, every gate of
    mlops_kit.core.gates.GATES) -> RegisterModel (ModelStep: ModelBuilder.register)
                                 \\-> FailQualityGates (Fail, names the failed gates)

Built with the SageMaker Python SDK v3 under a PipelineSession that never leaves this process:
no credentials, no network. Values only known at deployment appear as the placeholders of
`PLACEHOLDERS` (CloudFormation `Fn::Sub` syntax), which the CDK app substitutes. Everything the
definition points at in the artifact bucket (code bundles, the SDK's helper scripts) is staged
under content-addressed keys `pipeline-code/<sha256>/...` by `stage_assets`, as a directory tree
that mirrors the bucket, for the CDK app to upload as an asset.

Public API (the `mlops pipeline definition` command calls these):
    render_definition(region) -> str        the JSON text
    write_definition(path, region) -> Path  written atomically
    stage_assets(out_dir, region) -> list   every staged object, at its bucket key
    build_code_bundle(out_dir) -> (Path, sha256)

The SageMaker SDK is imported inside functions only: importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from mlops_kit.core.gates import GATES

from . import bundle
from .parameters import PARAMETERS

PIPELINE_NAME = "mlops-kit-training"
"""Used in generated S3 keys only; the CDK app names the pipeline itself."""
DEFAULT_REGION = "us-east-1"
XGBOOST_FRAMEWORK_VERSION = "3.0-5"
DEFINITION_PATH = Path(__file__).resolve().with_name("definition.json")
BUILD_DIR = Path(__file__).resolve().with_name("build")
ASSETS_DIR = BUILD_DIR / "artifact-bucket"
"""Default `stage_assets` target: its tree mirrors the artifact bucket (keys = relative paths)."""

PLACEHOLDERS: dict[str, str] = {
    "${ArtifactBucket}": "Name of the artifact bucket: staged code (pipeline-code/), the "
                         "default input data prefix and every execution's outputs "
                         "(pipeline-runs/<execution id>/).",
    "${PipelineRoleArn}": "ARN of the execution role the processing and training jobs run as "
                          "(reads and writes the artifact bucket; with managed MLflow, also "
                          "calls the tracking server).",
    "${ModelPackageGroupName}": "Name of the model package group the RegisterModel step adds "
                                "versions to.",
}
"""Deployment-time values, by placeholder as it appears in the definition text."""

ARTIFACT_BUCKET = "${ArtifactBucket}"
MODEL_PACKAGE_GROUP = "${ModelPackageGroupName}"
# The SDK treats a role without "arn:...:iam::" and "/" as a role *name* and asks IAM for its
# ARN, so the build uses this ARN-shaped stand-in and the text gets the placeholder afterwards.
_ROLE_SENTINEL = "arn:aws:iam::000000000000:role/mlops-kit-placeholder-PipelineRoleArn"
_TEXT_SUBSTITUTIONS = {_ROLE_SENTINEL: "${PipelineRoleArn}"}

STEP_PREPROCESS = "PreprocessData"
STEP_TRAIN = "TrainModel"
STEP_EVALUATE = "EvaluateModel"
STEP_GATES = "CheckQualityGates"
STEP_REGISTER = "RegisterModel"
REGISTERED_METRICS = ("aupr", "ece", "score_psi", "champion_compared", "aupr_regression",
                      "aupr_regression_lower", "aupr_regression_upper")
"""evaluation.json's metrics the RegisterModel step copies into the version's metadata; each
is present in every evaluation (0 for the comparison figures without a champion)."""
STEP_FAIL = "FailQualityGates"
EVALUATION_PROPERTY_FILE = "EvaluationReport"
EVALUATION_OUTPUT = "evaluation"
EVALUATION_FILE = "evaluation.json"
FAILED_GATES_JSON_PATH = "gates_failed"
FAIL_MESSAGE_PREFIX = "Quality gates failed: "

PREPROCESS_OUTPUTS = ("train", "validation", "test", "baseline")
PREPROCESS_MAX_RUNTIME_S = 3600
TRAIN_MAX_RUNTIME_S = 7200
EVALUATE_MAX_RUNTIME_S = 3600
VOLUME_SIZE_GB = 30
INFERENCE_INSTANCE_TYPES = ("ml.m5.large", "ml.m5.xlarge", "ml.c5.large", "ml.c5.xlarge")
TRANSFORM_INSTANCE_TYPES = ("ml.m5.large", "ml.m5.xlarge")
PAYLOAD_TYPES = ("text/csv", "application/json")


@dataclass(frozen=True)
class AwsParameter:
    """A pipeline parameter that exists only on AWS (the local run has no use for it)."""

    name: str
    type: str  # "str" only, for now
    default: str
    description: str


AWS_PARAMETERS: tuple[AwsParameter, ...] = (
    AwsParameter("InputDataUri", "str", f"s3://{ARTIFACT_BUCKET}/datasets/input/",
                 "S3 prefix (or object) holding the one CSV or Parquet file to train on"),
    AwsParameter("ChampionModelUri", "str", "",
                 "model.tar.gz of the current champion; empty: no champion comparison"),
    AwsParameter("MlflowTrackingUri", "str", "",
                 "MLflow tracking URI or SageMaker managed MLflow ARN; empty: no tracking"),
    AwsParameter("ProcessingInstanceType", "str", "ml.m5.xlarge",
                 "Instance type of the preprocess and evaluate jobs"),
    AwsParameter("TrainingInstanceType", "str", "ml.m5.xlarge",
                 "Instance type of the training job"),
    AwsParameter("ModelApprovalStatus", "str", "PendingManualApproval",
                 "Approval status of the registered model version"),
)


# ----------------------------------------------------------------------------------------------
# Public API


def render_definition(region: str = DEFAULT_REGION) -> str:
    """The pipeline definition as JSON text: sorted keys, two-space indent, trailing newline."""
    return _render(region).text


def write_definition(path: str | os.PathLike = DEFINITION_PATH,
                     region: str = DEFAULT_REGION) -> Path:
    """Write the definition atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    _write_atomic(path, render_definition(region).encode())
    return path


def stage_assets(out_dir: str | os.PathLike = ASSETS_DIR,
                 region: str = DEFAULT_REGION) -> list[Path]:
    """Write every object the definition references in the artifact bucket under `out_dir`,
    each at its bucket key; returns the written paths, sorted. Keys are content-addressed
    (`pipeline-code/<sha256>/...`), so uploading the tree never replaces what an older
    definition still points at."""
    out_dir = Path(out_dir)
    written = []
    for key, data in sorted(_render(region).staged.items()):
        _write_atomic(out_dir / key, data)
        written.append(out_dir / key)
    return written


def build_code_bundle(out_dir: str | os.PathLike = ASSETS_DIR) -> tuple[Path, str]:
    """Build the steps bundle; returns its path under `out_dir` and its SHA-256."""
    steps = bundle.steps_bundle()
    return steps.write(out_dir), steps.sha256


# ----------------------------------------------------------------------------------------------
# Rendering


@dataclass(frozen=True)
class _Rendered:
    text: str
    staged: dict[str, bytes]


_render_lock = threading.Lock()
_cache: dict[tuple[str, str], _Rendered] = {}


def _render(region: str) -> _Rendered:
    steps_bundle, inference_bundle = bundle.steps_bundle(), bundle.inference_bundle()
    cache_key = (region, hashlib.sha256(steps_bundle.tar + inference_bundle.tar).hexdigest())
    with _render_lock:
        if cache_key not in _cache:
            staged = {steps_bundle.key: steps_bundle.data,
                      inference_bundle.key: inference_bundle.data}
            refused: list[str] = []
            with _offline_sdk(region):
                definition = _build_pipeline(region, steps_bundle, inference_bundle,
                                             staged, refused).definition()
            if refused:
                raise OfflineError("the SageMaker SDK tried to call AWS while rendering: "
                                   + "; ".join(refused))
            _cache[cache_key] = _Rendered(_canonical_text(definition), staged)
        return _cache[cache_key]


def _canonical_text(definition: str) -> str:
    text = json.dumps(json.loads(definition), indent=2, sort_keys=True, ensure_ascii=False)
    for sentinel, placeholder in _TEXT_SUBSTITUTIONS.items():
        text = text.replace(sentinel, placeholder)
    if "mlops-kit-placeholder" in text:
        raise RuntimeError("a placeholder stand-in leaked into the definition")
    return text + "\n"


_ENV_FOR_SDK = {
    "AWS_DEFAULT_REGION": None,  # set to the render region
    "AWS_EC2_METADATA_DISABLED": "true",
    "SAGEMAKER_VALIDATE_ROLE": "false",
}


@contextlib.contextmanager
def _offline_sdk(region: str) -> Iterator[None]:
    """Environment and patches that keep the SDK offline, undone on exit.

    AWS_DEFAULT_REGION must be set when `sagemaker` is first imported (a module creates a boto3
    client at import time); role validation is switched off; telemetry senders become no-ops.
    """
    saved = {name: os.environ.get(name) for name in _ENV_FOR_SDK}
    os.environ.update({name: value or region for name, value in _ENV_FOR_SDK.items()})
    patched: list[tuple[Any, str, Any]] = []
    levels: dict[logging.Logger, int] = {}
    try:
        import sagemaker.mlops.workflow  # noqa: F401  (the bulk of the SDK, with the region set)
        from sagemaker.core.telemetry import telemetry_logging

        for name in ("_send_telemetry_request", "_send_telemetry_request_sync"):
            patched.append((telemetry_logging, name, getattr(telemetry_logging, name)))
            setattr(telemetry_logging, name, _no_telemetry)
        # The SDK narrates every default it fills in, at INFO and DEBUG on loggers it sets up
        # itself; none of it is news here. Errors still show.
        for name, logger in list(logging.root.manager.loggerDict.items()):
            if name.split(".")[0] == "sagemaker" and isinstance(logger, logging.Logger):
                levels[logger] = logger.level
                logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Running within a PipelineSession")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="sagemaker")
            yield
    finally:
        for logger, level in levels.items():
            logger.setLevel(level)
        for module, name, original in reversed(patched):
            setattr(module, name, original)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _no_telemetry(*_args: Any, **_kwargs: Any) -> None:
    return None


class OfflineError(RuntimeError):
    """The SDK tried to call AWS while rendering the definition."""


def _offline_boto_session(region: str, refused: list[str]):
    """A boto3 session that cannot reach AWS: static stand-in credentials (so nothing searches
    the credential chain) and a hook that fails every request before it is sent, recording it
    in `refused` (the SDK swallows some failures; the render fails on any)."""
    import boto3
    import botocore.session

    core = botocore.session.Session()
    core.set_credentials("offline-render", "offline-render")

    def refuse(request, **_kwargs):
        refused.append(f"{request.method} {request.url}")
        raise OfflineError(f"refusing to send {request.method} {request.url} while rendering "
                           "the pipeline definition offline")

    core.register("before-send", refuse)
    return boto3.Session(botocore_session=core, region_name=region)


def _staging_session(region: str, staged: dict[str, bytes], refused: list[str]):
    """A PipelineSession whose uploads land in `staged` (key -> bytes) instead of S3."""
    from sagemaker.core.workflow.pipeline_context import PipelineSession

    def stage(bucket: str, key: str, data: bytes) -> None:
        if bucket != ARTIFACT_BUCKET or not key.startswith("pipeline-code/"):
            raise OfflineError(f"unexpected upload to s3://{bucket}/{key}")
        if staged.get(key, data) != data:
            raise OfflineError(f"two different objects staged at s3://{bucket}/{key}")
        staged[key] = data

    class StagingPipelineSession(PipelineSession):
        def default_bucket(self) -> str:
            return ARTIFACT_BUCKET

        def upload_data(self, path, bucket=None, key_prefix="data", callback=None,
                        extra_args=None):
            """Stage a file or directory under `pipeline-code/<digest>/<last prefix part>`."""
            bucket = bucket or ARTIFACT_BUCKET
            root = Path(path)
            files = ({root.name: root.read_bytes()} if root.is_file() else
                     {p.relative_to(root).as_posix(): p.read_bytes()
                      for p in sorted(root.rglob("*"))
                      if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"})
            digest = hashlib.sha256()
            for name in sorted(files):
                digest.update(f"{name}\0{hashlib.sha256(files[name]).hexdigest()}\n".encode())
            label = key_prefix.rstrip("/").rsplit("/", 1)[-1]
            prefix = f"pipeline-code/{digest.hexdigest()}/{label}"
            for name, data in files.items():
                stage(bucket, f"{prefix}/{name}", data)
            if root.is_file():
                return f"s3://{bucket}/{prefix}/{root.name}"
            return f"s3://{bucket}/{prefix}"

        def upload_string_as_file_body(self, body, bucket, key, kms_key=None):
            stage(bucket, key, body.encode() if isinstance(body, str) else bytes(body))
            return f"s3://{bucket}/{key}"

    session = StagingPipelineSession(boto_session=_offline_boto_session(region, refused),
                                     sagemaker_config={}, default_bucket=ARTIFACT_BUCKET)
    # An empty config is falsy, so the session loaded the machine's SDK defaults files (if
    # any: /etc/xdg/sagemaker, ~/.config/sagemaker); they must not shape the definition.
    session.sagemaker_config = {}
    return session


# ----------------------------------------------------------------------------------------------
# The pipeline


def _s3(*parts: Any):
    """`s3://${ArtifactBucket}/<parts...>` as a Join (parts may be pipeline variables)."""
    from sagemaker.core.workflow.functions import Join

    return Join(on="/", values=["s3:/", ARTIFACT_BUCKET, *parts])


def _build_pipeline(region: str, steps_bundle: bundle.CodeBundle,
                    inference_bundle: bundle.CodeBundle, staged: dict[str, bytes],
                    refused: list[str]):
    from sagemaker.core import image_uris
    from sagemaker.core.drift_check_baselines import DriftCheckBaselines
    from sagemaker.core.model_metrics import MetricsSource, ModelMetrics
    from sagemaker.core.processing import FrameworkProcessor
    from sagemaker.core.shapes import (OutputDataConfig, ProcessingInput, ProcessingOutput,
                                       ProcessingS3Input, ProcessingS3Output)
    from sagemaker.core.training.configs import Compute, InputData, SourceCode, StoppingCondition
    from sagemaker.core.workflow.conditions import (ConditionGreaterThanOrEqualTo,
                                                    ConditionLessThanOrEqualTo)
    from sagemaker.core.workflow.execution_variables import ExecutionVariables
    from sagemaker.core.workflow.functions import Join, JsonGet
    from sagemaker.core.workflow.parameters import (ParameterFloat, ParameterInteger,
                                                    ParameterString)
    from sagemaker.core.workflow.properties import PropertyFile
    from sagemaker.mlops.workflow import (ConditionStep, FailStep, ModelStep, Pipeline,
                                          ProcessingStep, SageMakerJobExceptionTypeEnum,
                                          SageMakerJobStepRetryPolicy, TrainingStep)
    from sagemaker.serve.model_builder import ModelBuilder

    session = _staging_session(region, staged, refused)
    image = image_uris.retrieve("xgboost", region=region, version=XGBOOST_FRAMEWORK_VERSION)

    # Parameters: every PARAMETERS entry under its own name, then the AWS-only ones.
    kinds = {"int": (ParameterInteger, int), "float": (ParameterFloat, float),
             "str": (ParameterString, str)}
    params = {p.name: kinds[p.type][0](name=p.name, default_value=kinds[p.type][1](p.default))
              for p in PARAMETERS}
    params.update({p.name: ParameterString(name=p.name, default_value=p.default)
                   for p in AWS_PARAMETERS})

    def arg(name: str):
        """A parameter as a container argument (arguments are strings)."""
        value = params[name]
        return value if isinstance(value, ParameterString) else value.to_string()

    run_prefix = ("pipeline-runs", ExecutionVariables.PIPELINE_EXECUTION_ID)
    code = steps_bundle.sha256
    bundle_uri = f"s3://{ARTIFACT_BUCKET}/{steps_bundle.key}"
    retry = [SageMakerJobStepRetryPolicy(
        exception_types=[SageMakerJobExceptionTypeEnum.CAPACITY_ERROR,
                         SageMakerJobExceptionTypeEnum.INTERNAL_ERROR,
                         SageMakerJobExceptionTypeEnum.RESOURCE_LIMIT],
        interval_seconds=60, backoff_rate=2.0, max_attempts=3)]

    def processor(base_job_name: str, max_runtime: int):
        return FrameworkProcessor(
            image_uri=image, command=["python3"], role=_ROLE_SENTINEL,
            instance_count=1, instance_type=params["ProcessingInstanceType"],
            volume_size_in_gb=VOLUME_SIZE_GB, max_runtime_in_seconds=max_runtime,
            base_job_name=base_job_name, sagemaker_session=session,
            # The helper scripts the SDK generates go under a prefix of their own, named by the
            # digest of the SDK's install_requirements.py; runproc.sh keys carry their own hash.
            code_location=f"s3://{ARTIFACT_BUCKET}/pipeline-code/{_sdk_helper_digest()}",
            env={"MLOPS_CODE_VERSION": code})

    def s3_input(name: str, source, destination: str):
        return ProcessingInput(input_name=name, s3_input=ProcessingS3Input(
            s3_uri=source, local_path=destination, s3_data_type="S3Prefix",
            s3_input_mode="File", s3_data_distribution_type="FullyReplicated"))

    def s3_output(step: str, name: str, source: str):
        return ProcessingOutput(output_name=name, s3_output=ProcessingS3Output(
            s3_uri=_s3(*run_prefix, step, name), local_path=source, s3_upload_mode="EndOfJob"))

    # 1. Preprocess
    preprocess_args = processor("mlops-preprocess", PREPROCESS_MAX_RUNTIME_S).run(
        code="preprocess.py", source_dir=bundle_uri, requirements=bundle.REQUIREMENTS_FILE,
        job_name="preprocess",
        inputs=[s3_input("data", params["InputDataUri"], "/opt/ml/processing/input/data")],
        outputs=[s3_output(STEP_PREPROCESS, name, f"/opt/ml/processing/output/{name}")
                 for name in PREPROCESS_OUTPUTS],
        arguments=["--input", "/opt/ml/processing/input/data",
                   "--output-dir", "/opt/ml/processing/output",
                   "--target", arg("target"),
                   "--validation-fraction", arg("validation_fraction"),
                   "--test-fraction", arg("test_fraction"),
                   "--seed", arg("seed"),
                   "--baseline-bins", arg("baseline_bins")])
    preprocess = ProcessingStep(name=STEP_PREPROCESS, step_args=preprocess_args,
                                retry_policies=retry)
    outputs = preprocess.properties.ProcessingOutputConfig.Outputs

    # 2. Train (script mode on the XGBoost framework image)
    # Hyperparameters are strings in CreateTrainingJob; the script receives `--name value`.
    hyperparameters = {p.name: arg(p.name) for p in PARAMETERS if p.step == "train"}
    hyperparameters["mlflow-tracking-uri"] = params["MlflowTrackingUri"]
    trainer = _staging_model_trainer_class()(
        training_image=image, role=_ROLE_SENTINEL, sagemaker_session=session,
        base_job_name="mlops-train",
        source_code=SourceCode(source_dir=bundle_uri, entry_script="train.py",
                               requirements=bundle.REQUIREMENTS_FILE),
        compute=Compute(instance_type=params["TrainingInstanceType"], instance_count=1,
                        volume_size_in_gb=VOLUME_SIZE_GB),
        stopping_condition=StoppingCondition(max_runtime_in_seconds=TRAIN_MAX_RUNTIME_S),
        output_data_config=OutputDataConfig(s3_output_path=_s3(*run_prefix, STEP_TRAIN),
                                            compression_type="GZIP"),
        hyperparameters=hyperparameters,
        environment={"MLOPS_CODE_VERSION": code},
    )
    train_args = trainer.train(input_data_config=[
        InputData(channel_name=name, data_source=outputs[name].S3Output.S3Uri)
        for name in ("train", "validation")])
    train = TrainingStep(name=STEP_TRAIN, step_args=train_args, retry_policies=retry)
    model_data = train.properties.ModelArtifacts.S3ModelArtifacts

    # 3. Evaluate
    evaluation_file = PropertyFile(name=EVALUATION_PROPERTY_FILE, output_name=EVALUATION_OUTPUT,
                                   path=EVALUATION_FILE)
    gate_arguments = []
    for gate in GATES:
        gate_arguments += [f"--{gate.name.replace('_', '-')}", arg(gate.name)]
    evaluate_args = processor("mlops-evaluate", EVALUATE_MAX_RUNTIME_S).run(
        code="evaluate.py", source_dir=bundle_uri, requirements=bundle.REQUIREMENTS_FILE,
        job_name="evaluate",
        inputs=[s3_input("model", model_data, "/opt/ml/processing/model"),
                s3_input("test", outputs["test"].S3Output.S3Uri, "/opt/ml/processing/test"),
                s3_input("train", outputs["train"].S3Output.S3Uri, "/opt/ml/processing/train")],
        outputs=[s3_output(STEP_EVALUATE, EVALUATION_OUTPUT, "/opt/ml/processing/evaluation")],
        arguments=["--model", "/opt/ml/processing/model",
                   "--test-dir", "/opt/ml/processing/test",
                   "--train-dir", "/opt/ml/processing/train",
                   "--output-dir", "/opt/ml/processing/evaluation",
                   "--champion-model", params["ChampionModelUri"],
                   *gate_arguments])
    evaluate = ProcessingStep(name=STEP_EVALUATE, step_args=evaluate_args,
                              property_files=[evaluation_file], retry_policies=retry)

    def evaluation_value(json_path: str):
        return JsonGet(step_name=evaluate.name, property_file=evaluation_file,
                       json_path=json_path)

    evaluation_uri = Join(on="/", values=[
        evaluate.properties.ProcessingOutputConfig.Outputs[EVALUATION_OUTPUT].S3Output.S3Uri,
        EVALUATION_FILE])
    baseline_uri = Join(on="/", values=[outputs["baseline"].S3Output.S3Uri, "baseline.json"])

    # 4. Register (when every gate passes)
    # The serving container's script mode fetches the inference bundle at start-up. Given as
    # environment rather than ModelBuilder(source_code=...), which would add a repack job to
    # the pipeline and download the bundle from S3 while building the definition.
    model = ModelBuilder(
        s3_model_data_url=model_data, image_uri=image, role_arn=_ROLE_SENTINEL,
        sagemaker_session=session, log_level=logging.ERROR,
        env_vars={
            "SAGEMAKER_PROGRAM": bundle.INFERENCE_ENTRY_POINT,
            "SAGEMAKER_SUBMIT_DIRECTORY": f"s3://{ARTIFACT_BUCKET}/{inference_bundle.key}",
            "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
            "SAGEMAKER_REGION": region,
            "MLOPS_CODE_VERSION": inference_bundle.sha256,
        },
    )
    lineage = {
        "mlops:code_sha256": code,
        "mlops:inference_code_sha256": inference_bundle.sha256,
        "mlops:kit_version": _kit_version(),
        **{f"mlops:script_sha256:{name}": digest
           for name, digest in bundle.script_digests().items()},
        "mlops:data_uri": params["InputDataUri"],
        "mlops:pipeline_execution_id": ExecutionVariables.PIPELINE_EXECUTION_ID,
        "mlops:training_job": train.properties.TrainingJobName,
        "mlops:model_sha256": evaluation_value("model.sha256"),
        # What `mlops registry list|show` reads for a version the pipeline registered: the
        # headline figures and the champion comparison (metadata values are strings).
        **{f"mlops:metric:{name}": Join(on="", values=[evaluation_value(f"metrics.{name}")])
           for name in REGISTERED_METRICS},
    }
    register_args = model.register(
        model_package_group_name=MODEL_PACKAGE_GROUP,
        content_types=list(PAYLOAD_TYPES), response_types=list(PAYLOAD_TYPES),
        inference_instances=list(INFERENCE_INSTANCE_TYPES),
        transform_instances=list(TRANSFORM_INSTANCE_TYPES),
        approval_status=params["ModelApprovalStatus"],
        model_metrics=ModelMetrics(model_statistics=MetricsSource(
            s3_uri=evaluation_uri, content_type="application/json")),
        drift_check_baselines=DriftCheckBaselines(
            model_statistics=MetricsSource(s3_uri=evaluation_uri,
                                           content_type="application/json"),
            model_data_statistics=MetricsSource(s3_uri=baseline_uri,
                                                content_type="application/json")),
        customer_metadata_properties=lineage,
        domain="MACHINE_LEARNING", task="CLASSIFICATION",
    )
    register = ModelStep(name=STEP_REGISTER, step_args=register_args)

    # 5. Gates: one condition per gate, from the one definition the local run uses too.
    comparisons = {">=": ConditionGreaterThanOrEqualTo, "<=": ConditionLessThanOrEqualTo}
    conditions = []
    for gate in GATES:
        if gate.comparison not in comparisons:
            raise ValueError(f"gate {gate.name}: no SageMaker condition for '{gate.comparison}'")
        conditions.append(comparisons[gate.comparison](
            left=evaluation_value(gate.json_path), right=params[gate.name]))
    fail = FailStep(name=STEP_FAIL, error_message=Join(
        on="", values=[FAIL_MESSAGE_PREFIX, evaluation_value(FAILED_GATES_JSON_PATH)]))
    gates = ConditionStep(name=STEP_GATES, conditions=conditions,
                          if_steps=[register], else_steps=[fail])

    return Pipeline(
        name=PIPELINE_NAME,
        parameters=list(params.values()),
        steps=[preprocess, train, evaluate, gates],
        sagemaker_session=session,
        pipeline_experiment_config=None,
    )


def _staging_model_trainer_class():
    """ModelTrainer that stages code in the session's default bucket without first asking IAM
    (iam:SimulatePrincipalPolicy) whether the role may write there: the CDK grants it."""
    from sagemaker.train.model_trainer import ModelTrainer

    class StagingModelTrainer(ModelTrainer):
        def _resolve_staging_bucket(self) -> tuple[str, None]:
            return self.sagemaker_session.default_bucket(), None

    return StagingModelTrainer


def _sdk_helper_digest() -> str:
    import sagemaker.core.utils.install_requirements as helper

    return hashlib.sha256(Path(helper.__file__).read_bytes()).hexdigest()


def _kit_version() -> str:
    import mlops_kit

    return mlops_kit.__version__


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """`python -m mlops_pipelines.definition [--out PATH] [--assets DIR] [--region R]`."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", default=str(DEFINITION_PATH))
    parser.add_argument("--assets", default="", help="also stage the referenced objects here")
    parser.add_argument("--region", default=DEFAULT_REGION)
    args = parser.parse_args(argv)
    print(write_definition(args.out, args.region))
    if args.assets:
        print(f"{len(stage_assets(args.assets, args.region))} object(s) staged under "
              f"{args.assets}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
