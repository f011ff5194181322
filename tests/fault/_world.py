"""A local home with four registered versions whose lineage carries a drift baseline, so the
local monitor, probes, control plane and registry all run for real (no pipeline, no XGBoost)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from mlops_kit.config import LocalSettings
from mlops_kit.core import drift
from mlops_kit.deploy.events import model_package_event
from mlops_kit.local.control_plane import publish
from mlops_kit.registry.base import RegistrationRequest
from mlops_kit.registry.local import LocalRegistry

from builders import alarm_event  # noqa: F401  (the fault tests take it from here)

GROUP, ENDPOINT = "fraud-scorer", "fraud-scorer-prod"
FEATURES = ("amount", "channel")


def settings_for(home: Path) -> LocalSettings:
    return LocalSettings(home=home, model_group=GROUP, use_case="fraud", owner="alice",
                         endpoint_name=ENDPOINT)


def baseline_amounts(n: int = 5000) -> np.ndarray:
    return np.random.default_rng(0).lognormal(3, 1, n)


def write_baselines(folder: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    baseline = {"features": {"amount": drift.numeric_baseline(baseline_amounts(), 10),
                             "channel": drift.categorical_baseline(["pos"] * 70 + ["online"] * 30)},
                "schema": {"numeric": ["amount"], "categorical": ["channel"], "target": "y"}}
    evaluation = {"score_baseline": drift.numeric_baseline(rng.beta(1, 20, 5000), 10)}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "baseline.json").write_text(json.dumps(baseline))
    (folder / "evaluation.json").write_text(json.dumps(evaluation))
    return folder / "baseline.json", folder / "evaluation.json"


def request(model_dir: Path, baseline: Path, evaluation: Path) -> RegistrationRequest:
    return RegistrationRequest(
        model_group=GROUP, model_artifact=str(model_dir), training_run_id="run",
        metrics={"aupr": 0.6}, latency={"p99_ms": 1.0},
        gates=[{"gate": "min_aupr", "passed": True}],
        lineage={"data": {}, "code": {}, "parameters": {}, "libraries": {},
                 "drift_baseline": str(baseline), "evaluation": str(evaluation)},
        owner="alice", use_case="fraud")


def make_home(tmp_path: Path, versions: int = 4) -> tuple[LocalSettings, LocalRegistry]:
    home = tmp_path / "home"
    baseline, evaluation = write_baselines(tmp_path / "baselines")
    registry = LocalRegistry(home, GROUP)
    for i in range(versions):
        model = tmp_path / f"model{i + 1}"
        model.mkdir()
        (model / "xgboost-model").write_text(f"model {i + 1}")
        registry.register(request(model, baseline, evaluation))
    return settings_for(home), registry


def approve_and_deploy(settings: LocalSettings, registry: LocalRegistry, version: int):
    registry.approve(version, actor="bob", reason="ship")
    return publish(settings, model_package_event(GROUP, version, "Approved",
                                                 changed_at=datetime.now(timezone.utc)))


def write_probes(settings: LocalSettings, verdicts: dict[str, bool]) -> None:
    path = settings.home / "probes" / f"{ENDPOINT}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"at": datetime.now(timezone.utc).isoformat(), "variants": {
        name: {"ok": ok} for name, ok in verdicts.items()}}))


def weights(settings: LocalSettings) -> dict[int, float]:
    from mlops_kit.deploy.local_endpoint import LocalEndpoints

    return {v.version: v.weight for v in LocalEndpoints(settings.home).describe(ENDPOINT).variants}
