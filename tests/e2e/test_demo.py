"""`mlops demo` end to end: the lifecycle with a real local endpoint process, drift, the alarm
and the automatic rollback, in the default test run (about a minute on 2 cores)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from mlops_kit.cli.app import app


def test_demo_rolls_back_to_the_warm_fallback_with_zero_failed_requests(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--rows", "25000", "--period", "1.5", "--json"],
                                env={"MLOPS_HOME": str(tmp_path)})
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["succeeded"] and report["failed_requests"] == 0
    assert report["verified_on"] == {"v1": 200}
    assert report["requests"] > 500
    events = [e["what"] for e in report["timeline"]]
    order = ["pipeline v1", "approve v1", "pipeline v2", "approve v2", "drift starts", "alarm",
             "automatic rollback", "verified"]
    assert [e for e in events if e in order] == sorted(
        [e for e in events if e in order], key=order.index)
    assert 0 < report["detection_seconds"] < 30
    assert report["alarm_to_traffic_seconds"] < 2.0
    # Stamped where they happen: the alarm's transition, then the weights written, then the
    # first request answered by v1 (two clocks mapped onto one axis: 50 ms of slack).
    assert 0 < report["alarm_to_flip_seconds"] <= report["alarm_to_traffic_seconds"] + 0.05
    times = {e["what"]: e["at_seconds"] for e in report["timeline"]}
    assert times["drift starts"] < times["alarm"] < times["automatic rollback"] < times["verified"]
    picture = tmp_path / "demo" / "lifecycle.png"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The rollback is in the registry with its evidence, and v2 is blocked from re-promotion.
    from mlops_kit.registry.local import LocalRegistry

    registry = LocalRegistry(tmp_path / "demo", "fraud-detector")
    rollback = [d for d in registry.deployments() if d.kind == "rollback"]
    assert len(rollback) == 1 and rollback[0].previous_version == 2 and rollback[0].version == 1
    assert rollback[0].evidence["alarm"].endswith("-drift")
    assert 2 in registry.blocked_versions()
