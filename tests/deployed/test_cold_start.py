"""Every function of both stages starts with exactly its template environment, from exactly
the files its bundle ships (the bundler's own output), in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mlops_kit import contract

from .conftest import ROOT, infra_module
from .twin import lambda_runtime_environment

HEAVY = ("pandas", "xgboost", "sklearn", "sagemaker", "mlflow", "matplotlib", "scipy")

PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import handler, mlops_kit
print(json.dumps({"kit": mlops_kit.__file__,
                  "heavy": sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[2:]))}))
"""


@pytest.fixture(scope="module")
def bundling():
    return infra_module("constructs.bundling")


@pytest.mark.parametrize("function", sorted(contract.FUNCTIONS))
def test_every_function_starts_with_its_template_environment(stage, function, bundling,
                                                             tmp_path):
    fn = stage.functions[function]
    files = bundling.module_closure(ROOT / "functions", function)
    bundling._LocalBundler(ROOT / "functions", files, None).try_bundle(str(tmp_path))
    environment = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
                   **lambda_runtime_environment(fn, {"AccessKeyId": "cold",
                                                     "SecretAccessKey": "cold",
                                                     "SessionToken": "cold"})}
    result = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path), *HEAVY],
                            cwd=tmp_path, env=environment, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["kit"].startswith(str(tmp_path)), "imported the kit from outside the bundle"
    allowed = {"drift_monitor": set()}.get(function, set())
    assert set(seen["heavy"]) <= allowed, f"{function} imports {seen['heavy']} at cold start"


@pytest.mark.parametrize("function", sorted(contract.FUNCTIONS))
def test_every_setting_the_contract_requires_is_in_the_template(stage, function):
    fn = stage.functions[function]
    for var in contract.function(function).env:
        if var.required:
            assert fn.environment.get(var.name), f"{function}: {var.name} not set"
    settings = contract.function(function).settings(fn.environment)
    assert settings.endpoint_name == stage.output(stage.control, "EndpointName")


def test_the_deployment_controller_captures_as_the_stage_says(stage, templates):
    settings = contract.function("deployment_controller").settings(
        stage.functions["deployment_controller"].environment)
    expected = {"dev": 100, "prod": 20}[stage.name]
    assert settings.capture_percent == expected
    capture_uri = stage.output(stage.stateful, "CaptureS3Uri")
    assert settings.capture_s3_uri == capture_uri
    drift = contract.function("drift_monitor").settings(stage.functions["drift_monitor"].environment)
    assert drift.capture_s3_uri == capture_uri  # the monitor reads where the endpoint writes
    key_arn = stage.resolver.attributes[(stage.stateful, _logical(stage, "AWS::KMS::Key"))]["Arn"]
    assert settings.capture_kms_key_id == key_arn


def _logical(stage, kind: str) -> str:
    (logical,) = stage.resolver.resources(stage.stateful, kind)
    return logical
