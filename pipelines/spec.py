"""The fixed facts of the SageMaker pipeline definition: step names, deployment-time
placeholders, job limits, what a registered version accepts, and the parameters that exist only
on AWS. Standard library only: no SageMaker SDK (the builders in `sagemaker_steps.py` and the
public API in `definition.py` both read these).
"""

from __future__ import annotations

from dataclasses import dataclass

PIPELINE_NAME = "mlops-kit-training"
"""Used in generated S3 keys only; the CDK app names the pipeline itself."""
DEFAULT_REGION = "us-east-1"
XGBOOST_FRAMEWORK_VERSION = "3.0-5"

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
ROLE_SENTINEL = "arn:aws:iam::000000000000:role/mlops-kit-placeholder-PipelineRoleArn"
TEXT_SUBSTITUTIONS = {ROLE_SENTINEL: "${PipelineRoleArn}"}

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
