"""Loading the models a state names, once each: a cache of loaded model directories.

A model directory is identified by its path, version and model file's stat (`model_key`), so a
state change that keeps a variant's model reuses the loaded one, and a directory rewritten in
place is loaded again. One bad model directory does not keep the others from loading: `load`
returns what loaded and, apart, why each other variant did not.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from mlops_kit.serving.kernel import ModelKernel
from mlops_kit.endpoint_state import EndpointState

ModelLoader = Callable[[str], Any]
"""`inference.model_fn`: a model directory to a LoadedModel."""


@dataclass(frozen=True, eq=False)
class ModelHandle:
    """A loaded model directory; shared by every table that serves it."""
    key: tuple
    model_uri: str
    kernel: ModelKernel

    @property
    def model(self):
        return self.kernel.model


def model_key(model_uri: str, version: int) -> tuple:
    """Identifies a model directory's content cheaply: path, version and the model file's stat."""
    from mlops_pipelines.steps.inference import MODEL_FILE

    path = os.path.realpath(model_uri)
    try:
        st = os.stat(os.path.join(path, MODEL_FILE))
        return (path, version, st.st_mtime_ns, st.st_size)
    except OSError:
        return (path, version, None, None)


class ModelCache:
    """The loaded models, by `model_key`. Thread-safe; loads run outside the lock."""

    def __init__(self, loader: ModelLoader | None = None):
        self._loader = loader
        self._lock = threading.Lock()
        self._handles: dict[tuple, ModelHandle] = {}

    def load(self, state: EndpointState) -> tuple[dict[str, ModelHandle], dict[str, str]]:
        """Every variant of `state` loaded (or reused): (handles by variant name, the load error
        by name of each variant whose model did not load)."""
        handles: dict[str, ModelHandle] = {}
        unavailable: dict[str, str] = {}
        for variant in state.variants:
            try:
                handles[variant.variant_name] = self.handle(variant.model_uri, variant.version)
            except Exception as exc:  # one bad model dir must not keep the others from serving
                unavailable[variant.variant_name] = (
                    f"loading model version {variant.version} from {variant.model_uri} failed: "
                    f"{type(exc).__name__}: {exc}")
        return handles, unavailable

    def handle(self, model_uri: str, version: int) -> ModelHandle:
        key = model_key(model_uri, version)
        with self._lock:
            handle = self._handles.get(key)
        if handle is None:  # load outside the lock: requests keep flowing meanwhile
            loader = self._loader
            if loader is None:
                from mlops_pipelines.steps.inference import model_fn as loader
            handle = ModelHandle(key, model_uri, ModelKernel(loader(model_uri)))
            with self._lock:
                handle = self._handles.setdefault(key, handle)
        return handle

    def retain(self, keys: Iterable[tuple]) -> None:
        """Forget every model but those at `keys` (the ones the served table uses)."""
        keep = set(keys)
        with self._lock:
            for cached in list(self._handles):
                if cached not in keep:
                    del self._handles[cached]
