"""`mlops models list|show`: the declared fleet as JSON and tables; bad declarations exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from mlops_kit.cli.app import app

ROOT = Path(__file__).resolve().parents[2]


def invoke(fleet: Path, *args: str):
    return CliRunner().invoke(app, list(args), env={"MLOPS_FLEET": str(fleet)})


def test_list_shows_every_declared_model_and_the_promotion_order():
    result = invoke(ROOT, "models", "list", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["environments"] == ["dev", "staging", "prod"]
    assert [m["name"] for m in document["models"]] == sorted(
        p.stem for p in (ROOT / "models").glob("*.toml"))
    table = invoke(ROOT, "models", "list")
    assert "fraud-detector-eu" in table.stdout and "dev → staging → prod" in table.stdout


def test_show_resolves_each_environments_serving_settings():
    result = invoke(ROOT, "models", "show", "fraud-detector", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["serving"]["prod"]["capture_percent"] == 20
    assert document["serving"]["dev"]["capture_percent"] == 100
    assert document["endpoints"]["prod"] == "fraud-detector-prod"
    assert document["gates"]["min_aupr"] == 0.40


def test_an_unknown_model_or_a_broken_declaration_exits_2_naming_it(tmp_path):
    result = invoke(ROOT, "models", "show", "nope")
    assert result.exit_code == 2 and "no model 'nope' is declared" in result.stderr
    shutil.copytree(ROOT / "models", tmp_path / "models")
    shutil.copy(ROOT / "cdk.json", tmp_path / "cdk.json")
    broken = tmp_path / "models" / "fraud-detector.toml"
    broken.write_text(broken.read_text().replace("capture_percent = 20", "capture_percent = 200"))
    result = invoke(tmp_path, "models", "list")
    assert result.exit_code == 2
    assert f"{broken}: environments.prod.capture_percent must be 1..100" in \
        " ".join(result.stderr.split())
