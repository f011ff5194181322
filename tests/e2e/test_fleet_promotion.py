"""A version trained once, promoted dev → staging → prod through the local fleet's environments
(issue [H]), with the repository's own declarations (models/*.toml, cdk.json's promotionOrder
and promotion policies): order enforced, each environment deploying with its own warm
fallbacks, and a rollback in prod that leaves staging as it was."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from typer.testing import CliRunner

from builders import ROOT, registration
from mlops_kit.cli.app import app
from mlops_kit.config import LocalSettings
from mlops_kit.deploy.promotion import promote
from mlops_kit.endpoint_state import load_state
from mlops_kit.fleet.loader import load_fleet
from mlops_kit.homes.local_fleet import LocalFleetHome
from mlops_kit.local.control_plane import local_registry
from mlops_kit.local.environments import environment_home
from mlops_kit.registry.base import ApprovalStatus

MODEL = "fraud-detector"
FLEET = load_fleet(ROOT)
PROD_SOAK = next(env.soak_minutes for env in FLEET.environments if env.name == "prod")


@pytest.fixture()
def home(tmp_path, trained):
    home = tmp_path / "home"
    registry = local_registry(LocalSettings(home, MODEL, "fraud", "alice"))
    for run in range(3):
        registry.register(registration(run, artifact=str(trained[0])))
    return home


@pytest.fixture()
def cli(home):
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), env={"MLOPS_HOME": str(home), "MLOPS_OWNER": "carol",
                                                    "MLOPS_FLEET": str(ROOT)})
    return invoke


def served(home, environment: str) -> dict[int, float]:
    state = load_state(environment_home(home, environment), f"{MODEL}-{environment}")
    return {} if state is None else {v.version: v.weight for v in state.variants}


def promote_at(home, version: int, environment: str, now: datetime):
    """The promotion service at a given time (prod's soak is measured on the clock)."""
    fleet_home = LocalFleetHome(LocalSettings(home, MODEL, "fraud", "carol"))
    return promote(FLEET, fleet_home, MODEL, version, environment, actor="carol",
                   reason=f"v{version} to {environment}", now=now)


def test_promotion_follows_the_declared_order_once_per_environment(cli, home):
    assert PROD_SOAK > 0  # cdk.json asks prod for a soak in staging: the refusal below is it
    refused = cli("promote", MODEL, "1", "--to", "staging", "--reason", "skip dev")
    assert refused.exit_code == 3, refused.output
    assert "before staging" in refused.output
    assert served(home, "staging") == {}

    first = cli("promote", MODEL, "1", "--to", "dev", "--reason", "passed review", "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["deployment"]["action"] == "deployed"
    assert served(home, "dev") == {1: 1.0}
    registry = local_registry(LocalSettings(home, MODEL, "fraud", "carol"))
    version = registry.get(1)
    assert version.status == ApprovalStatus.APPROVED  # the first environment approves it
    assert version.status_reason == "promoted to dev: passed review"

    again = cli("promote", MODEL, "1", "--to", "dev", "--reason", "again")
    assert again.exit_code == 4, again.output
    staging = cli("promote", MODEL, "1", "--to", "staging", "--reason", "dev is green")
    assert staging.exit_code == 0, staging.output
    assert served(home, "staging") == {1: 1.0}

    soak = cli("promote", MODEL, "1", "--to", "prod", "--reason", "ship it")
    assert soak.exit_code == 3, soak.output
    assert f"of the {PROD_SOAK} min prod requires" in soak.output
    assert served(home, "prod") == {}

    assert cli("promote", MODEL, "1", "--to", "qa", "--reason", "x").exit_code == 2
    assert cli("promote", MODEL, "9", "--to", "dev", "--reason", "x").exit_code == 2
    assert cli("promote", "no-such-model", "1", "--to", "dev", "--reason", "x").exit_code == 2
    # Who promoted what where, and why: the audit, in the registry of record.
    assert [(p.version, p.environment, p.actor, p.reason) for p in registry.promotions()] == [
        (1, "dev", "carol", "passed review"), (1, "staging", "carol", "dev is green")]


def test_a_rollback_in_prod_leaves_staging_untouched(cli, home):
    soaked = timedelta(minutes=PROD_SOAK + 1)
    for version in (1, 2):
        for environment in ("dev", "staging"):
            assert promote_at(home, version, environment, datetime.now(timezone.utc)).promoted
        early = promote_at(home, version, "prod", datetime.now(timezone.utc))
        assert not early.decision.allowed, early.decision.reason
        # The ledger stamps the staging deployment with the wall clock: prod's soak is judged
        # as if its minutes had passed.
        assert promote_at(home, version, "prod", datetime.now(timezone.utc) + soaked).promoted
    for environment in ("dev", "staging", "prod"):
        assert served(home, environment) == {2: 1.0, 1: 0.0}  # each with its own warm N-1
    staging_file = environment_home(home, "staging") / "endpoints" / f"{MODEL}-staging.json"
    staging_before = staging_file.read_bytes()

    rolled = cli("rollback", "--model", MODEL, "--env", "prod", "--reason", "fraud spike",
                 "--json")
    assert rolled.exit_code == 0, rolled.output
    assert json.loads(rolled.stdout)["to_version"] == 1
    assert served(home, "prod") == {1: 1.0, 2: 0.0}
    assert staging_file.read_bytes() == staging_before
    registry = local_registry(LocalSettings(home, MODEL, "fraud", "carol"))
    assert [d.kind for d in registry.deployments(f"{MODEL}-staging")] == ["promote", "promote"]
    assert registry.blocked_versions(f"{MODEL}-prod") == {2}
    assert registry.blocked_versions(f"{MODEL}-staging") == set()

    fleet = cli("status", "--all", "--json")
    assert fleet.exit_code == 0, fleet.output
    rows = {(r["model"], r["environment"]): r for r in json.loads(fleet.stdout)["fleet"]}
    assert set(rows) == {(m.name, e) for m in FLEET.models.values() for e in m.deploy_to}
    assert (rows[(MODEL, "prod")]["champion"], rows[(MODEL, "staging")]["champion"]) == (1, 2)
    assert rows[(MODEL, "prod")]["last_rollback"]["reason"] == "fraud spike"
    assert rows[(MODEL, "staging")]["last_rollback"] is None
    assert rows[(MODEL, "staging")]["warm"] == [1]
    table = cli("status", "--all")
    assert table.exit_code == 0 and "fraud-detector-eu" in table.output


def test_a_promotion_and_its_event_are_one_fact(cli, home):
    """Recorded but not yet delivered (the process died after the commit): the next command
    delivers it, once."""
    registry = local_registry(LocalSettings(home, MODEL, "fraud", "carol"))
    promotion, created = registry.record_promotion(1, "dev", actor="carol", reason="ok",
                                                   approve=True)
    assert created
    pending = registry.pending_events()
    assert len(pending) == 1
    assert pending[0].event["detail"]["ModelLifeCycle"] == {
        "Stage": "dev", "StageStatus": "Approved", "StageDescription": "ok"}
    assert served(home, "dev") == {}
    for _ in range(2):
        assert cli("status", "--model", MODEL, "--env", "dev").exit_code == 0
    assert served(home, "dev") == {1: 1.0}
    assert len(registry.deployments(f"{MODEL}-dev")) == 1
    assert registry.pending_events() == []
    assert registry.record_promotion(1, "dev", actor="dave", reason="again") == (promotion, False)


def test_model_and_environment_options_name_what_is_wrong(cli):
    unknown_env = cli("status", "--model", MODEL, "--env", "qa")
    assert unknown_env.exit_code == 2
    assert "does not deploy to 'qa'" in unknown_env.output
    ambiguous = cli("status", "--env", "dev")
    assert ambiguous.exit_code == 2
    assert "name one with --model" in ambiguous.output


def test_serving_commands_act_on_the_named_environment(cli, home, tmp_path):
    from mlops_kit.data.synthetic import generate

    assert cli("promote", MODEL, "1", "--to", "dev", "--reason", "ok").exit_code == 0
    rows = tmp_path / "rows.csv"
    generate(200, seed=3).to_csv(rows, index=False)
    scored = cli("batch-score", "--input", str(rows), "--output", str(tmp_path / "out.csv"),
                 "--model", MODEL, "--env", "dev", "--json")
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["variants"] == {"v1": 1}
    # Staging was never promoted to: nothing serves there.
    assert cli("batch-score", "--input", str(rows), "--output", str(tmp_path / "s.csv"),
               "--model", MODEL, "--env", "staging").exit_code == 2


def test_monitoring_a_champion_without_a_baseline_is_a_clear_error(cli, home):
    """A version registered without the pipeline's drift baseline (as these are) can serve,
    but the monitor has nothing to compare its traffic against: bad input, exit 2, naming the
    version and what it lacks — not a traceback."""
    assert cli("promote", MODEL, "1", "--to", "dev", "--reason", "r").exit_code == 0
    result = cli("monitor", "--once", "--no-probe", "--model", MODEL, "--env", "dev")
    assert result.exit_code == 2, result.output
    assert f"v1 of {MODEL} records no drift baseline" in result.output
    assert "Traceback" not in result.output
