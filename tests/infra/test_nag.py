"""cdk-nag AwsSolutions on one in-process synth (dev stage, bundling skipped, built-in
validation off): nothing left unacknowledged, every acknowledgement granular and explained;
and cfn-lint on the same templates."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import nag_report as synth_with_report
from .conftest import synth_stage


@pytest.fixture(scope="module")
def nag_report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nag")
    app, _ = synth_stage(tmp, "dev", nag=True)
    return synth_with_report(app, tmp / "cdk.out")


def _plugin(report):
    (plugin,) = [p for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    return plugin


def test_no_unacknowledged_findings(nag_report):
    plugin = _plugin(nag_report["report"])
    left = sorted({f"{v['ruleName']} @ {c['constructPath']}"
                   for v in plugin["violations"] for c in v["violatingConstructs"]})
    assert left == [], "unacknowledged cdk-nag findings:\n" + "\n".join(left)
    assert plugin["conclusion"] == "success"
    assert nag_report["error"] is None


def test_acknowledgements_are_specific(nag_report):
    suppressed = _plugin(nag_report["report"])["suppressedViolations"]
    assert suppressed, "expected the acknowledged findings in the report"
    for finding in suppressed:
        ack, reason = finding["acknowledgedId"], finding["reason"]
        # one finding per acknowledgement: no base-rule blanket for granular rules
        assert ack == f"AwsSolutions::{finding['ruleName']}", ack
        if finding["ruleName"].startswith("AwsSolutions-IAM5"):
            assert "[" in ack, f"blanket IAM5 acknowledgement: {ack}"
        assert len(reason) >= 40, f"{ack}: reason too short: {reason!r}"
        # no hashed CDK export names in ids (they change when a construct moves)
        assert "ExportsOutput" not in ack, ack


@pytest.mark.skipif(shutil.which("cfn-lint", path=str(Path(sys.executable).parent)) is None,
                    reason="cfn-lint not installed in the venv")
def test_cfn_lint_clean(nag_report):
    root = Path(__file__).resolve().parents[2]
    templates = sorted(str(p) for p in nag_report["outdir"].glob("*.template.json"))
    assert len(templates) == 3
    cfn_lint = str(Path(sys.executable).parent / "cfn-lint")
    result = subprocess.run([cfn_lint, "--config-file", str(root / ".cfnlintrc.yaml"),
                             "--", *templates],
                            capture_output=True, text=True, timeout=120, cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
