"""Approving versions from the CLI promotes them locally: champion at 1, N-1 and N-2 warm."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mlops_kit.cli.app import app
from mlops_kit.registry.base import RegistrationRequest
from mlops_kit.registry.local import LocalRegistry


@pytest.fixture()
def cli(tmp_path, trained):
    home = tmp_path / "home"
    registry = LocalRegistry(home, "fraud-detector")
    for run in range(4):
        registry.register(RegistrationRequest(
            model_group="fraud-detector", model_artifact=str(trained[0]),
            training_run_id=f"run-{run}", metrics={"aupr": 0.5 + run / 100},
            latency={"p99_ms": 1.0}, gates=[{"gate": "min_aupr", "passed": True}],
            lineage={"data": {"uri": "file:///data.csv", "sha256": "0" * 64},
                     "code": {"version": "git:abc"}, "parameters": {"seed": 42},
                     "libraries": {}}, owner="alice", use_case="fraud"))
    runner = CliRunner()

    def invoke(*args):
        result = runner.invoke(app, list(args), env={"MLOPS_HOME": str(home),
                                                     "MLOPS_OWNER": "carol"})
        return result
    invoke.home = home
    return invoke


def status(cli):
    result = cli("status", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def weights(report):
    return [(v["version"], v["weight"]) for v in report["variants"]]


def test_approving_one_to_four_rotates_the_lineup(cli):
    assert status(cli)["status"] == "NotDeployed"
    expected = {1: [(1, 1.0)], 2: [(2, 1.0), (1, 0.0)], 3: [(3, 1.0), (2, 0.0), (1, 0.0)],
                4: [(4, 1.0), (3, 0.0), (2, 0.0)]}
    for version in range(1, 5):
        result = cli("registry", "approve", str(version), "--reason", f"ship {version}", "--json")
        assert result.exit_code == 0, result.output
        outcome = json.loads(result.stdout)
        assert outcome["changed"] and outcome["deployments"][0]["action"] == "deployed"
        report = status(cli)
        assert weights(report) == expected[version]
        assert report["champion"] == version and report["status"] == "InService"
    assert report["lineup"] == [4, 3, 2]


def test_reapproval_is_a_no_op_and_rejection_never_deploys(cli):
    assert cli("registry", "approve", "1", "--reason", "ship").exit_code == 0
    again = cli("registry", "approve", "1", "--reason", "ship again", "--json")
    assert json.loads(again.stdout) == {"version": 1, "status": "Approved", "changed": False,
                                        "deployments": []}
    rejected = cli("registry", "reject", "2", "--reason", "label leak", "--json")
    assert json.loads(rejected.stdout)["deployments"][0]["action"] == "ignored"
    assert weights(status(cli)) == [(1, 1.0)]
    shown = json.loads(cli("registry", "show", "2", "--json").stdout)
    assert [(t["to_status"], t["actor"], t["reason"]) for t in shown["transitions"]][-1] == \
        ("Rejected", "carol", "label leak")


def test_lineage_walks_to_deployments(cli):
    cli("registry", "approve", "1", "--reason", "ship")
    cli("registry", "approve", "2", "--reason", "better")
    walk = json.loads(cli("registry", "lineage", "1", "--json").stdout)
    assert walk["data"]["sha256"] == "0" * 64 and walk["code"]["version"] == "git:abc"
    assert walk["run"]["training_run_id"] == "run-0"
    assert [(d["role"], d["weight"]) for d in walk["deployments"]] == \
        [("champion", 1.0), ("warm fallback", 0.0)]
    assert cli("registry", "lineage", "9").exit_code == 2


def test_prune_never_touches_the_lineup(cli):
    for v in (1, 2):
        cli("registry", "approve", str(v), "--reason", "ship")
    dry = json.loads(cli("registry", "prune", "--dry-run", "--keep", "0", "--json").stdout)
    assert [a["version"] for a in dry["archived"]] == [3, 4]
    assert len(json.loads(cli("registry", "list", "--json").stdout)["versions"]) == 4
    done = json.loads(cli("registry", "prune", "--keep", "0", "--json").stdout)
    assert [a["version"] for a in done["archived"]] == [3, 4]
    listed = json.loads(cli("registry", "list", "--json").stdout)["versions"]
    assert [v["version"] for v in listed] == [1, 2]
    every = json.loads(cli("registry", "list", "--all", "--json").stdout)["versions"]
    assert len(every) == 4
    assert json.loads(cli("registry", "prune", "--keep", "0", "--json").stdout)["archived"] == []


def test_unknown_version_and_missing_reason(cli):
    assert cli("registry", "approve", "42", "--reason", "x").exit_code == 2
    assert cli("registry", "approve", "1").exit_code == 64  # no --reason: a usage error
    assert cli("registry", "approve", "1", "--reason", " ").exit_code == 2
