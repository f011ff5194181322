"""The one bundler (`mlops_pipelines.closure`): which kit modules shipped code needs, for the
pipeline's code bundles here and the Lambda assets (tests/infra/test_lambda_bundling.py)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from mlops_pipelines import bundle
from mlops_pipelines.closure import imported_names, package_closure


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def unresolved_kit_imports(files: dict[str, bytes]) -> set[str]:
    """Kit names the `.py` members import that are neither a member module nor a name
    defined in one (`from mlops_kit.core.gates import GATES`)."""
    modules = {PurePosixPath(name).with_suffix("").as_posix().replace("/", ".").removesuffix(
        ".__init__") for name in files if name.endswith(".py")}
    missing = set()
    for name, data in files.items():
        if not name.endswith(".py"):
            continue
        parts = list(PurePosixPath(name).parent.parts)
        for imported in imported_names(data, parts if parts[:1] == ["mlops_kit"] else None):
            if imported.split(".")[0] != "mlops_kit":
                continue
            if imported not in modules and imported.rsplit(".", 1)[0] not in modules:
                missing.add(imported)
    return missing


def test_the_closure_follows_every_import_form_and_brings_the_package_inits(tmp_path):
    root = tmp_path / "functions"
    write(root, {
        "mlops_kit/__init__.py": "",
        "mlops_kit/core/__init__.py": "",
        "mlops_kit/core/a.py": "from .b import helper\n",
        "mlops_kit/core/b.py": "def helper():\n    import mlops_kit.core.c\n",
        "mlops_kit/core/c.py": "from ..aws import d\n",
        "mlops_kit/core/unused.py": "",
        "mlops_kit/aws/__init__.py": "",
        "mlops_kit/aws/d.py": "import numpy\n",
        "mlops_kit/aws/unused.py": "",
        "probe/handler.py": "from mlops_kit.core.a import helper\n",
    })
    write(tmp_path, {"pipelines/step.py": "from . import sibling\nfrom mlops_kit.core import a\n"})
    expected = [Path(p) for p in ("mlops_kit/__init__.py", "mlops_kit/aws/__init__.py",
                                  "mlops_kit/aws/d.py", "mlops_kit/core/__init__.py",
                                  "mlops_kit/core/a.py", "mlops_kit/core/b.py",
                                  "mlops_kit/core/c.py")]
    assert package_closure([tmp_path / "pipelines/step.py"], root=root) == expected
    # A source inside the root but outside the package (a Lambda handler) is not part of it.
    assert package_closure([root / "probe/handler.py"], root=root) == expected


def test_a_source_importing_nothing_of_the_kit_needs_nothing(tmp_path):
    write(tmp_path, {"functions/mlops_kit/__init__.py": "",
                     "inference.py": "import numpy\nfrom . import x\n"})
    assert package_closure([tmp_path / "inference.py"], root=tmp_path / "functions") == []


def test_the_pipeline_bundles_ship_every_kit_module_their_code_imports():
    for files in (bundle.steps_files(), bundle.inference_files()):
        assert unresolved_kit_imports(files) == set()
    steps = bundle.steps_files()
    assert {"mlops_kit/core/drift.py", "mlops_kit/core/gates.py",
            "mlops_kit/core/categories.py"} <= set(steps)
    # Nothing of the kit beyond the closure: the rest would only re-version the pipeline code.
    kit = {name for name in steps if name.startswith("mlops_kit/")}
    assert kit == {p.as_posix() for p in package_closure(sorted(bundle.STEPS_DIR.glob("*.py")))}
    assert "mlops_kit/deploy/controller.py" not in kit


def test_the_bundle_check_catches_a_missing_module():
    files = {"mlops_kit/__init__.py": b"", "step.py": b"from mlops_kit.core.drift import psi\n"}
    assert unresolved_kit_imports(files) == {"mlops_kit.core.drift", "mlops_kit.core.drift.psi"}
