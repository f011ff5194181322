"""The SageMaker real-time endpoint adapter (`EndpointAdapter`).

deploy: CreateModel per version from its model package (once; names derived from the package
ARN), CreateEndpointConfig under a name derived from its content (a retried deploy reuses it),
then CreateEndpoint on the first deploy or UpdateEndpoint (RetainAllVariantProperties=False:
the new config's weights and instance counts win). A deploy of the config the endpoint already
runs only restores its weights (after a rollback moved them), or does nothing.
set_weights: UpdateEndpointWeightsAndCapacities with DesiredWeight only, which shifts traffic
without a new fleet.

The adapter never waits for InService: controllers decide whether to wait, poll or come back.
While the endpoint is Creating/Updating it raises `EndpointBusyError` (SageMaker answers
`ValidationException: Cannot update in-progress endpoint "<arn>"`). Throttling is retried with
bounded exponential backoff and an injectable sleep.

IAM: sagemaker:DescribeEndpoint, sagemaker:DescribeEndpointConfig, sagemaker:CreateModel,
sagemaker:CreateEndpointConfig, sagemaker:CreateEndpoint, sagemaker:UpdateEndpoint,
sagemaker:UpdateEndpointWeightsAndCapacities, and iam:PassRole on the execution role
(condition iam:PassedToService = sagemaker.amazonaws.com).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from botocore.exceptions import ClientError

from mlops_kit.aws.clients import Backoff, LazyClient, error_code, error_message
from mlops_kit.aws.models import ensure_model, resource_name
from mlops_kit.core.rotation import (BUSY_STATUSES, VariantWeight, check_weights, same_serving,
                                     validate_lineup, variant_set, version_of_variant)

from mlops_kit.endpoints import EndpointBusyError, EndpointNotFoundError, EndpointView, ModelSource

IAM_ACTIONS = ("sagemaker:DescribeEndpoint", "sagemaker:DescribeEndpointConfig",
               "sagemaker:CreateModel", "sagemaker:CreateEndpointConfig",
               "sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint",
               "sagemaker:UpdateEndpointWeightsAndCapacities", "iam:PassRole")
"""What SageMakerEndpoints calls; iam:PassRole on the execution role only, with the condition
iam:PassedToService = sagemaker.amazonaws.com."""
_BUSY_PHRASES = ("in-progress endpoint", "is being updated", "is being created",
                 "status updating", "status creating", "in updating state",
                 "in creating state")

_ENDPOINT_MISSING = re.compile(r"could not find endpoint\s*[\"']", re.IGNORECASE)
"""SageMaker: `Could not find endpoint "<arn>".` (moto quotes with ')."""


@dataclass(frozen=True)
class DataCapture:
    """DataCaptureConfig of the endpoint config (request and response, CSV and JSON)."""
    destination_s3_uri: str
    sampling_percentage: int = 100
    kms_key_id: str = ""
    enabled: bool = True
    csv_content_types: tuple[str, ...] = ("text/csv",)
    json_content_types: tuple[str, ...] = ("application/json",)

    def to_request(self) -> dict[str, Any]:
        if not self.destination_s3_uri.startswith(("s3://", "https://")):
            raise ValueError("data capture needs an s3:// destination")
        if not 0 <= self.sampling_percentage <= 100:
            raise ValueError("data capture sampling percentage must be between 0 and 100")
        config: dict[str, Any] = {
            "EnableCapture": self.enabled,
            "InitialSamplingPercentage": int(self.sampling_percentage),
            "DestinationS3Uri": self.destination_s3_uri,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        }
        header: dict[str, list[str]] = {}
        if self.csv_content_types:
            header["CsvContentTypes"] = list(self.csv_content_types)
        if self.json_content_types:
            header["JsonContentTypes"] = list(self.json_content_types)
        if header:
            config["CaptureContentTypeHeader"] = header
        if self.kms_key_id:
            config["KmsKeyId"] = self.kms_key_id
        return config


def canary_deployment_config(*, canary_percent: int = 10, wait_seconds: int = 300,
                             alarm_names: Iterable[str] = (),
                             termination_wait_seconds: int = 0,
                             max_execution_seconds: int | None = None) -> dict[str, Any]:
    """A blue/green DeploymentConfig with canary traffic shifting and auto-rollback alarms
    (SageMaker deployment guardrails). The canary is at most 50% of the new fleet."""
    if not 1 <= canary_percent <= 50:
        raise ValueError("the canary must be between 1 and 50 percent of the new fleet")
    policy: dict[str, Any] = {
        "TrafficRoutingConfiguration": {
            "Type": "CANARY", "WaitIntervalInSeconds": int(wait_seconds),
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": int(canary_percent)}},
        "TerminationWaitInSeconds": int(termination_wait_seconds),
    }
    if max_execution_seconds is not None:
        policy["MaximumExecutionTimeoutInSeconds"] = int(max_execution_seconds)
    config: dict[str, Any] = {"BlueGreenUpdatePolicy": policy}
    alarms = [{"AlarmName": name} for name in alarm_names]
    if alarms:
        if len(alarms) > 10:
            raise ValueError("auto-rollback takes at most 10 alarms")
        config["AutoRollbackConfiguration"] = {"Alarms": alarms}
    return config


class SageMakerEndpoints:
    """`EndpointAdapter` over SageMaker real-time endpoints.

    Guardrails (`deployment_config`, e.g. `canary_deployment_config(...)`) are optional and
    only sent when the new config keeps the endpoint's variant names: SageMaker's blue/green
    guardrails require the same variant names before and after, which a rotation that adds
    a version and drops the oldest does not keep.
    """

    def __init__(self, client: Any = None, *, execution_role_arn: str = "",
                 instance_type: str = "ml.m5.large", data_capture: DataCapture | None = None,
                 deployment_config: Mapping[str, Any] | None = None, image_uri: str = "",
                 volume_kms_key_id: str = "", max_attempts: int = 5, base_delay: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep):
        # Only deploy() creates models and needs the role (ensure_model says so when it is
        # missing); describing and re-weighting, what on-call does, work without it.
        self.execution_role_arn = execution_role_arn
        self.instance_type = instance_type
        self.data_capture = data_capture
        self.deployment_config = dict(deployment_config) if deployment_config else None
        self.image_uri = image_uri
        self.volume_kms_key_id = volume_kms_key_id
        self._client = LazyClient("sagemaker", client)
        self._backoff = Backoff(max_attempts=max_attempts, base_delay=base_delay, sleep=sleep)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any
                 ) -> "SageMakerEndpoints":
        """SAGEMAKER_EXECUTION_ROLE_ARN (required); ENDPOINT_INSTANCE_TYPE, DATA_CAPTURE_S3_URI,
        DATA_CAPTURE_SAMPLING_PERCENT, DATA_CAPTURE_KMS_KEY_ID (optional)."""
        env = os.environ if environ is None else environ
        role = env.get("SAGEMAKER_EXECUTION_ROLE_ARN", "")
        if not role:
            raise ValueError("missing environment variable: SAGEMAKER_EXECUTION_ROLE_ARN")
        capture = None
        if env.get("DATA_CAPTURE_S3_URI"):
            capture = DataCapture(env["DATA_CAPTURE_S3_URI"],
                                  int(env.get("DATA_CAPTURE_SAMPLING_PERCENT") or 100),
                                  env.get("DATA_CAPTURE_KMS_KEY_ID", ""))
        kwargs.setdefault("instance_type", env.get("ENDPOINT_INSTANCE_TYPE") or "ml.m5.large")
        return cls(execution_role_arn=role, data_capture=capture, **kwargs)

    @property
    def client(self) -> Any:
        return self._client()

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return self._backoff.call(getattr(self.client, operation), **kwargs)
        except ClientError as exc:
            if _busy(exc):
                raise EndpointBusyError(
                    f"{kwargs.get('EndpointName', 'endpoint')} is busy (Creating or Updating): "
                    f"{error_message(exc)}") from exc
            if _endpoint_missing(exc):
                raise EndpointNotFoundError(error_message(exc)) from exc
            raise

    # -- describe ------------------------------------------------------------------------

    def describe(self, endpoint_name: str) -> EndpointView | None:
        try:
            described = self._call("describe_endpoint", EndpointName=endpoint_name)
        except EndpointNotFoundError:
            return None
        summaries = described.get("ProductionVariants") or []
        config_name = described.get("EndpointConfigName", "")
        counts: dict[str, int] | None = None
        variants = []
        for summary in summaries:
            name = summary["VariantName"]
            try:
                version = version_of_variant(name)
            except ValueError as exc:
                raise ValueError(f"endpoint '{endpoint_name}' serves variant '{name}', which is "
                                 f"not named after a model version: the kit manages only "
                                 f"endpoints it deployed") from exc
            count = summary.get("CurrentInstanceCount") or summary.get("DesiredInstanceCount")
            if count is None:
                # moto drops the counts after a weight-only update; a Creating endpoint has
                # none yet. The endpoint config still says what was asked for.
                if counts is None:
                    counts = self._config_counts(config_name)
                count = counts.get(name, 1)
            # Weight-0 variants may come without CurrentWeight (moto): read as 0.
            weight = float(summary.get("CurrentWeight", 0.0) or 0.0)
            variants.append(VariantWeight(name, version, weight, int(count)))
        return EndpointView(endpoint_name=endpoint_name, status=described["EndpointStatus"],
                            variants=tuple(variants), config_name=config_name)

    def _config_counts(self, config_name: str) -> dict[str, int]:
        if not config_name:
            return {}
        config = self._call("describe_endpoint_config", EndpointConfigName=config_name)
        return {v["VariantName"]: int(v.get("InitialInstanceCount") or 1)
                for v in config.get("ProductionVariants", [])}

    # -- deploy --------------------------------------------------------------------------

    def deploy(self, endpoint_name: str, variants: Sequence[VariantWeight],
               models: Mapping[int, ModelSource]) -> str:
        variants = tuple(variants)
        validate_lineup(variants, models.keys())
        current = self.describe(endpoint_name)
        if current is not None and current.status in BUSY_STATUSES:
            raise EndpointBusyError(f"{endpoint_name} is {current.status}: try again later")
        names = {v.version: ensure_model(self._call, models[v.version],
                                         execution_role_arn=self.execution_role_arn,
                                         image_uri=self.image_uri)
                 for v in variants}
        config = self.endpoint_config_request(variants, names)
        config_name = endpoint_config_name(endpoint_name, config)
        try:
            self._call("create_endpoint_config", EndpointConfigName=config_name, **config)
        except ClientError as exc:
            # Same name, same content: a retried deploy reuses the config it made before.
            if "already exist" not in error_message(exc).lower():
                raise
        if current is None:
            self._call("create_endpoint", EndpointName=endpoint_name,
                       EndpointConfigName=config_name)
        elif current.config_name == config_name:
            # Already on this config, but weights may have moved since (a rollback): bring
            # them back without a new fleet.
            if not same_serving(current.variants, variants):
                self._restore(endpoint_name, current, variants)
        else:
            request: dict[str, Any] = {"EndpointName": endpoint_name,
                                       "EndpointConfigName": config_name,
                                       "RetainAllVariantProperties": False}
            # Variant names follow versions (v<N>), so the same names are the same variant set.
            if self.deployment_config and variant_set(current.variants) == variant_set(variants):
                request["DeploymentConfig"] = self.deployment_config
            self._call("update_endpoint", **request)
        return config_name

    def _restore(self, endpoint_name: str, current: EndpointView,
                 variants: Sequence[VariantWeight]) -> None:
        counts = {v.variant_name: v.instance_count for v in current.variants}
        desired = []
        for v in variants:
            entry: dict[str, Any] = {"VariantName": v.variant_name,
                                     "DesiredWeight": float(v.weight)}
            if counts.get(v.variant_name) != v.instance_count:
                entry["DesiredInstanceCount"] = int(v.instance_count)
            desired.append(entry)
        self._call("update_endpoint_weights_and_capacities", EndpointName=endpoint_name,
                   DesiredWeightsAndCapacities=desired)

    def endpoint_config_request(self, variants: Sequence[VariantWeight],
                                model_names: Mapping[int, str]) -> dict[str, Any]:
        """The CreateEndpointConfig body (without its name, which is derived from it)."""
        request: dict[str, Any] = {"ProductionVariants": [
            {"VariantName": v.variant_name, "ModelName": model_names[v.version],
             "InitialInstanceCount": int(v.instance_count), "InstanceType": self.instance_type,
             "InitialVariantWeight": float(v.weight)}
            for v in variants]}
        if self.data_capture is not None:
            request["DataCaptureConfig"] = self.data_capture.to_request()
        if self.volume_kms_key_id:
            request["KmsKeyId"] = self.volume_kms_key_id
        return request

    # -- weights -------------------------------------------------------------------------

    def set_weights(self, endpoint_name: str, weights: Mapping[str, float]) -> None:
        check_weights(weights)
        current = self.describe(endpoint_name)
        if current is None:
            raise EndpointNotFoundError(f"endpoint '{endpoint_name}' does not exist")
        served = {v.variant_name: v.weight for v in current.variants}
        unknown = sorted(set(weights) - set(served))
        if unknown:
            raise ValueError(f"endpoint '{endpoint_name}' has no variant(s) {', '.join(unknown)}")
        if sum({**served, **weights}.values()) <= 0:
            raise ValueError("refusing a total weight of 0: the endpoint would serve nothing")
        if current.status in BUSY_STATUSES:
            raise EndpointBusyError(f"{endpoint_name} is {current.status}: try again later")
        self._call("update_endpoint_weights_and_capacities", EndpointName=endpoint_name,
                   DesiredWeightsAndCapacities=[
                       {"VariantName": name, "DesiredWeight": float(weight)}
                       for name, weight in weights.items()])


def endpoint_config_name(endpoint_name: str, config: Mapping[str, Any]) -> str:
    """`<endpoint>-<12 hex digits of endpoint and config content>`, at most 63 characters:
    the same lineup on the same endpoint always gets the same config name."""
    content = json.dumps({"endpoint": endpoint_name, **config}, sort_keys=True)
    return resource_name(endpoint_name, content, digest_chars=12)


def _busy(exc: ClientError) -> bool:
    message = error_message(exc).lower()
    return error_code(exc) == "ValidationException" and any(p in message for p in _BUSY_PHRASES)


def _endpoint_missing(exc: ClientError) -> bool:
    return error_code(exc) == "ValidationException" and bool(
        _ENDPOINT_MISSING.search(error_message(exc)))
