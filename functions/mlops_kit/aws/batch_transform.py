"""Batch scoring: a SageMaker Batch Transform job from the champion's model package.

CSV in, CSV out, one record a line (ContentType text/csv, SplitType Line, AssembleWith Line).
The job name is derived from model, input and output, so launching the same scoring twice
(a retried Lambda, a double click) starts one job; a new output prefix starts a new one.

IAM: sagemaker:CreateModel, sagemaker:CreateTransformJob, iam:PassRole on the execution role;
with `start_for_champion`, also what `SageMakerRegistry` reads (dynamodb:Query,
dynamodb:GetItem, sagemaker:DescribeModelPackage, sagemaker:DescribeModelPackageGroup).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

from botocore.exceptions import ClientError

from mlops_kit.endpoints import ModelSource

from .clients import Backoff, LazyClient, error_message
from .models import ensure_model, resource_name

IAM_ACTIONS = ("sagemaker:CreateModel", "sagemaker:CreateTransformJob", "iam:PassRole")
"""What BatchTransformLauncher.start calls; start_for_champion adds the registry's reads."""


class NoChampionError(Exception):
    """No version serves the endpoint yet: there is nothing to batch-score with."""


class BatchTransformLauncher:
    def __init__(self, client: Any = None, *, execution_role_arn: str,
                 instance_type: str = "ml.m5.xlarge", instance_count: int = 1,
                 max_payload_mb: int = 6, max_concurrent_transforms: int = 0,
                 image_uri: str = "", output_kms_key_id: str = "", volume_kms_key_id: str = "",
                 data_processing: Mapping[str, str] | None = None, max_attempts: int = 5,
                 sleep: Callable[[float], None] = time.sleep):
        if not execution_role_arn:
            raise ValueError("BatchTransformLauncher needs the SageMaker execution role ARN")
        if instance_count < 1:
            raise ValueError("a transform job needs at least one instance")
        self.execution_role_arn = execution_role_arn
        self.instance_type = instance_type
        self.instance_count = instance_count
        self.max_payload_mb = max_payload_mb
        self.max_concurrent_transforms = max_concurrent_transforms
        self.image_uri = image_uri
        self.output_kms_key_id = output_kms_key_id
        self.volume_kms_key_id = volume_kms_key_id
        self.data_processing = dict(data_processing or {})
        """e.g. {"InputFilter": "$[1:]", "JoinSource": "Input"} to drop an id column and
        join the scores to the input lines."""
        self._client = LazyClient("sagemaker", client)
        self._backoff = Backoff(max_attempts=max_attempts, sleep=sleep)

    def _call(self, operation: str, **kwargs: Any) -> Any:
        return self._backoff.call(getattr(self._client(), operation), **kwargs)

    def start(self, source: ModelSource, *, input_s3_uri: str, output_s3_uri: str,
              job_name: str = "") -> str:
        """Create the model if needed and start the job; returns the job name."""
        for uri in (input_s3_uri, output_s3_uri):
            if not uri.startswith("s3://"):
                raise ValueError(f"batch transform needs s3:// URIs, got '{uri}'")
        model = ensure_model(self._call, source, execution_role_arn=self.execution_role_arn,
                             image_uri=self.image_uri)
        name = job_name or resource_name(
            f"{model.rsplit('-', 1)[0]}-batch", f"{model}|{input_s3_uri}|{output_s3_uri}",
            digest_chars=12)
        request: dict[str, Any] = {
            "TransformJobName": name,
            "ModelName": model,
            "BatchStrategy": "MultiRecord",
            "MaxPayloadInMB": int(self.max_payload_mb),
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                "S3Uri": input_s3_uri}},
                "ContentType": "text/csv", "SplitType": "Line", "CompressionType": "None"},
            "TransformOutput": {"S3OutputPath": output_s3_uri, "Accept": "text/csv",
                                "AssembleWith": "Line"},
            "TransformResources": {"InstanceType": self.instance_type,
                                   "InstanceCount": int(self.instance_count)},
        }
        if self.max_concurrent_transforms:
            request["MaxConcurrentTransforms"] = int(self.max_concurrent_transforms)
        if self.output_kms_key_id:
            request["TransformOutput"]["KmsKeyId"] = self.output_kms_key_id
        if self.volume_kms_key_id:
            request["TransformResources"]["VolumeKmsKeyId"] = self.volume_kms_key_id
        if self.data_processing:
            request["DataProcessing"] = dict(self.data_processing)
        try:
            self._call("create_transform_job", **request)
        except ClientError as exc:
            # The same derived name means the same job: it is already running or done.
            message = error_message(exc).lower()
            if job_name or not ("already exist" in message or "must be unique" in message):
                raise
        return name

    def start_for_champion(self, registry: Any, endpoint_name: str, *, input_s3_uri: str,
                           output_s3_uri: str, job_name: str = "") -> str:
        """Score with the version serving `endpoint_name` (from the deployment history of a
        `SageMakerRegistry`)."""
        champion = registry.champion(endpoint_name)
        if champion is None:
            raise NoChampionError(f"no version serves '{endpoint_name}' yet")
        return self.start(registry.model_source(champion.version), input_s3_uri=input_s3_uri,
                          output_s3_uri=output_s3_uri, job_name=job_name)
