"""Guards on every path that moves traffic (issue K item 5): roll-forward refuses Rejected,
archived and artifact-less versions; rollbacks skip a fallback whose model is gone; an
archived version is never deployed; an alarm raised against an earlier champion rolls nothing
back; two overlapping approvals end with the newest version as champion."""

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mlops_kit.deploy.controller import DeploymentController, DeploymentSettings
from mlops_kit.endpoints import EndpointBusyError
from mlops_kit.deploy.events import model_package_event
from mlops_kit.deploy.local_endpoint import (MODEL_FILE, LocalEndpoints,
                                             model_artifact_available)
from mlops_kit.deploy.rollback import RollbackController, RollbackSettings

from .conftest import Sleeps
from .test_rollback_controller import ENDPOINT, alarm_event, promoted, weights  # noqa: F401


def drop_artifact(registry, version):
    shutil.rmtree(registry.get(version).model_uri)


# -- roll-forward ---------------------------------------------------------------------------

def test_rollforward_refuses_a_rejected_warm_version(promoted):
    registry, endpoints, rollback, _, _, _ = promoted
    assert rollback.rollback(ENDPOINT, actor="oncall", reason="bad", to_version=2).action \
        == "rolled_back"
    registry.reject(3, actor="bob", reason="leaks the label")
    outcome = rollback.rollforward(ENDPOINT, 3, actor="oncall", reason="try again")
    assert outcome.action == "none"
    assert "v3" in outcome.reason and "Rejected" in outcome.reason
    assert "leaks the label" in outcome.reason and "mlops registry approve 3" in outcome.reason
    assert weights(endpoints) == {3: 0.0, 2: 1.0, 1: 0.0}
    assert registry.deployments(ENDPOINT)[-1].kind == "rollback"


def test_rollforward_refuses_an_archived_version(promoted):
    registry, endpoints, rollback, _, _, _ = promoted
    registry.archive(1, actor="retention", reason="retention: test")
    archived_at = registry.get(1).archived_at
    outcome = rollback.rollforward(ENDPOINT, 1, actor="oncall", reason="drill")
    assert outcome.action == "none"
    assert f"archived by retention at {archived_at}" in outcome.reason
    assert "mlops registry approve 1 --unarchive" in outcome.reason
    assert weights(endpoints) == {3: 1.0, 2: 0.0, 1: 0.0}


def test_rollforward_refuses_a_version_whose_artifact_is_gone(promoted):
    registry, endpoints, rollback, _, _, _ = promoted
    rollback.rollback(ENDPOINT, actor="oncall", reason="bad", to_version=1)
    uri = registry.get(2).model_uri
    drop_artifact(registry, 2)
    outcome = rollback.rollforward(ENDPOINT, 2, actor="oncall", reason="serve v2")
    assert outcome.action == "none"
    assert "model artifact of v2 is missing" in outcome.reason and uri in outcome.reason
    assert weights(endpoints) == {3: 0.0, 2: 0.0, 1: 1.0}


def test_rollforward_cli_exits_4_naming_the_rejected_version(promoted, monkeypatch):
    from typer.testing import CliRunner

    from mlops_kit.cli.app import app

    registry, endpoints, rollback, _, _, _ = promoted
    rollback.rollback(ENDPOINT, actor="oncall", reason="bad", to_version=2)
    registry.reject(3, actor="bob", reason="leaks the label")
    monkeypatch.setenv("MLOPS_HOME", str(registry.home))
    monkeypatch.setenv("MLOPS_MODEL_GROUP", "fraud-scorer")
    monkeypatch.setenv("MLOPS_ENDPOINT", ENDPOINT)
    result = CliRunner().invoke(app, ["rollforward", "--to", "3", "--reason", "try again",
                                      "--json"])
    assert result.exit_code == 4, result.output
    assert "Rejected" in result.output and weights(endpoints)[3] == 0.0


# -- rollbacks and missing artifacts --------------------------------------------------------

def test_an_alarm_skips_a_fallback_whose_artifact_is_gone(promoted):
    registry, endpoints, rollback, _, _, _ = promoted
    drop_artifact(registry, 2)
    outcome = rollback.handle_event(alarm_event())
    assert (outcome.action, outcome.from_version, outcome.to_version) == ("rolled_back", 3, 1)
    skipped = registry.deployments(ENDPOINT)[-1].evidence["skipped"]
    assert skipped and skipped[0].startswith("v2: model artifact missing")


