"""The SageMaker pipeline that `definition.py` renders, one builder per step (its module
docstring draws the graph), with the SageMaker Python SDK v3.

`build_pipeline` must run inside `offline_sdk.offline_sdk(region)`; the session it builds on
(`offline_sdk.staging_session`) stages every upload in memory. Each builder takes what the
earlier steps produce (their properties become the later steps' inputs), and nothing depends
on the machine or the time: the definition text is the same on every run. The SDK is
imported inside functions only.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mlops_kit.core.gates import GATES

from . import bundle
from .offline_sdk import staging_model_trainer_class, staging_session
from .parameters import PARAMETERS
from .spec import (ARTIFACT_BUCKET, AWS_PARAMETERS, EVALUATE_MAX_RUNTIME_S, EVALUATION_FILE,
                   EVALUATION_OUTPUT, EVALUATION_PROPERTY_FILE, FAIL_MESSAGE_PREFIX,
                   FAILED_GATES_JSON_PATH, INFERENCE_INSTANCE_TYPES, MODEL_PACKAGE_GROUP,
                   PAYLOAD_TYPES, PIPELINE_NAME, PREPROCESS_MAX_RUNTIME_S, PREPROCESS_OUTPUTS,
                   REGISTERED_METRICS, ROLE_SENTINEL, STEP_EVALUATE, STEP_FAIL, STEP_GATES,
                   STEP_PREPROCESS, STEP_REGISTER, STEP_TRAIN, TRAIN_MAX_RUNTIME_S,
                   TRANSFORM_INSTANCE_TYPES, VOLUME_SIZE_GB, XGBOOST_FRAMEWORK_VERSION)

EvaluationValue = Callable[[str], Any]
"""A JsonGet of evaluation.json (EvaluateModel's property file) at a JSON path."""


@dataclass(frozen=True)
class StepContext:
    """What every step builder shares: the session, the image, the pipeline parameters (by
    name), the code bundles and the retry policies of the job steps."""

    region: str
    session: Any
    image: str
    params: dict[str, Any]
    steps_bundle: bundle.CodeBundle
    inference_bundle: bundle.CodeBundle
    retry: list
    run_prefix: tuple

    @property
    def code(self) -> str:
        return self.steps_bundle.sha256

    @property
    def bundle_uri(self) -> str:
        return f"s3://{ARTIFACT_BUCKET}/{self.steps_bundle.key}"

    def arg(self, name: str):
        """A parameter as a container argument (arguments are strings)."""
        from sagemaker.core.workflow.parameters import ParameterString

        value = self.params[name]
        return value if isinstance(value, ParameterString) else value.to_string()

    def processor(self, base_job_name: str, max_runtime: int):
        from sagemaker.core.processing import FrameworkProcessor

        return FrameworkProcessor(
            image_uri=self.image, command=["python3"], role=ROLE_SENTINEL,
            instance_count=1, instance_type=self.params["ProcessingInstanceType"],
            volume_size_in_gb=VOLUME_SIZE_GB, max_runtime_in_seconds=max_runtime,
            base_job_name=base_job_name, sagemaker_session=self.session,
            # The helper scripts the SDK generates go under a prefix of their own, named by the
            # digest of the SDK's install_requirements.py; runproc.sh keys carry their own hash.
            code_location=f"s3://{ARTIFACT_BUCKET}/pipeline-code/{_sdk_helper_digest()}",
            env={"MLOPS_CODE_VERSION": self.code})

    def s3_output(self, step: str, name: str, source: str):
        from sagemaker.core.shapes import ProcessingOutput, ProcessingS3Output

        return ProcessingOutput(output_name=name, s3_output=ProcessingS3Output(
            s3_uri=_s3(*self.run_prefix, step, name), local_path=source,
            s3_upload_mode="EndOfJob"))


def build_pipeline(region: str, steps_bundle: bundle.CodeBundle,
                   inference_bundle: bundle.CodeBundle, staged: dict[str, bytes],
                   refused: list[str]):
    """The Pipeline object; uploads land in `staged`, refused AWS requests in `refused`."""
    from sagemaker.core import image_uris
    from sagemaker.core.workflow.execution_variables import ExecutionVariables
    from sagemaker.mlops.workflow import Pipeline

    session = staging_session(region, staged, refused)
    image = image_uris.retrieve("xgboost", region=region, version=XGBOOST_FRAMEWORK_VERSION)
    ctx = StepContext(region=region, session=session, image=image,
                      params=pipeline_parameters(), steps_bundle=steps_bundle,
                      inference_bundle=inference_bundle, retry=_job_retry_policies(),
                      run_prefix=("pipeline-runs", ExecutionVariables.PIPELINE_EXECUTION_ID))
    preprocess = preprocess_step(ctx)
    outputs = preprocess.properties.ProcessingOutputConfig.Outputs
    train = train_step(ctx, outputs)
    evaluate, evaluation_value = evaluate_step(
        ctx, outputs, train.properties.ModelArtifacts.S3ModelArtifacts)
    register = register_step(ctx, outputs, train, evaluate, evaluation_value)
    gates = gates_step(ctx, evaluation_value, register)
    return Pipeline(
        name=PIPELINE_NAME,
        parameters=list(ctx.params.values()),
        steps=[preprocess, train, evaluate, gates],
        sagemaker_session=session,
        pipeline_experiment_config=None,
    )


def pipeline_parameters() -> dict[str, Any]:
    """Every PARAMETERS entry under its own name, then the AWS-only ones."""
    from sagemaker.core.workflow.parameters import (ParameterFloat, ParameterInteger,
                                                    ParameterString)

    kinds = {"int": (ParameterInteger, int), "float": (ParameterFloat, float),
             "str": (ParameterString, str)}
    params = {p.name: kinds[p.type][0](name=p.name, default_value=kinds[p.type][1](p.default))
              for p in PARAMETERS}
    params.update({p.name: ParameterString(name=p.name, default_value=p.default)
                   for p in AWS_PARAMETERS})
    return params


def _job_retry_policies() -> list:
    from sagemaker.mlops.workflow import (SageMakerJobExceptionTypeEnum,
                                          SageMakerJobStepRetryPolicy)

    return [SageMakerJobStepRetryPolicy(
        exception_types=[SageMakerJobExceptionTypeEnum.CAPACITY_ERROR,
                         SageMakerJobExceptionTypeEnum.INTERNAL_ERROR,
                         SageMakerJobExceptionTypeEnum.RESOURCE_LIMIT],
        interval_seconds=60, backoff_rate=2.0, max_attempts=3)]


def _s3(*parts: Any):
    """`s3://${ArtifactBucket}/<parts...>` as a Join (parts may be pipeline variables)."""
    from sagemaker.core.workflow.functions import Join

    return Join(on="/", values=["s3:/", ARTIFACT_BUCKET, *parts])


def _s3_input(name: str, source, destination: str):
    from sagemaker.core.shapes import ProcessingInput, ProcessingS3Input

    return ProcessingInput(input_name=name, s3_input=ProcessingS3Input(
        s3_uri=source, local_path=destination, s3_data_type="S3Prefix",
        s3_input_mode="File", s3_data_distribution_type="FullyReplicated"))


def preprocess_step(ctx: StepContext):
    """1. Split the input data and compute the drift baseline."""
    from sagemaker.mlops.workflow import ProcessingStep

    preprocess_args = ctx.processor("mlops-preprocess", PREPROCESS_MAX_RUNTIME_S).run(
        code="preprocess.py", source_dir=ctx.bundle_uri, requirements=bundle.REQUIREMENTS_FILE,
        job_name="preprocess",
        inputs=[_s3_input("data", ctx.params["InputDataUri"], "/opt/ml/processing/input/data")],
        outputs=[ctx.s3_output(STEP_PREPROCESS, name, f"/opt/ml/processing/output/{name}")
                 for name in PREPROCESS_OUTPUTS],
        arguments=["--input", "/opt/ml/processing/input/data",
                   "--output-dir", "/opt/ml/processing/output",
                   "--target", ctx.arg("target"),
                   "--validation-fraction", ctx.arg("validation_fraction"),
                   "--test-fraction", ctx.arg("test_fraction"),
                   "--seed", ctx.arg("seed"),
                   "--baseline-bins", ctx.arg("baseline_bins")])
    return ProcessingStep(name=STEP_PREPROCESS, step_args=preprocess_args,
                          retry_policies=ctx.retry)


def train_step(ctx: StepContext, outputs):
    """2. Train, script mode on the XGBoost framework image, on the train and validation
    splits (`outputs`: the preprocess step's processing outputs)."""
    from sagemaker.core.shapes import OutputDataConfig
    from sagemaker.core.training.configs import Compute, InputData, SourceCode, StoppingCondition
    from sagemaker.mlops.workflow import TrainingStep

    # Hyperparameters are strings in CreateTrainingJob; the script receives `--name value`.
    hyperparameters = {p.name: ctx.arg(p.name) for p in PARAMETERS if p.step == "train"}
    hyperparameters["mlflow-tracking-uri"] = ctx.params["MlflowTrackingUri"]
    trainer = staging_model_trainer_class()(
        training_image=ctx.image, role=ROLE_SENTINEL, sagemaker_session=ctx.session,
        base_job_name="mlops-train",
        source_code=SourceCode(source_dir=ctx.bundle_uri, entry_script="train.py",
                               requirements=bundle.REQUIREMENTS_FILE),
        compute=Compute(instance_type=ctx.params["TrainingInstanceType"], instance_count=1,
                        volume_size_in_gb=VOLUME_SIZE_GB),
        stopping_condition=StoppingCondition(max_runtime_in_seconds=TRAIN_MAX_RUNTIME_S),
        output_data_config=OutputDataConfig(s3_output_path=_s3(*ctx.run_prefix, STEP_TRAIN),
                                            compression_type="GZIP"),
        hyperparameters=hyperparameters,
        environment={"MLOPS_CODE_VERSION": ctx.code},
    )
    train_args = trainer.train(input_data_config=[
        InputData(channel_name=name, data_source=outputs[name].S3Output.S3Uri)
        for name in ("train", "validation")])
    return TrainingStep(name=STEP_TRAIN, step_args=train_args, retry_policies=ctx.retry)


def evaluate_step(ctx: StepContext, outputs, model_data) -> tuple[Any, EvaluationValue]:
    """3. Evaluate the trained model (`model_data`) on the test split, against the gates'
    thresholds; returns the step and the reader of its evaluation.json."""
    from sagemaker.core.workflow.functions import JsonGet
    from sagemaker.core.workflow.properties import PropertyFile
    from sagemaker.mlops.workflow import ProcessingStep

    evaluation_file = PropertyFile(name=EVALUATION_PROPERTY_FILE, output_name=EVALUATION_OUTPUT,
                                   path=EVALUATION_FILE)
    gate_arguments = []
    for gate in GATES:
        gate_arguments += [f"--{gate.name.replace('_', '-')}", ctx.arg(gate.name)]
    evaluate_args = ctx.processor("mlops-evaluate", EVALUATE_MAX_RUNTIME_S).run(
        code="evaluate.py", source_dir=ctx.bundle_uri, requirements=bundle.REQUIREMENTS_FILE,
        job_name="evaluate",
        inputs=[_s3_input("model", model_data, "/opt/ml/processing/model"),
                _s3_input("test", outputs["test"].S3Output.S3Uri, "/opt/ml/processing/test"),
                _s3_input("train", outputs["train"].S3Output.S3Uri, "/opt/ml/processing/train")],
        outputs=[ctx.s3_output(STEP_EVALUATE, EVALUATION_OUTPUT,
                               "/opt/ml/processing/evaluation")],
        arguments=["--model", "/opt/ml/processing/model",
                   "--test-dir", "/opt/ml/processing/test",
                   "--train-dir", "/opt/ml/processing/train",
                   "--output-dir", "/opt/ml/processing/evaluation",
                   "--champion-model", ctx.params["ChampionModelUri"],
                   *gate_arguments])
    evaluate = ProcessingStep(name=STEP_EVALUATE, step_args=evaluate_args,
                              property_files=[evaluation_file], retry_policies=ctx.retry)

    def evaluation_value(json_path: str):
        return JsonGet(step_name=evaluate.name, property_file=evaluation_file,
                       json_path=json_path)

    return evaluate, evaluation_value


def register_step(ctx: StepContext, outputs, train, evaluate,
                  evaluation_value: EvaluationValue):
    """4. Register the model version (when every gate passes), with its evaluation, its
    drift baseline and its lineage."""
    from sagemaker.core.drift_check_baselines import DriftCheckBaselines
    from sagemaker.core.model_metrics import MetricsSource, ModelMetrics
    from sagemaker.core.workflow.functions import Join
    from sagemaker.mlops.workflow import ModelStep

    evaluation_uri = Join(on="/", values=[
        evaluate.properties.ProcessingOutputConfig.Outputs[EVALUATION_OUTPUT].S3Output.S3Uri,
        EVALUATION_FILE])
    baseline_uri = Join(on="/", values=[outputs["baseline"].S3Output.S3Uri, "baseline.json"])
    model = _serving_model(ctx, train.properties.ModelArtifacts.S3ModelArtifacts)
    lineage = _lineage(ctx, train, evaluation_value)
    register_args = model.register(
        model_package_group_name=MODEL_PACKAGE_GROUP,
        content_types=list(PAYLOAD_TYPES), response_types=list(PAYLOAD_TYPES),
        inference_instances=list(INFERENCE_INSTANCE_TYPES),
        transform_instances=list(TRANSFORM_INSTANCE_TYPES),
        approval_status=ctx.params["ModelApprovalStatus"],
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
    return ModelStep(name=STEP_REGISTER, step_args=register_args)


def _serving_model(ctx: StepContext, model_data):
    """The model as the serving container runs it. Its script mode fetches the inference
    bundle at start-up. Given as environment rather than ModelBuilder(source_code=...), which
    would add a repack job to the pipeline and download the bundle from S3 while building the
    definition."""
    from sagemaker.serve.model_builder import ModelBuilder

    return ModelBuilder(
        s3_model_data_url=model_data, image_uri=ctx.image, role_arn=ROLE_SENTINEL,
        sagemaker_session=ctx.session, log_level=logging.ERROR,
        env_vars={
            "SAGEMAKER_PROGRAM": bundle.INFERENCE_ENTRY_POINT,
            "SAGEMAKER_SUBMIT_DIRECTORY": f"s3://{ARTIFACT_BUCKET}/{ctx.inference_bundle.key}",
            "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
            "SAGEMAKER_REGION": ctx.region,
            "MLOPS_CODE_VERSION": ctx.inference_bundle.sha256,
        },
    )


def _lineage(ctx: StepContext, train, evaluation_value: EvaluationValue) -> dict[str, Any]:
    """The registered version's metadata: code, data, execution and evaluation it came from."""
    from sagemaker.core.workflow.execution_variables import ExecutionVariables
    from sagemaker.core.workflow.functions import Join

    return {
        "mlops:code_sha256": ctx.code,
        "mlops:inference_code_sha256": ctx.inference_bundle.sha256,
        "mlops:kit_version": _kit_version(),
        **{f"mlops:script_sha256:{name}": digest
           for name, digest in bundle.script_digests().items()},
        "mlops:data_uri": ctx.params["InputDataUri"],
        "mlops:pipeline_execution_id": ExecutionVariables.PIPELINE_EXECUTION_ID,
        "mlops:training_job": train.properties.TrainingJobName,
        "mlops:model_sha256": evaluation_value("model.sha256"),
        # What `mlops registry list|show` reads for a version the pipeline registered: the
        # headline figures and the champion comparison (metadata values are strings).
        **{f"mlops:metric:{name}": Join(on="", values=[evaluation_value(f"metrics.{name}")])
           for name in REGISTERED_METRICS},
    }


def gates_step(ctx: StepContext, evaluation_value: EvaluationValue, register):
    """5. Gates: one condition per gate, from the one definition the local run uses too;
    `register` when all hold, else a Fail step that names the failed gates."""
    from sagemaker.core.workflow.conditions import (ConditionGreaterThanOrEqualTo,
                                                    ConditionLessThanOrEqualTo)
    from sagemaker.core.workflow.functions import Join
    from sagemaker.mlops.workflow import ConditionStep, FailStep

    comparisons = {">=": ConditionGreaterThanOrEqualTo, "<=": ConditionLessThanOrEqualTo}
    conditions = []
    for gate in GATES:
        if gate.comparison not in comparisons:
            raise ValueError(f"gate {gate.name}: no SageMaker condition for '{gate.comparison}'")
        conditions.append(comparisons[gate.comparison](
            left=evaluation_value(gate.json_path), right=ctx.params[gate.name]))
    fail = FailStep(name=STEP_FAIL, error_message=Join(
        on="", values=[FAIL_MESSAGE_PREFIX, evaluation_value(FAILED_GATES_JSON_PATH)]))
    return ConditionStep(name=STEP_GATES, conditions=conditions,
                         if_steps=[register], else_steps=[fail])


def _sdk_helper_digest() -> str:
    import sagemaker.core.utils.install_requirements as helper

    return hashlib.sha256(Path(helper.__file__).read_bytes()).hexdigest()


def _kit_version() -> str:
    import mlops_kit

    return mlops_kit.__version__
