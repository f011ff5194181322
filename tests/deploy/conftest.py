import copy
import json
from pathlib import Path

import pytest
from builders import Sleeps  # noqa: F401  (the deploy tests import it from here)

from mlops_kit.deploy.controller import DeploymentController, DeploymentSettings
from mlops_kit.deploy.local_endpoint import LocalEndpoints
from mlops_kit.registry.base import RegistrationRequest
from mlops_kit.registry.local import LocalRegistry

EVENTS = Path(__file__).parent.parent / "fixtures" / "events"


def load_event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


@pytest.fixture()
def approved_event():
    return copy.deepcopy(load_event("sagemaker-model-package-state-change.approved.json"))


@pytest.fixture()
def writeback_event():
    return copy.deepcopy(load_event("sagemaker-model-package-state-change.metadata-writeback.json"))


def registration(model_dir: Path, group: str) -> RegistrationRequest:
    return RegistrationRequest(
        model_group=group, model_artifact=str(model_dir), training_run_id="run",
        metrics={"aupr": 0.6}, latency={"p99_ms": 1.0},
        gates=[{"gate": "min_aupr", "passed": True}],
        lineage={"data": {}, "code": {}, "parameters": {}, "libraries": {}},
        owner="alice", use_case="fraud")


@pytest.fixture()
def world(tmp_path):
    """A registry with 4 pending versions, a local endpoint, and a controller (no real sleep)."""
    home = tmp_path / "home"
    registry = LocalRegistry(home, "fraud-scorer")
    for i in range(4):
        model = tmp_path / f"model{i}"
        model.mkdir()
        (model / "xgboost-model").write_text(f"model {i}")
        registry.register(registration(model, "fraud-scorer"))
    endpoints = LocalEndpoints(home)
    sleeps = Sleeps()
    controller = DeploymentController(registry, endpoints,
                                      DeploymentSettings("fraud-scorer-prod", max_attempts=4),
                                      sleep=sleeps)
    return registry, endpoints, controller, sleeps
