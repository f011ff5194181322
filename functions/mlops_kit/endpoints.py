"""What the deployment and rollback controllers need from an endpoint, in either home.

Adapters: `LocalEndpoints` (a state file the local server follows) and the SageMaker adapter
(CreateEndpointConfig + CreateEndpoint/UpdateEndpoint, UpdateEndpointWeightsAndCapacities).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence

from mlops_kit.core.rotation import VariantWeight


class EndpointBusyError(Exception):
    """The endpoint is Creating or Updating: try again later (SageMaker answers a
    ValidationException in that state)."""


class EndpointNotFoundError(Exception):
    pass


@dataclass(frozen=True)
class EndpointView:
    endpoint_name: str
    status: str
    """SageMaker's EndpointStatus: Creating, InService, Updating, RollingBack, Failed, ..."""
    variants: tuple[VariantWeight, ...]
    config_name: str = ""

    @property
    def in_service(self) -> bool:
        return self.status == "InService"


@dataclass(frozen=True)
class ModelSource:
    """Where a version's model comes from: a local directory or a model package ARN."""
    version: int
    model_uri: str
    model_package_arn: str = ""


class EndpointAdapter(Protocol):
    def describe(self, endpoint_name: str) -> EndpointView | None:
        """The endpoint as it is now, or None when it does not exist."""

    def deploy(self, endpoint_name: str, variants: Sequence[VariantWeight],
               models: Mapping[int, ModelSource]) -> str:
        """Serve exactly these variants: a new endpoint config, then CreateEndpoint (first
        deploy) or UpdateEndpoint. Returns the config name. EndpointBusyError while busy."""

    def set_weights(self, endpoint_name: str, weights: Mapping[str, float]) -> None:
        """Change traffic weights only (no new fleet). EndpointBusyError while busy."""
