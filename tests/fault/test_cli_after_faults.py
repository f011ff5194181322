"""The local CLI after faults (issue [E]): a half-written registry (a row whose artifact is
gone, an artifact without a row, a staging leftover of a copy that died) and a corrupt capture
file. Every read command still answers, with the documented exit code (0 ok, 2 bad input) and
a clear message, never a traceback; the JSON keeps its shape."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from mlops_kit.cli.app import EXIT_BAD_INPUT, EXIT_OK, EXIT_USAGE, app

from ._world import ENDPOINT, GROUP, approve_and_deploy, make_home

ORPHAN = "f" * 64  # a digest-named artifact no row points at


@pytest.fixture(scope="module")
def faulted(tmp_path_factory):
    """v2 serving, v1 warm, v3 pending; then the faults. Module-scoped: the commands only
    read (the monitor tick writes its own metrics and offsets, which no other test reads)."""
    tmp_path = tmp_path_factory.mktemp("cli-faults")
    settings, registry = make_home(tmp_path, versions=3)
    for version in (1, 2):
        approve_and_deploy(settings, registry, version)
    # Rows whose artifact folder is gone: the warm fallback's and a pending version's.
    for version in (1, 3):
        shutil.rmtree(registry.get(version).model_uri)
    # An artifact stored whole whose row was never committed (crash before COMMIT).
    (registry.artifacts / ORPHAN).mkdir()
    (registry.artifacts / ORPHAN / "xgboost-model").write_text("orphan")
    # A copy that died half-way, before its rename into place.
    staging = registry.artifacts / ".staging-deadbeef"
    staging.mkdir()
    (staging / "xgboost-model").write_text("half a mod")
    # The champion's capture: a torn JSON line, bytes that are not UTF-8, the wrong schema.
    folder = settings.home / "capture" / ENDPOINT / "v2" / "2026" / "11" / "27" / "10"
    folder.mkdir(parents=True)
    (folder / "capture.jsonl").write_bytes(
        b'{"captureData": {"endpointInput": \n\xff\xfe\x00 not text\n{"hello": "world"}\n')
    runner = CliRunner()

    def invoke(*args: str):
        result = runner.invoke(app, list(args), env={
            "MLOPS_HOME": str(settings.home), "MLOPS_MODEL_GROUP": GROUP,
            "MLOPS_ENDPOINT": ENDPOINT, "MLOPS_OWNER": "carol"})
        # Exit codes come from typer.Exit / click usage errors (SystemExit), never from an
        # exception escaping a command.
        assert result.exception is None or isinstance(result.exception, SystemExit), \
            result.exception
        assert "Traceback" not in result.output
        return result
    return invoke, registry


def test_registry_list_shows_every_row_and_neither_the_orphan_nor_the_staging_leftover(
        faulted):
    invoke, registry = faulted
    result = invoke("registry", "list", "--json")
    assert result.exit_code == EXIT_OK
    listed = json.loads(result.stdout)
    assert listed["model_group"] == GROUP
    assert [(v["version"], v["status"]) for v in listed["versions"]] == [
        (1, "Approved"), (2, "Approved"), (3, "PendingManualApproval")]
    uris = {v["model_uri"] for v in listed["versions"]}
    assert not any(ORPHAN in u or ".staging-" in u for u in uris)
    assert {"version", "status", "model_uri", "metrics", "lineage", "owner"} <= set(
        listed["versions"][0])
    assert invoke("registry", "list").exit_code == EXIT_OK  # the table renders too


def test_registry_show_answers_for_a_row_whose_artifact_is_gone(faulted):
    invoke, registry = faulted
    result = invoke("registry", "show", "3", "--json")
    assert result.exit_code == EXIT_OK
    shown = json.loads(result.stdout)
    assert (shown["version"], shown["status"]) == (3, "PendingManualApproval")
    assert [t["to_status"] for t in shown["transitions"]] == ["PendingManualApproval"]
    assert shown["model_uri"] == registry.get(3).model_uri  # the record, as written
    shown = invoke("registry", "show", "1")
    assert shown.exit_code == EXIT_OK
    # Gates as a table (gate, value, needs, verdict), not a JSON dump in a cell.
    assert "needs" in shown.output and '"gate"' not in shown.output
    missing = invoke("registry", "show", "9", "--json")
    assert missing.exit_code == EXIT_BAD_INPUT
    assert "has no version 9" in missing.output and missing.stdout.strip() == ""
    assert invoke("registry", "show", "abc").exit_code == EXIT_USAGE  # a usage error, not input


def test_status_reports_the_endpoint_with_a_warm_fallback_whose_artifact_is_gone(faulted):
    invoke, _ = faulted
    result = invoke("status", "--json")
    assert result.exit_code == EXIT_OK
    report = json.loads(result.stdout)
    assert (report["endpoint"], report["exists"], report["status"], report["champion"]) == (
        ENDPOINT, True, "InService", 2)
    assert [(v["version"], v["weight"], v["approval_status"]) for v in report["variants"]] == [
        (2, 1.0, "Approved"), (1, 0.0, "Approved")]
    assert report["lineup"] == [2, 1]
    assert report["last_deployment"]["kind"] == "promote"
    assert [v["version"] for v in report["versions"]] == [1, 2, 3]
    assert invoke("status").exit_code == EXIT_OK


def test_registry_lineage_walks_a_version_whose_artifact_is_gone(faulted):
    invoke, _ = faulted
    text = invoke("registry", "lineage", "1")
    assert text.exit_code == EXIT_OK and "fraud-scorer version 1" in text.output
    walk = json.loads(invoke("registry", "lineage", "1", "--json").stdout)
    assert {"model_group", "version", "data", "code", "run", "model", "deployments"} <= set(walk)
    assert [(d["kind"], d["role"], d["weight"]) for d in walk["deployments"]] == [
        ("promote", "champion", 1.0), ("promote", "warm fallback", 0.0)]
    assert invoke("registry", "lineage", "3").exit_code == EXIT_OK
    missing = invoke("registry", "lineage", "9")
    assert missing.exit_code == EXIT_BAD_INPUT and "has no version 9" in missing.output


def test_one_monitor_tick_counts_the_corrupt_capture_as_skipped_and_exits_0(faulted, caplog):
    """The test models are not XGBoost files, so every variant fails to load: the probes say
    so (False), and the tick still reads the capture. Costs ~10 s here: the tick imports
    xgboost."""
    invoke, _ = faulted
    result = invoke("monitor", "--once", "--json", "--period", "1")
    assert result.exit_code == EXIT_OK
    tick = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(tick) == {"at", "records", "skipped", "feature_psi_max", "probes", "alarms",
                         "actions"}
    assert tick["records"] == {"v2": 3} and tick["skipped"] == {"v2": 3}
    assert tick["probes"] == {"v1": False, "v2": False}
    # The first tick settles the alarms out of their initial state; none fires, and nothing
    # moves traffic.
    assert not [a for a in tick["alarms"] if a.endswith("→ ALARM")]
    assert {a["action"] for a in tick["actions"]} <= {"ignored"}
    # ...and says why, in the log (pytest's handler holds it here; the CLI prints it to stderr)
    assert "skipped 3 of 3 capture records" in caplog.text
    assert "unreadable line" in caplog.text


def test_the_registry_still_registers_after_the_faults(faulted, tmp_path):
    """The orphan and the staging leftover neither take a version number nor block a store."""
    invoke, registry = faulted
    from ._world import request, write_baselines

    model = tmp_path / "model4"
    model.mkdir()
    (model / "xgboost-model").write_text("model 4")
    version = registry.register(request(model, *write_baselines(tmp_path / "b")))
    assert version.version == 4
    listed = json.loads(invoke("registry", "list", "--json").stdout)
    assert [v["version"] for v in listed["versions"]] == [1, 2, 3, 4]
