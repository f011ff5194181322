"""cdk-nag AwsSolutions and cfn-lint on the fleet app (`-c fleet=true`, every model in every
environment): nothing left unacknowledged, in one account as in the repository's cdk.json and
with each environment in its own account (the registry in dev's), as a platform team deploys
it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import nag_report, synth_fleet
from .test_nag import _plugin


ACCOUNT_LAYOUTS = {
    "one-account": None,
    "three-accounts": {"dev": {"account": "111111111111", "region": "eu-west-1"},
                       "staging": {"account": "222222222222", "region": "eu-west-1"},
                       "prod": {"account": "333333333333", "region": "eu-west-1"}},
    "three-accounts-deploying-region": {"dev": {"account": "111111111111"},
                                        "staging": {"account": "222222222222"},
                                        "prod": {"account": "333333333333"}},
}


@pytest.fixture(scope="module", params=sorted(ACCOUNT_LAYOUTS))
def fleet_nag(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"fleet-nag-{request.param}")
    app, _, stacks = synth_fleet(tmp, nag=True, overrides=ACCOUNT_LAYOUTS[request.param])
    return {**nag_report(app, tmp / "cdk.out"), "stacks": stacks}


def test_the_fleet_has_no_unacknowledged_findings(fleet_nag):
    plugin = _plugin(fleet_nag["report"])
    left = sorted({f"{v['ruleName']} @ {c['constructPath']}"
                   for v in plugin["violations"] for c in v["violatingConstructs"]})
    assert left == [], "unacknowledged cdk-nag findings:\n" + "\n".join(left)
    assert fleet_nag["error"] is None


@pytest.mark.skipif(shutil.which("cfn-lint", path=str(Path(sys.executable).parent)) is None,
                    reason="cfn-lint not installed in the venv")
def test_the_fleet_templates_are_cfn_lint_clean(fleet_nag):
    root = Path(__file__).resolve().parents[2]
    templates = sorted(str(p) for p in fleet_nag["outdir"].glob("*.template.json"))
    assert len(templates) == len(fleet_nag["stacks"])
    cfn_lint = str(Path(sys.executable).parent / "cfn-lint")
    result = subprocess.run([cfn_lint, "--config-file", str(root / ".cfnlintrc.yaml"),
                             "--", *templates],
                            capture_output=True, text=True, timeout=300, cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
