"""Each Lambda's asset comes from the one bundler (`mlops_pipelines.closure`): its handler and
every kit module it imports, with the package's JSON data, and nothing it cannot import."""

from __future__ import annotations

import importlib

import pytest

from .conftest import ROOT, cdk_app_package

FUNCTIONS = sorted(p.parent.name for p in (ROOT / "functions").glob("*/handler.py"))


@pytest.fixture(scope="module")
def bundling():
    cdk_app_package()
    return importlib.import_module("mlops_infra.constructs.bundling")


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_functions_asset_holds_every_kit_module_it_imports(bundling, function, tmp_path):
    from unit.test_bundler import unresolved_kit_imports

    files = bundling.module_closure(ROOT / "functions", function)
    assert files[0].as_posix() == f"{function}/handler.py"
    bundling._LocalBundler(ROOT / "functions", files, None).try_bundle(str(tmp_path))
    shipped = {p.relative_to(tmp_path).as_posix(): p.read_bytes()
               for p in tmp_path.rglob("*") if p.is_file()}
    assert "handler.py" in shipped and unresolved_kit_imports(shipped) == set()
    if "mlops_kit/core/alarms.py" in shipped:  # reads its definitions at import
        assert "mlops_kit/core/alarm_definitions.json" in shipped
