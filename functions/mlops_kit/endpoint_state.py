"""The local endpoint's desired state: one JSON file per endpoint, written atomically by the
control plane (deployment and rollback controllers), followed by every server worker.

A worker stats the file before each request (and compares its bytes while it is young, and
periodically: a same-size replacement can repeat the stat signature; see
`serving/state_follower.py`),
so a weight change takes effect on the next request, with no restart and nothing dropped.
Below both the writers (deploy) and the reader (serving): the file is the contract between them.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mlops_kit.clock import utc_now_iso
from mlops_kit.core.rotation import VariantWeight
from mlops_kit.ports import DamagedStateError


@dataclass(frozen=True)
class ServedVariant:
    variant_name: str
    version: int
    model_uri: str
    """Local model directory (xgboost-model + feature_spec.json)."""
    weight: float
    instance_count: int = 1

    def as_weight(self) -> VariantWeight:
        return VariantWeight(self.variant_name, self.version, self.weight, self.instance_count)


@dataclass(frozen=True)
class EndpointState:
    endpoint_name: str
    status: str
    variants: tuple[ServedVariant, ...]
    config_name: str
    updated_at: str
    generation: int = 0
    """Counts every change, so people and logs can tell two states apart. Readers that must not
    miss a change compare the file's bytes rather than this number: a hand-written or restored
    state need not bump it."""

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint_name": self.endpoint_name, "status": self.status,
                "config_name": self.config_name, "updated_at": self.updated_at,
                "generation": self.generation,
                "variants": [vars(v) for v in self.variants]}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "EndpointState":
        return cls(raw["endpoint_name"], raw["status"],
                   tuple(ServedVariant(**v) for v in raw["variants"]), raw["config_name"],
                   raw["updated_at"], int(raw.get("generation", 0)))

    def with_weights(self, weights: dict[str, float]) -> "EndpointState":
        unknown = set(weights) - {v.variant_name for v in self.variants}
        if unknown:
            raise ValueError(f"endpoint {self.endpoint_name} has no variant(s) "
                             f"{', '.join(sorted(unknown))}")
        variants = tuple(replace(v, weight=float(weights.get(v.variant_name, v.weight)))
                         for v in self.variants)
        if sum(v.weight for v in variants) <= 0:
            raise ValueError("total weight would be 0: the endpoint would serve nothing")
        return replace(self, variants=variants, updated_at=utc_now_iso(), generation=self.generation + 1)


def state_path(home: str | Path, endpoint_name: str) -> Path:
    return Path(home) / "endpoints" / f"{endpoint_name}.json"


def load_state(home: str | Path, endpoint_name: str) -> EndpointState | None:
    """The endpoint's state (None: not deployed). A file that cannot be read is
    DamagedStateError, never "not deployed": that would let a deployment start from nothing."""
    path = state_path(home, endpoint_name)
    try:
        return EndpointState.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DamagedStateError(
            f"the endpoint state {path} is damaged ({type(exc).__name__}: {exc}); nothing was "
            f"changed",
            recovery="the lineup it held is the endpoint's last deployment record (`mlops "
                     "registry lineage N`); move the file aside and approve the champion "
                     "again, or restore the file from a copy") from exc


def save_state(home: str | Path, state: EndpointState) -> Path:
    """Atomic replace: a reader sees the old state or the new one, never a torn file."""
    path = state_path(home, state.endpoint_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(state.to_dict(), handle, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
