"""MLflow as the scientist's window: a pipeline run's MLflow run holds its evaluation, gates,
report and data digests; the registry's versions are MLflow model versions whose aliases
follow the endpoint through approvals and rollbacks; syncing twice changes nothing; a broken
store never fails the control plane."""

from __future__ import annotations

import json
import logging

import pytest
from typer.testing import CliRunner

from mlops_kit.cli.app import app
from mlops_kit.config import LocalSettings
from mlops_kit.local.control_plane import local_registry
from mlops_kit.tracking.registry_mirror import mirror_local_registry, sync_mlflow_registry


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("mlflow-window")


@pytest.fixture(scope="module")
def settings(home):
    return LocalSettings.from_env({"MLOPS_HOME": str(home), "MLOPS_OWNER": "test-scientist"})


@pytest.fixture(scope="module")
def cli(home):
    runner = CliRunner()

    def invoke(*args: str):
        result = runner.invoke(app, list(args), env={"MLOPS_HOME": str(home),
                                                     "MLOPS_OWNER": "test-scientist"})
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout) if "--json" in args else result
    return invoke


@pytest.fixture(scope="module")
def runs(cli, home):
    data = home / "input" / "sample.csv"
    cli("data", "generate", "--out", str(data), "--rows", "4000", "--seed", "11", "--json")
    return [cli("pipeline", "run", "--data", str(data), "--param", "num_round=60",
                "--param", "min_test_positives=10", "--json") for _ in range(2)]


@pytest.fixture(scope="module")
def client(settings, runs):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_uri)


def _aliases(client, settings) -> dict[str, int]:
    aliases = client.get_registered_model(settings.model_group).aliases
    by_number = {str(mv.version): int(mv.tags["mlops.registry_version"])
                 for mv in client.search_model_versions(f"name = '{settings.model_group}'")}
    return {alias: by_number[str(number)] for alias, number in aliases.items()}


def test_the_run_holds_evaluation_gates_artifacts_digests_and_registry_version(
        runs, client, cli, home):
    first = runs[0]
    version = cli("registry", "show", "1", "--json")
    run = client.get_run(version["training_run_id"])
    metrics, tags = run.data.metrics, run.data.tags
    evaluation = json.loads((home / "runs" / first["run_id"] / "evaluation" /
                             "evaluation.json").read_text())
    for name in ("aupr", "roc_auc", "brier", "ece", "score_psi"):
        assert metrics[f"test_{name}"] == pytest.approx(evaluation["metrics"][name])
    assert metrics["latency_p50_ms"] == pytest.approx(evaluation["latency"]["p50_ms"])
    assert metrics["latency_p99_ms"] == pytest.approx(evaluation["latency"]["p99_ms"])
    assert metrics["validation_aucpr"] > 0  # the training curves stay in the same run
    for gate in first["gates"]:
        assert metrics[f"gate.{gate['gate']}.value"] == pytest.approx(gate["value"])
        assert tags[f"mlops.gate.{gate['gate']}"] == "pass"
    assert tags["mlops.gates"] == "passed"
    assert tags["mlops.registry_version"] == "1"
    lineage = version["lineage"]
    assert tags["mlops.data_sha256"] == lineage["data"]["sha256"]
    assert tags["mlops.data_rows"] == str(lineage["data"]["rows"]) == "4000"
    assert tags["mlops.split.test.rows"] == str(lineage["data"]["splits"]["test"]["rows"])
    assert tags["mlops.code_version"] == lineage["code"]["version"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/report.html", "evaluation/evaluation.json",
            "evaluation/pr_curve.png"} <= artifacts
    # One MLflow run per pipeline run: the evaluation resumed the training run.
    experiment = client.get_experiment_by_name("fraud-detector")
    assert len(client.search_runs([experiment.experiment_id])) == 2
    # Nothing was approved between the two runs: no champion compared, no comparison figures.
    assert "comparison.aupr.upper" not in metrics


def test_registered_versions_are_model_versions_and_aliases_follow_the_endpoint(
        runs, client, cli, settings):
    versions = client.search_model_versions(f"name = '{settings.model_group}'")
    by_registry = {int(mv.tags["mlops.registry_version"]): mv for mv in versions}
    assert sorted(by_registry) == [1, 2]
    assert by_registry[1].tags["mlops.approval_status"] == "PendingManualApproval"
    assert by_registry[1].tags["mlops.gate.min_aupr"] == "pass"
    assert by_registry[1].run_id == cli("registry", "show", "1", "--json")["training_run_id"]
    assert by_registry[1].source.endswith("/model")
    assert _aliases(client, settings) == {}

    cli("registry", "approve", "1", "--reason", "first")
    mv = client.get_model_version(settings.model_group, by_registry[1].version)
    assert mv.tags["mlops.approval_status"] == "Approved"
    assert _aliases(client, settings) == {"champion": 1}

    cli("registry", "approve", "2", "--reason", "second")
    assert _aliases(client, settings) == {"champion": 2, "n-1": 1}

    cli("rollback", "--reason", "drill")
    # v2 was rolled back: no fallback any more, so n-1 no longer holds.
    assert _aliases(client, settings) == {"champion": 1}

    cli("rollforward", "--to", "2", "--reason", "drill over")
    assert _aliases(client, settings)["champion"] == 2


def test_syncing_twice_changes_nothing(runs, client, settings):
    registry = local_registry(settings)
    sync_mlflow_registry(registry, client, endpoint_name=settings.endpoint_name)
    assert sync_mlflow_registry(registry, client, endpoint_name=settings.endpoint_name) == []
    assert len(client.search_model_versions(f"name = '{settings.model_group}'")) == 2


def test_a_broken_store_warns_and_does_not_raise(tmp_path, caplog):
    broken = LocalSettings.from_env({"MLOPS_HOME": str(tmp_path)})
    broken.mlflow_db.write_bytes(b"not a database")
    with caplog.at_level(logging.WARNING):
        assert mirror_local_registry(broken, local_registry(broken)) is None
    assert "MLflow registry mirror not updated" in caplog.text
    nothing = LocalSettings.from_env({"MLOPS_HOME": str(tmp_path / "none")})
    assert mirror_local_registry(nothing, local_registry(nothing)) is None
    assert not nothing.mlflow_db.exists()


def test_a_cli_process_without_mlflow_loaded_mirrors_in_the_background(runs, client, cli,
                                                                        settings):
    """`mlops rollback` in its own process does not import MLflow (on-call does not wait for
    it): a detached child syncs, and the aliases follow within seconds."""
    import os
    import subprocess
    import sys
    import time

    # After the alias test: v2 champion, v1 warm (that test rolled forward to v2 last).
    assert _aliases(client, settings)["champion"] == 2
    env = dict(os.environ, MLOPS_HOME=str(settings.home), MLOPS_MODEL_GROUP=settings.model_group,
               MLOPS_ENDPOINT=settings.endpoint_name)
    done = subprocess.run([sys.executable, "-c",
                           "import sys\nfrom mlops_kit.cli.app import main\n"
                           "sys.argv = ['mlops', 'rollback', '--reason', 'background drill']\n"
                           "try:\n    main()\nfinally:\n"
                           "    assert 'mlflow' not in sys.modules, 'the CLI imported MLflow'\n"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 90
    while _aliases(client, settings) != {"champion": 1} and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _aliases(client, settings) == {"champion": 1}
