"""The CLI as a user runs it: pipeline runs, gates, bad input, the registry listing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mlops_kit.cli.app import app

ROWS = 8000


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("mlops-home")


@pytest.fixture(scope="module")
def cli(home):
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), env={"MLOPS_HOME": str(home),
                                                   "MLOPS_OWNER": "test-scientist"})
    return invoke


@pytest.fixture(scope="module")
def data_file(cli, home):
    path = home / "input" / "sample.csv"
    result = cli("data", "generate", "--out", str(path), "--rows", str(ROWS), "--seed", "11",
                 "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == ROWS
    return path


@pytest.fixture(scope="module")
def two_runs(cli, data_file):
    # The small sample's test split holds ~18 positives: below the default min_test_positives.
    runs = [cli("pipeline", "run", "--data", str(data_file), "--param", "num_round=80",
                "--param", "min_test_positives=10", "--json")
            for _ in range(2)]
    for run in runs:
        assert run.exit_code == 0, run.output
    return [json.loads(r.stdout) for r in runs]


def registry(cli):
    result = cli("registry", "list", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["versions"]


def test_two_runs_register_versions_one_and_two_with_identical_metrics(two_runs, cli):
    first, second = two_runs
    assert (first["status"], first["version"]) == ("registered", 1)
    assert (second["status"], second["version"]) == ("registered", 2)
    assert first["metrics"] == second["metrics"]
    versions = registry(cli)
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[0]["metrics"] == versions[1]["metrics"]
    assert versions[0]["lineage"]["model_sha256"] == versions[1]["lineage"]["model_sha256"]


def test_registered_version_carries_the_record(two_runs, cli, data_file, home):
    version = registry(cli)[0]
    assert version["status"] == "PendingManualApproval"
    assert version["owner"] == "test-scientist" and version["use_case"]
    assert version["training_run_id"]  # the MLflow run
    lineage = version["lineage"]
    assert lineage["data"]["uri"] == data_file.absolute().as_uri()
    assert len(lineage["data"]["sha256"]) == 64
    assert lineage["code"]["version"]
    assert "mlops_pipelines/steps/train.py" in lineage["code"]["step_scripts"]
    assert lineage["parameters"]["num_round"] == 80
    assert lineage["libraries"]["xgboost-cpu"] == "3.0.5"
    assert lineage["container_image"]["sagemaker_framework"] == "xgboost:3.0-5"
    assert {g["gate"] for g in version["gates"]} >= {"min_aupr", "max_p99_latency_ms"}
    assert all(g["passed"] for g in version["gates"])
    # The MLflow run exists in the local tracking store with the run's parameters.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    run = client.get_run(version["training_run_id"])
    assert run.data.params["num_round"] == "80"
    assert run.data.tags["mlops.data_sha256"] == lineage["data"]["sha256"]
    assert "validation_aucpr" in run.data.metrics


def test_failed_gate_exits_3_names_the_gate_and_registers_nothing(two_runs, cli, data_file):
    result = cli("pipeline", "run", "--data", str(data_file), "--param", "num_round=80",
                 "--param", "min_test_positives=10", "--param", "min_aupr=0.999")
    assert result.exit_code == 3, result.output
    assert "min_aupr" in result.stdout and "FAIL" in result.stdout
    assert "not registered" in result.stdout
    assert [v["version"] for v in registry(cli)] == [1, 2]


def test_a_test_split_with_too_few_positives_is_refused_by_default(two_runs, cli, data_file):
    result = cli("pipeline", "run", "--data", str(data_file), "--param", "num_round=80")
    assert result.exit_code == 3, result.output
    assert "min_test_positives" in result.stdout and "not registered" in result.stdout
    assert [v["version"] for v in registry(cli)] == [1, 2]


def test_show_prints_the_audit_trail(two_runs, cli):
    result = cli("registry", "show", "1", "--json")
    assert result.exit_code == 0
    shown = json.loads(result.stdout)
    assert shown["version"] == 1 and shown["transitions"][0]["to_status"] == "PendingManualApproval"
    assert cli("registry", "show", "99").exit_code == 2


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, data_file):
    import pandas as pd

    root = tmp_path_factory.mktemp("bad")
    good = pd.read_csv(data_file)
    (root / "empty.csv").write_text("")
    good.drop(columns=["amount"]).to_csv(root / "missing_column.csv", index=False)
    wrong = good.astype({"ip_risk_score": object})
    wrong.loc[4, "ip_risk_score"] = "high"
    wrong.to_csv(root / "wrong_type.csv", index=False)
    labels = good.copy()
    labels.loc[2, "is_fraud"] = 5
    labels.to_csv(root / "non_binary.csv", index=False)
    one = good.copy()
    one["is_fraud"] = 1
    one.to_csv(root / "single_class.csv", index=False)
    good.head(100).to_csv(root / "too_few.csv", index=False)
    (root / "text.parquet").write_text("not parquet")
    return root


@pytest.mark.parametrize("name,message", [
    ("absent.csv", "not found"),
    ("empty.csv", "empty"),
    ("missing_column.csv", "missing column(s): amount"),
    ("wrong_type.csv", "does not match the schema"),
    ("non_binary.csv", "does not match the schema"),
    ("single_class.csv", "single class"),
    ("too_few.csv", "too few rows"),
    ("text.parquet", "cannot read"),
])
def test_bad_input_exits_2_with_the_cause_and_leaves_nothing(two_runs, cli, home, bad_files,
                                                               name, message):
    runs_before = sorted(p.name for p in (home / "runs").iterdir())
    result = cli("pipeline", "run", "--data", str(bad_files / name))
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert sorted(p.name for p in (home / "runs").iterdir()) == runs_before
    assert [v["version"] for v in registry(cli)] == [1, 2]


@pytest.mark.parametrize("args,message", [
    (("--param", "nope=1"), "unknown parameter"),
    (("--param", "max_depth=deep"), "expects int"),
    (("--param", "max_depth"), "NAME=VALUE"),
])
def test_bad_parameters_exit_2(cli, args, message):
    result = cli("pipeline", "run", *args)
    assert result.exit_code == 2 and message in result.stderr


def test_console_script_is_installed():
    done = subprocess.run([sys.executable, "-m", "mlops_kit.cli", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "pipeline" in done.stdout


def test_bad_schema_file_exits_2(cli, tmp_path):
    result = cli("pipeline", "run", "--schema", str(tmp_path / "missing.json"))
    assert result.exit_code == 2 and "schema" in result.stderr
    (tmp_path / "empty.json").write_text('{"target": "y", "numeric": [], "categorical": []}')
    result = cli("pipeline", "run", "--schema", str(tmp_path / "empty.json"))
    assert result.exit_code == 2 and "no feature" in result.stderr


@pytest.mark.parametrize("args,message", [
    (("pipeline", "run", "--dta", "x.csv"), "No such option: --dta"),   # mistyped flag
    (("pipline", "run"), "No such command 'pipline'"),                   # unknown command
    (("registry", "show"), "Missing argument 'version'"),                # missing argument
    (("registry", "show", "one"), "Invalid value for 'version'"),       # wrong kind of value
])
def test_usage_errors_exit_64_not_the_bad_input_code(cli, args, message):
    result = cli(*args)
    assert result.exit_code == 64, result.output
    assert message in result.stderr


def test_the_console_script_maps_usage_errors_too(home):
    """Through the installed entry point (`main`), not just the app: 64, 2 and 0 stay apart."""
    def run(*args):
        return subprocess.run([sys.executable, "-m", "mlops_kit.cli", *args],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "MLOPS_HOME": str(home)})

    mistyped = run("registry", "list", "--jsn")
    assert mistyped.returncode == 64 and "--jsn" in mistyped.stderr
    assert run("registry", "show", "99").returncode == 2  # bad input keeps its code
    assert run("registry", "--help").returncode == 0


def test_a_declared_models_pipeline_runs_with_its_declaration(home, data_file):
    """`--model`: the declared model's group, label, gate thresholds and training parameters
    (models/fraud-detector-eu.toml: min_aupr 0.45, max_depth 4, eta 0.15), each `--param`
    still winning over the declaration."""
    from builders import ROOT
    from mlops_kit.fleet.loader import load_fleet

    declared = load_fleet(ROOT).model("fraud-detector-eu")
    runner = CliRunner()
    env = {"MLOPS_HOME": str(home), "MLOPS_OWNER": "test-scientist", "MLOPS_FLEET": str(ROOT)}
    result = runner.invoke(app, ["pipeline", "run", "--model", declared.name, "--data",
                                 str(data_file), "--param", "num_round=40", "--param",
                                 "min_test_positives=10", "--json"], env=env)
    assert result.exit_code in (0, 3), result.output
    run = json.loads(result.stdout)
    assert run["parameters"]["max_depth"] == declared.training_parameters()["max_depth"] == 4
    assert run["parameters"]["eta"] == 0.15 and run["parameters"]["num_round"] == 40
    thresholds = {g["gate"]: g["threshold"] for g in run["gates"]}
    assert thresholds["min_aupr"] == declared.thresholds()["min_aupr"] == 0.45
    assert thresholds["min_test_positives"] == 10  # the --param, not the declaration's
    if result.exit_code == 0:
        listed = runner.invoke(app, ["registry", "list", "--model", declared.name, "--json"],
                               env=env)
        versions = json.loads(listed.stdout)["versions"]
        assert [v["model_group"] for v in versions] == [declared.name]
    unknown = runner.invoke(app, ["pipeline", "run", "--model", "no-such-model"], env=env)
    assert unknown.exit_code == 2 and "no model 'no-such-model'" in unknown.output