def test_manual_rollback_skips_or_refuses_a_fallback_whose_artifact_is_gone(promoted):
    registry, endpoints, rollback, _, _, _ = promoted
    drop_artifact(registry, 2)
    named = rollback.rollback(ENDPOINT, actor="oncall", reason="bad", to_version=2)
    assert named.action == "none" and "v2 cannot take the traffic: model artifact missing" \
        in named.reason
    newest = rollback.rollback(ENDPOINT, actor="oncall", reason="bad")
    assert (newest.action, newest.to_version) == ("rolled_back", 1)


def test_the_model_file_the_guard_checks_is_the_one_the_router_loads(tmp_path):
    from mlops_pipelines.steps.inference import MODEL_FILE as loaded

    assert MODEL_FILE == loaded
    assert model_artifact_available("s3://bucket/models/v2/model.tar.gz")
    assert not model_artifact_available(str(tmp_path / "gone"))
    (tmp_path / "empty").mkdir()
    assert not model_artifact_available(str(tmp_path / "empty"))
    (tmp_path / "empty" / MODEL_FILE).write_text("m")
    assert model_artifact_available(str(tmp_path / "empty"))


def test_the_artifact_check_is_injectable(promoted):
    registry, endpoints, _, probes, _, _ = promoted
    asked = []

    def nothing_available(uri):
        asked.append(uri)
        return False

    rollback = RollbackController(registry, endpoints, health=probes,
                                  artifact_available=nothing_available, sleep=lambda s: None)
    outcome = rollback.handle_event(alarm_event())
    assert outcome.action == "no_healthy_fallback" and "model artifact missing" in outcome.reason
    assert set(asked) == {registry.get(v).model_uri for v in (1, 2, 3)}


# -- archived versions are not deployed ----------------------------------------------------

def test_an_archived_version_is_not_deployed(world):
    registry, endpoints, controller, _ = world
    registry.approve(1, actor="bob", reason="ship")
    controller.handle_event(model_package_event("fraud-scorer", 1, "Approved"))
    registry.archive(2, actor="retention", reason="retention: never approved")
    archived_at = registry.get(2).archived_at
    registry.approve(2, actor="bob", reason="ship it anyway")
    outcome = controller.handle_event(model_package_event("fraud-scorer", 2, "Approved"))
    assert outcome.action == "ignored"
    assert outcome.reason == (f"version 2 was archived by retention at {archived_at}: unarchive "
                              f"it first (`mlops registry approve 2 --unarchive --reason ...`)")
    assert {v.version for v in endpoints.describe(ENDPOINT).variants} == {1}
    assert [d.version for d in registry.deployments(ENDPOINT)] == [1]


# -- the champion an alarm was raised against ----------------------------------------------

def test_an_alarm_raised_before_a_promotion_does_not_roll_back_the_new_champion(world, promoted):
    registry, endpoints, rollback, probes, outbox, _ = promoted
    deploy = world[2]
    raised = alarm_event(at=datetime.now(timezone.utc))  # about v3, the champion now
    registry.approve(4, actor="bob", reason="ship")
    assert deploy.handle_event(model_package_event("fraud-scorer", 4, "Approved")).action \
        == "deployed"
    probes.results["v4"] = True
    outcome = rollback.handle_event(raised)  # released after the promotion (e.g. a retry)
    assert outcome.action == "none"
    assert "was about v3" in outcome.reason and "v4 champion since" in outcome.reason
    assert weights(endpoints) == {4: 1.0, 3: 0.0, 2: 0.0}
    assert registry.deployments(ENDPOINT)[-1].kind == "promote"
    assert outbox and "champion changed" in outbox[-1][0]
    # An alarm raised after the promotion is about v4: the normal rollback.
    after = rollback.handle_event(alarm_event("lambda"))
    assert (after.action, after.from_version, after.to_version) == ("rolled_back", 4, 3)
    assert registry.deployments(ENDPOINT)[-1].evidence["raised_against"] == 4


def test_an_alarm_raised_after_a_rollback_to_v2_is_about_v2(promoted):
    registry, endpoints, rollback, _, _, _ = promoted
    rollback.rollback(ENDPOINT, actor="oncall", reason="bad", to_version=2)
    rollback.settings = RollbackSettings(cooldown=timedelta(0))
    outcome = rollback.handle_event(alarm_event(at=datetime.now(timezone.utc)))
    assert (outcome.action, outcome.from_version, outcome.to_version) == ("rolled_back", 2, 1)


