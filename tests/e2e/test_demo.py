"""`mlops demo` end to end: the fleet's two models trained and promoted dev → staging → prod, then
fraud-detector's prod endpoint as a real local endpoint process, drift, the alarm and the
automatic rollback in prod only, in the default test run (about a minute on 2 cores)."""

from __future__ import annotations

import json
from dataclasses import replace

from typer.testing import CliRunner

from builders import ROOT
from mlops_kit.cli.app import app
from mlops_kit.config import LocalSettings
from mlops_kit.fleet.loader import load_fleet
from mlops_kit.local.control_plane import local_registry

FLEET = load_fleet(ROOT)
MODEL = "fraud-detector"
ENVIRONMENTS = ["dev", "staging", "prod"]


def registry_of(home, model: str):
    """The registry of record at the demo's home, as the model's group."""
    settings = LocalSettings.from_env({"MLOPS_HOME": str(home)})
    return local_registry(replace(settings, model_group=model))


def test_demo_rolls_back_to_the_warm_fallback_with_zero_failed_requests(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the fleet is read from the current directory, as `make run` does
    result = CliRunner().invoke(app, ["demo", "--rows", "25000", "--period", "1.5", "--json"],
                                env={"MLOPS_HOME": str(tmp_path), "MLOPS_FLEET": ""})
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["succeeded"] and report["failed_requests"] == 0
    assert report["verified_on"] == {"v1": 200}
    assert report["requests"] > 500
    events = [e["what"] for e in report["timeline"]]
    # Each model's v1 through every environment (per model, in order: checked below), then v2.
    order = ["pipeline v1", "promote v1 to prod", "pipeline v2", "promote v2 to dev",
             "refused v2 to prod", "promote v2 to staging", "promote v2 to prod", "drift starts",
             "alarm", "automatic rollback", "verified", "staging untouched"]
    assert [e for e in events if e in order] == sorted(
        [e for e in events if e in order], key=order.index)
    assert set(order) <= set(events)
    assert 0 < report["detection_seconds"] < 30
    assert report["alarm_to_traffic_seconds"] < 2.0
    # Stamped where they happen: the alarm's transition, then the weights written, then the
    # first request answered by v1 (two clocks mapped onto one axis: 50 ms of slack).
    assert 0 < report["alarm_to_flip_seconds"] <= report["alarm_to_traffic_seconds"] + 0.05
    times = {e["what"]: e["at_seconds"] for e in report["timeline"]}
    assert times["drift starts"] < times["alarm"] < times["automatic rollback"] < times["verified"]
    picture = tmp_path / "demo" / "lifecycle.png"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    home = tmp_path / "demo"
    assert_every_model_promoted_in_order(report, home)
    assert_the_rollback_is_prods_only(report, home)


def assert_every_model_promoted_in_order(report, home) -> None:
    """Both declared models trained and promoted through every environment, in order; the one
    promotion that skipped staging was refused, and said why."""
    assert len(FLEET.models) == 2
    promoted = [(p["model"], p["version"], p["environment"]) for p in report["promotions"]
                if p["promoted"]]
    assert {(m, v) for m, v, _ in promoted} == {(MODEL, 1), (MODEL, 2),
                                                ("fraud-detector-eu", 1)}
    for model, version in {(m, v) for m, v, _ in promoted}:
        assert [e for m, v, e in promoted if (m, v) == (model, version)] == ENVIRONMENTS
    assert all(p["action"] == "deployed" for p in report["promotions"] if p["promoted"])
    refused = [p for p in report["promotions"] if not p["promoted"]]
    assert [(p["model"], p["version"], p["environment"]) for p in refused] == [
        (MODEL, 2, "prod")]
    assert "before prod" in refused[0]["reason"]
    refusal = next(e for e in report["timeline"] if e["what"] == "refused v2 to prod")
    assert "promote fraud-detector v2 to staging before prod" in refusal["detail"]
    for model in FLEET.models:
        promotions = registry_of(home, model).promotions()
        versions = sorted({p.version for p in promotions})
        assert versions == ([1, 2] if model == MODEL else [1])
        for version in versions:
            assert [p.environment for p in promotions if p.version == version] == ENVIRONMENTS


def assert_the_rollback_is_prods_only(report, home) -> None:
    """The rollback is in the registry with its evidence, on the prod endpoint only: v2 is
    blocked from re-promotion there, and staging still serves it."""
    registry = registry_of(home, MODEL)
    rollback = [d for d in registry.deployments(f"{MODEL}-prod") if d.kind == "rollback"]
    assert len(rollback) == 1 and rollback[0].previous_version == 2 and rollback[0].version == 1
    assert rollback[0].evidence["alarm"].endswith("-drift")
    assert [d for d in registry.deployments() if d.kind == "rollback"] == rollback
    assert 2 in registry.blocked_versions()
    assert registry.blocked_versions(f"{MODEL}-prod") == {2}
    staging = registry.deployments(f"{MODEL}-staging")
    assert "rollback" not in {d.kind for d in staging}
    assert registry.champion(f"{MODEL}-staging").version == 2
    assert registry.blocked_versions(f"{MODEL}-staging") == set()
    rows = {(r["model"], r["environment"]): r for r in report["fleet"]}
    assert set(rows) == {(m.name, e) for m in FLEET.models.values() for e in m.deploy_to}
    assert (rows[(MODEL, "prod")]["champion"], rows[(MODEL, "staging")]["champion"]) == (1, 2)
    assert rows[(MODEL, "staging")]["last_rollback"] is None
    assert rows[(MODEL, "prod")]["last_rollback"] is not None
