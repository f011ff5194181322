"""`mlops status` tells on-call the story (issue [J]): after an automatic rollback it names the
rollback, its alarm and reason, the alarm states, the cooldown and the next step."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from typer.testing import CliRunner

from mlops_kit.cli.app import app
from mlops_kit.local.control_plane import publish

from ._world import ENDPOINT, GROUP, alarm_event, approve_and_deploy, make_home, \
    write_probes


def run(home, *args):
    result = CliRunner().invoke(app, list(args), env={
        "MLOPS_HOME": str(home), "MLOPS_MODEL_GROUP": GROUP, "MLOPS_ENDPOINT": ENDPOINT})
    assert result.exit_code == 0, result.output
    return result.output


def test_status_after_an_automatic_rollback_names_it_its_alarm_the_cooldown_and_next_step(
        tmp_path):
    settings, registry = make_home(tmp_path, versions=2)
    for version in (1, 2):
        approve_and_deploy(settings, registry, version)
    write_probes(settings, {"v1": True, "v2": True})
    before = json.loads(run(settings.home, "status", "--json"))
    assert before["last_rollback"] is None and before["cooldown"] is None
    assert not any("rolled back" in step for step in before["next_steps"])

    now = datetime.now(timezone.utc)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}+0000"
    (outcome,) = publish(settings, alarm_event(state_time=stamp))
    assert outcome.action == "rolled_back"
    report = json.loads(run(settings.home, "status", "--json"))
    rollback = report["last_rollback"]
    assert rollback["automatic"] and rollback["alarm"] == f"{ENDPOINT}-feature-drift"
    assert (rollback["from_version"], rollback["to_version"]) == (2, 1)
    assert rollback["reason"].startswith(rollback["alarm"])
    assert report["cooldown"]["active"] is True
    assert any(a["name"] == rollback["alarm"] for a in report["alarms"])
    assert any("mlops rollforward --to 2" in step for step in report["next_steps"])
    assert any("paused until" in step for step in report["next_steps"])

    text = run(settings.home, "status")
    assert "last rollback" in text and rollback["alarm"] in text
    assert "cooldown" in text and "active until" in text
    assert "mlops rollforward --to 2" in text
    # v2 is still warm on the endpoint, but a rolled-back version is no fallback.
    assert report["lineup"] == [1] and "not a fallback" in text