def test_an_alarm_older_than_every_record_rolls_nothing_back(promoted):
    registry, endpoints, rollback, _, _, _ = promoted
    old = alarm_event(at=datetime.now(timezone.utc) - timedelta(days=7))
    outcome = rollback.handle_event(old)
    assert outcome.action == "none" and "predates the first deployment record" in outcome.reason
    assert weights(endpoints) == {3: 1.0, 2: 0.0, 1: 0.0}


# -- overlapping approvals -----------------------------------------------------------------

class BusyWhileAnotherLands:
    """The endpoint as one deployment Lambda sees it while another one's approval lands: its
    first deploy finds the endpoint busy, and during that try the other approval deploys."""

    def __init__(self, inner: LocalEndpoints, meanwhile):
        self.inner, self.meanwhile, self.calls = inner, meanwhile, 0

    def describe(self, name):
        return self.inner.describe(name)

    def set_weights(self, name, new_weights):
        return self.inner.set_weights(name, new_weights)

    def deploy(self, name, variants, models):
        self.calls += 1
        if self.calls == 1:
            self.meanwhile()
            raise EndpointBusyError(f"endpoint {name} is Updating")
        return self.inner.deploy(name, variants, models)


@pytest.mark.parametrize("first, second", [(3, 4), (4, 3)],
                         ids=["v3-waits-while-v4-lands", "v4-waits-while-v3-lands"])
def test_overlapping_approvals_end_with_the_newest_version_as_champion(world, first, second):
    registry, endpoints, other, _ = world
    for version in (1, 2):
        registry.approve(version, actor="bob", reason="ship")
        other.handle_event(model_package_event("fraud-scorer", version, "Approved"))
    registry.approve(first, actor="bob", reason="ship")
    registry.approve(second, actor="bob", reason="ship")
    landed = []
    fake = BusyWhileAnotherLands(LocalEndpoints(registry.home), lambda: landed.append(
        other.handle_event(model_package_event("fraud-scorer", second, "Approved")).action))
    sleeps = Sleeps()
    waiting = DeploymentController(registry, fake, DeploymentSettings(ENDPOINT, max_attempts=4),
                                   sleep=sleeps)
    outcome = waiting.handle_event(model_package_event("fraud-scorer", first, "Approved"))
    assert landed == ["deployed"] and fake.calls == 2 and sleeps == [2.0]
    assert outcome.action == "deployed" and outcome.attempts == 2
    assert weights(endpoints) == {4: 1.0, 3: 0.0, 2: 0.0}
    assert registry.champion(ENDPOINT).version == 4
    last = registry.deployments(ENDPOINT)[-1]
    assert {v.version: v.weight for v in last.variants} == weights(endpoints)
    assert last.evidence["lineup"] == [4, 3, 2]
    if first == 3:
        assert "v4 is newer and keeps the traffic" in outcome.reason
        assert last.evidence["approved_version"] == 3 and last.version == 4
    # The next approval rotates on from that lineup: v5, then v4 and v3 warm.
    registry.register(_again(registry))
    registry.approve(5, actor="bob", reason="ship")
    assert other.handle_event(model_package_event("fraud-scorer", 5, "Approved")).action \
        == "deployed"
    assert weights(endpoints) == {5: 1.0, 4: 0.0, 3: 0.0}


def _again(registry):
    """A registration request for one more version, from v1's model directory."""
    from .conftest import registration

    model = Path(registry.get(1).model_uri)
    return registration(model, "fraud-scorer")


def test_an_older_approval_after_a_newer_one_joins_the_warm_lineup(world):
    registry, endpoints, controller, _ = world
    for version in (1, 2, 4):
        registry.approve(version, actor="bob", reason="ship")
        controller.handle_event(model_package_event("fraud-scorer", version, "Approved"))
    registry.approve(3, actor="bob", reason="late")
    outcome = controller.handle_event(model_package_event("fraud-scorer", 3, "Approved"))
    assert outcome.action == "deployed" and "rollforward --to 3" in outcome.reason
    assert weights(endpoints) == {4: 1.0, 3: 0.0, 2: 0.0}
