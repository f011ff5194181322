"""`mlops ui` opens the MLflow UI on the current home's store (runs, their artifacts, the
registry mirror's models and aliases), and refuses (creating nothing) where there is none (the
README's old `mlflow ui` line opened an empty, stray store)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

from mlops_kit.config import LocalSettings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_mlops_ui_serves_the_homes_runs_and_refuses_a_home_without_a_store(tmp_path):
    empty = tmp_path / "empty"
    refused = subprocess.run([sys.executable, "-m", "mlops_kit.cli", "ui"], capture_output=True,
                             text=True, env={**os.environ, "MLOPS_HOME": str(empty)}, timeout=60)
    assert refused.returncode == 2 and "no MLflow store" in refused.stderr
    assert not empty.exists()

    home = tmp_path / "home"
    settings = LocalSettings.from_env({"MLOPS_HOME": str(home)})
    home.mkdir()
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_uri)
    experiment = mlflow.create_experiment("fraud-detector", settings.mlflow_artifact_root)
    with mlflow.start_run(experiment_id=experiment, run_name="pipeline-run-1") as run:
        mlflow.log_metric("test_aupr", 0.61)
        mlflow.log_text("<html></html>", "evaluation/report.html")
    # What the registry mirror writes (tracking/registry_mirror.py): a model version, an alias.
    client = mlflow.MlflowClient(tracking_uri=settings.mlflow_uri,
                                 registry_uri=settings.mlflow_uri)
    client.create_registered_model("fraud-detector")
    client.create_model_version("fraud-detector", f"{run.info.artifact_uri}/model",
                                run_id=run.info.run_id, tags={"mlops.registry_version": "1"})
    client.set_registered_model_alias("fraud-detector", "champion", "1")
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlops_kit.cli", "ui", "--port", str(port)],
                              env={**os.environ, "MLOPS_HOME": str(home)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = (f"http://127.0.0.1:{port}/api/2.0/mlflow/runs/search")
        deadline, answer = time.monotonic() + 240, None  # a loaded 2-core box: ~100 s
        while time.monotonic() < deadline and answer is None:
            try:
                request = urllib.request.Request(url, data=json.dumps(
                    {"experiment_ids": [experiment]}).encode(),
                    headers={"Content-Type": "application/json"})
                answer = json.loads(urllib.request.urlopen(request, timeout=5).read())
            except OSError:
                assert server.poll() is None, "mlops ui exited"
                time.sleep(0.5)
        assert answer is not None, "the MLflow UI never answered"
        (found,) = answer["runs"]
        assert found["info"]["run_name"] == "pipeline-run-1"
        assert {m["key"]: m["value"] for m in found["data"]["metrics"]} == {"test_aupr": 0.61}
        base = f"http://127.0.0.1:{port}/api/2.0/mlflow"
        listed = json.loads(urllib.request.urlopen(
            f"{base}/artifacts/list?run_id={run.info.run_id}&path=evaluation", timeout=5).read())
        assert [f["path"] for f in listed["files"]] == ["evaluation/report.html"]
        model = json.loads(urllib.request.urlopen(
            f"{base}/registered-models/get?name=fraud-detector", timeout=5).read())
        assert model["registered_model"]["aliases"] == [{"alias": "champion", "version": "1"}]
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
