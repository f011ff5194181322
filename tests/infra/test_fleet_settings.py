"""The fleet's per-model settings, two sides of one seam: what the construct takes from each
model's serving settings (`PER_MODEL_SETTINGS`) is exactly what the contract marks `per_model`
(and so what the routes file carries and the function's own environment does not)."""

from __future__ import annotations

import pytest

from mlops_kit import contract
from mlops_kit.fleet.loader import load_fleet

from .conftest import ROOT, cdk_app_package

ALWAYS_PER_MODEL = {"endpoint_name", "model_group"}


@pytest.mark.parametrize("function", ["deployment_controller", "rollback_controller",
                                      "drift_monitor", "probe"])
def test_the_construct_takes_per_model_exactly_what_the_contract_marks(function):
    cdk_app_package()
    import importlib

    control_functions = importlib.import_module("mlops_infra.constructs.control_functions")
    model = next(iter(load_fleet(ROOT).models.values()))
    served = control_functions.ServedModel(model.name, model.endpoint_name("prod"), model.name,
                                           model.serving_in("prod"))
    taken = set(control_functions.PER_MODEL_SETTINGS[function](served)) | ALWAYS_PER_MODEL
    marked = {var.field for var in contract.function(function).env if var.per_model}
    assert taken == marked
