"""The contract between the CDK app and the Lambdas: both sides built from it, errors that name
the variable, and no dependency (infra imports it; every bundle carries it)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from mlops_kit import contract

SOURCE = Path(contract.__file__)


def imported_modules(path: Path) -> set[str]:
    """The absolute imports of a module's source, as full dotted names."""
    tree = ast.parse(path.read_text())
    imported = {alias.name for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    return imported


def test_the_contract_imports_only_the_standard_library():
    imported = {name.split(".")[0] for name in imported_modules(SOURCE)}
    assert imported - {"__future__"} <= set(sys.stdlib_module_names)


def test_the_metric_catalogue_imports_only_the_standard_library_and_core():
    from mlops_kit.core import metric_catalogue

    imported = imported_modules(Path(metric_catalogue.__file__))
    outside = {name for name in imported
               if name.split(".")[0] not in sys.stdlib_module_names | {"__future__"}
               and name != "mlops_kit.core" and not name.startswith("mlops_kit.core.")}
    assert not outside


def test_an_environment_rendered_by_the_cdk_side_parses_back_on_the_lambda_side():
    fn = contract.function("deployment_controller")
    env = fn.environment(endpoint_name="e", model_group="g", ledger_table="l",
                         idempotency_table="i", execution_role_arn="arn:aws:iam::1:role/r",
                         capture_s3_uri="s3://b/capture", capture_percent=20,
                         capture_kms_key_id=None, instance_type="ml.m5.large",
                         champion_instance_count=2, fallback_instance_count=1, warm_fallbacks=2)
    assert env["DATA_CAPTURE_SAMPLING_PERCENT"] == "20"
    assert "DATA_CAPTURE_KMS_KEY_ID" not in env  # unset optional settings stay unset
    settings = fn.settings(env)
    assert (settings.capture_percent, settings.champion_instance_count,
            settings.capture_kms_key_id) == (20, 2, "")


def test_the_cdk_side_cannot_leave_out_a_required_setting_or_invent_one():
    fn = contract.function("rollback_controller")
    with pytest.raises(contract.ContractError, match="LEDGER_TABLE_NAME"):
        fn.environment(endpoint_name="e", model_group="g", idempotency_table="i")
    with pytest.raises(contract.ContractError, match="no such setting"):
        fn.environment(endpoint_name="e", model_group="g", ledger_table="l",
                       idempotency_table="i", cooldown="15")


def test_bad_settings_name_every_variable_at_once():
    fn = contract.function("deployment_controller")
    with pytest.raises(contract.SettingsError) as error:
        fn.settings({"ENDPOINT_NAME": "e", "CHAMPION_INSTANCE_COUNT": "two",
                     "DATA_CAPTURE_SAMPLING_PERCENT": "120", "DATA_CAPTURE_S3_URI": "b/x"})
    message = str(error.value)
    for name in ("MLOPS_MODEL_GROUP is required", "CHAMPION_INSTANCE_COUNT must be a whole number",
                 "DATA_CAPTURE_SAMPLING_PERCENT must be 1..100", "DATA_CAPTURE_S3_URI must be"):
        assert name in message


def test_every_grant_names_a_resource_infra_knows_and_paths_declare_their_actions():
    resources = {getattr(contract, n) for n in dir(contract)
                 if n.isupper() and isinstance(getattr(contract, n), str)
                 and not n.endswith("NAMESPACE")}
    for fn in contract.FUNCTIONS.values():
        assert set(fn.grants()) <= resources, fn.name
        assert all(":" in action for action in fn.actions)
        assert fn.settings_type.CONTRACT == fn.name


def test_the_approval_pattern_says_what_deploy_decision_says():
    pattern = contract.approval_event_pattern("g")["detail"]
    assert pattern["ModelApprovalStatus"] == ["Approved"]
    assert {"UpdatedModelPackageFields": ["ModelApprovalStatus"]} in pattern["$or"]
