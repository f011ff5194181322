"""The fleet's declarations (models/*.toml and cdk.json's promotion order): what the repository
declares loads, and every malformed declaration is refused naming its file and key."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mlops_kit.fleet.loader import FleetError, load_fleet

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fleet_dir(tmp_path):
    shutil.copytree(ROOT / "models", tmp_path / "models")
    shutil.copy(ROOT / "cdk.json", tmp_path / "cdk.json")
    return tmp_path


def write_model(folder: Path, name: str, text: str) -> Path:
    path = folder / "models" / f"{name}.toml"
    path.write_text(text)
    return path


MINIMAL = '''name = "{name}"
use_case = "u"
owner = "o"
deploy_to = ["dev", "prod"]
[data]
key = "incoming/{name}.parquet"
'''


def test_the_repository_declares_two_models_over_three_environments():
    fleet = load_fleet(ROOT)
    assert sorted(fleet.models) == ["fraud-detector", "fraud-detector-eu"]
    assert fleet.environment_names == ("dev", "staging", "prod")
    prod = {p.name: p for p in fleet.environments}["prod"]
    assert prod.soak_minutes == json.loads((ROOT / "cdk.json").read_text())[
        "context"]["stages"]["prod"]["promotion"]["soakMinutes"]
    fraud = fleet.model("fraud-detector")
    assert fraud.serving_in("prod").champion_instance_count == 2
    assert fraud.serving_in("dev").champion_instance_count == 1
    assert fraud.endpoint_name("staging") == "fraud-detector-staging"


def test_environment_overrides_apply_to_their_environment_only(fleet_dir):
    write_model(fleet_dir, "m", MINIMAL.format(name="m")
                + "[serving]\ncapture_percent = 50\n[environments.prod]\ncapture_percent = 5\n")
    model = load_fleet(fleet_dir).model("m")
    assert (model.serving_in("dev").capture_percent, model.serving_in("prod").capture_percent) \
        == (50, 5)


@pytest.mark.parametrize("extra, message", [
    ("[serving]\ncapture_percent = 0\n", "serving.capture_percent must be 1..100"),
    ("[environments.prod]\ncapture = 5\n", "unknown key(s) environments.prod.capture"),
    ("[environments.prod]\nwarm_fallbacks = 10\n",
     "environments.prod.warm_fallbacks must be 0..9"),
    ("[environments.staging]\ncapture_percent = 5\n", "m does not deploy to staging"),
    ("[gates]\nmin_aupx = 0.5\n", "unknown key(s) gates.min_aupx"),
    ("[gates]\nmin_aupr = \"high\"\n", "gates.min_aupr must be a number"),
    ("[training.parameters]\nmax_depth = 4.5\n", "training.parameters.max_depth must be a whole"),
    ("[training]\nschedule = \"daily\"\n", "training.schedule must be 'rate("),
    ("colour = \"red\"\n", "unknown key(s) colour"),
])
def test_a_malformed_declaration_names_its_file_and_key(fleet_dir, extra, message):
    text = MINIMAL.format(name="m")
    # top-level keys must come before the first table
    text = extra + text if not extra.startswith("[") else text + extra
    path = write_model(fleet_dir, "m", text)
    with pytest.raises(FleetError) as err:
        load_fleet(fleet_dir)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


def test_the_file_name_is_the_model_name(fleet_dir):
    path = write_model(fleet_dir, "other", MINIMAL.format(name="m"))
    with pytest.raises(FleetError, match="must be the file's name"):
        load_fleet(fleet_dir)
    path.unlink()


def test_broken_toml_is_refused_with_its_line(fleet_dir):
    write_model(fleet_dir, "m", "name = \n")
    with pytest.raises(FleetError, match=r"m\.toml: not valid TOML: .*line 1"):
        load_fleet(fleet_dir)


@pytest.mark.parametrize("deploy_to, message", [
    ('["dev", "qa"]', "deploy_to names qa, not in cdk.json's promotionOrder"),
    ('["prod", "dev"]', "deploy_to must list environments in promotion order (dev, prod)"),
    ("[]", "deploy_to must not be empty"),
])
def test_deploy_to_names_known_environments_in_order(fleet_dir, deploy_to, message):
    write_model(fleet_dir, "m", MINIMAL.format(name="m").replace('["dev", "prod"]', deploy_to))
    with pytest.raises(FleetError) as err:
        load_fleet(fleet_dir)
    assert message in str(err.value)


def test_the_promotion_policy_is_read_typed_from_cdk_json(fleet_dir):
    cdk = fleet_dir / "cdk.json"
    document = json.loads(cdk.read_text())
    document["context"]["stages"]["prod"]["promotion"] = {"soakMinutes": "30"}
    cdk.write_text(json.dumps(document))
    with pytest.raises(FleetError, match=r"stages\.prod\.promotion\.soakMinutes must be a whole"):
        load_fleet(fleet_dir)
    document["context"]["promotionOrder"] = ["dev", "qa"]
    cdk.write_text(json.dumps(document))
    with pytest.raises(FleetError, match="promotionOrder names 'qa', which is not in stages"):
        load_fleet(fleet_dir)


def test_a_command_without_a_model_needs_exactly_one(fleet_dir):
    fleet = load_fleet(fleet_dir)
    with pytest.raises(FleetError, match="2 models are declared: name one with --model"):
        fleet.model(None)
    with pytest.raises(FleetError, match="no model 'nope' is declared"):
        fleet.model("nope")
    (fleet_dir / "models" / "fraud-detector-eu.toml").unlink()
    assert load_fleet(fleet_dir).model(None).name == "fraud-detector"


def test_no_models_folder_says_where_to_declare(tmp_path):
    shutil.copy(ROOT / "cdk.json", tmp_path / "cdk.json")
    with pytest.raises(FleetError, match="declare each model in"):
        load_fleet(tmp_path)
