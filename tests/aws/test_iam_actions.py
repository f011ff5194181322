"""Every AWS operation the adapters call is in their IAM_ACTIONS (what an operator running the
CLI needs; the Lambda roles come from mlops_kit.contract, run under IAM in tests/deployed/), and
nothing is listed that the code does not call."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import botocore.session
import pytest

from mlops_kit.aws import batch_transform, ledger
from mlops_kit.deploy import sagemaker_endpoint
from mlops_kit.registry import sagemaker as sagemaker_registry

ROOT = Path(__file__).resolve().parents[2] / "functions"
KIT = ROOT / "mlops_kit"
# A paginator's operation is a call too (the ledger's Query pages).
CALL = re.compile(r"""(?:_call|\bcall|get_paginator)\(\s*(?:operation_name=)?"(\w+)"|"""
                  r"""\.(invoke_endpoint|put_records|put_record_batch)\(""")
SERVICE_OF = {"put_records": "kinesis", "put_record_batch": "firehose",
              "invoke_endpoint": "sagemaker-runtime"}
IAM_PREFIX = {"sagemaker": "sagemaker", "sagemaker-runtime": "sagemaker", "dynamodb": "dynamodb",
              "kinesis": "kinesis", "firehose": "firehose"}
TRANSACTION = {"dynamodb:TransactWriteItems": {"dynamodb:PutItem", "dynamodb:UpdateItem"}}
EXTRA = {"sagemaker:AddTags", "iam:PassRole"}  # required by the calls, not calls themselves


@functools.cache
def operations(service: str) -> dict[str, str]:
    model = botocore.session.get_session().get_service_model(service)
    return {botocore.xform_name(name): name for name in model.operation_names}


def api_name(service: str, method: str) -> str:
    assert method in operations(service), f"{service} has no operation {method}"
    return operations(service)[method]


def actions(files: list[Path], default_service: str) -> set[str]:
    found: set[str] = set()
    for path in files:
        for match in CALL.finditer(path.read_text()):
            method = match.group(1) or match.group(2)
            service = SERVICE_OF.get(method, default_service)
            if method in ("get_item", "put_item", "query", "transact_write_items"):
                service = "dynamodb"
            action = f"{IAM_PREFIX[service]}:{api_name(service, method)}"
            found |= TRANSACTION.get(action, {action})
    return found


@pytest.mark.parametrize("module,files", [
    (sagemaker_registry, [KIT / "registry" / "sagemaker.py", KIT / "registry" / "sagemaker_promotions.py",
                         KIT / "aws" / "ledger.py"]),
    (ledger, [KIT / "aws" / "ledger.py"]),
    (sagemaker_endpoint, [KIT / "deploy" / "sagemaker_endpoint.py", KIT / "aws" / "models.py"]),
    (batch_transform, [KIT / "aws" / "batch_transform.py", KIT / "aws" / "models.py"]),
], ids=["registry", "ledger", "endpoints", "batch-transform"])
def test_iam_actions_match_the_calls(module, files):
    assert actions(files, "sagemaker") == set(module.IAM_ACTIONS) - EXTRA
    assert len(set(module.IAM_ACTIONS)) == len(module.IAM_ACTIONS)


