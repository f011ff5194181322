"""The local endpoint adapter: the control plane writes the state file the server follows."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from mlops_kit.core.rotation import VariantWeight, validate_lineup
from mlops_kit.endpoints import EndpointBusyError, EndpointNotFoundError, EndpointView, ModelSource
from mlops_kit.clock import utc_now_iso
from mlops_kit.endpoint_state import EndpointState, ServedVariant, load_state, save_state


MODEL_FILE = "xgboost-model"
"""The file the local router loads from a model directory (`mlops_pipelines.steps.inference.
MODEL_FILE`, which the serving code imports; repeated here so that the controllers do not
import the pipeline steps and numpy: tests/deploy checks that the two agree)."""


def model_artifact_available(model_uri: str) -> bool:
    """Whether a version's model artifact is there to be loaded, without any API call.

    A local directory (the local home's `ModelVersion.model_uri`) must exist and hold the model
    file the router loads; a missing one means that every request not pinned to a variant
    gets 503 once the local endpoint restarts, and nothing rolls back. An s3:// URI (or any
    other scheme) is trusted: in AWS a warm variant already holds its model in its container,
    so a weight change needs no artifact, and checking the object would add an S3 call to the
    rollback path (which is capped in API calls). So in AWS a deleted model.tar.gz is not
    caught here; it surfaces when SageMaker next creates instances from it (a scale-out or a
    new endpoint config), as a failed update.
    """
    if "://" in model_uri:
        return True
    if not model_uri:
        return False
    return (Path(model_uri) / MODEL_FILE).is_file()


@dataclass(frozen=True)
class LocalEndpointView(EndpointView):
    """The local endpoint as described, plus the model directory each variant serves from
    (the state file names it): what the rollback controller checks before shifting."""
    model_uris: Mapping[str, str] = field(default_factory=dict)


class LocalEndpoints:
    def __init__(self, home: str | Path):
        self.home = Path(home)

    def describe(self, endpoint_name: str) -> EndpointView | None:
        state = load_state(self.home, endpoint_name)
        if state is None:
            return None
        return LocalEndpointView(endpoint_name, state.status,
                                 tuple(v.as_weight() for v in state.variants), state.config_name,
                                 {v.variant_name: v.model_uri for v in state.variants})

    def deploy(self, endpoint_name: str, variants: Sequence[VariantWeight],
               models: Mapping[int, ModelSource]) -> str:
        validate_lineup(variants, models.keys())
        current = load_state(self.home, endpoint_name)
        if current is not None and current.status != "InService":
            raise EndpointBusyError(f"endpoint {endpoint_name} is {current.status}")
        for v in variants:
            # A state naming a missing model would be recorded as deployed while the server
            # cannot load it (it keeps serving the old lineup): refuse before writing anything.
            uri = models[v.version].model_uri
            if "://" not in uri and not Path(uri).is_dir():
                raise FileNotFoundError(f"model artifact of v{v.version} is missing: {uri} "
                                        f"(register the model again to restore it)")
        served = tuple(ServedVariant(v.variant_name, v.version, models[v.version].model_uri,
                                     v.weight, v.instance_count) for v in variants)
        digest = hashlib.sha256(json.dumps([vars(s) for s in served],
                                           sort_keys=True).encode()).hexdigest()[:12]
        config_name = f"{endpoint_name}-{digest}"
        save_state(self.home, EndpointState(endpoint_name, "InService", served, config_name,
                                            utc_now_iso(), (current.generation + 1) if current else 1))
        return config_name

    def set_weights(self, endpoint_name: str, weights: Mapping[str, float]) -> None:
        current = load_state(self.home, endpoint_name)
        if current is None:
            raise EndpointNotFoundError(f"endpoint {endpoint_name} does not exist")
        if current.status != "InService":
            raise EndpointBusyError(f"endpoint {endpoint_name} is {current.status}")
        save_state(self.home, current.with_weights(dict(weights)))
