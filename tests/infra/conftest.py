"""One in-process synth per test module: bundling skipped, built-in validation off, no nag."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def staged_stub(tmp: Path) -> Path:
    """A stand-in for pipelines/build/artifact-bucket holding every key the definition names."""
    text = (ROOT / "pipelines" / "definition.json").read_text()
    for key in set(re.findall(r"s3://\$\{ArtifactBucket\}/(pipeline-code/[^\"]*)", text)):
        path = tmp / key
        if key.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            (path / "stub").write_text("x")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
    return tmp


def cdk_app_package():
    """The CDK app's `infra` package, loaded as `mlops_infra`: this test folder is itself
    imported as the package `infra` (tests/ has no __init__.py)."""
    import importlib
    import importlib.util
    import sys

    if "mlops_infra" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "mlops_infra", ROOT / "infra" / "__init__.py",
            submodule_search_locations=[str(ROOT / "infra")])
        module = importlib.util.module_from_spec(spec)
        sys.modules["mlops_infra"] = module
        spec.loader.exec_module(module)
    return (importlib.import_module("mlops_infra.config"),
            importlib.import_module("mlops_infra.stacks"))


def synth_stage(tmp: Path, stage: str = "dev", *, nag: bool = False,
                overrides: dict | None = None):
    from aws_cdk import App, Validations

    config, stacks_module = cdk_app_package()
    load, Paths, compose = config.load, stacks_module.Paths, stacks_module.compose

    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    context["aws:cdk:bundling-stacks"] = []
    context["stages"][stage].update(overrides or {})
    app = App(context=context, outdir=str(tmp / "cdk.out"),
              builtin_cloud_formation_validation=False)
    stacks = compose(app, load(context, stage), Paths(pipeline_assets=staged_stub(tmp / "assets")))
    if nag:
        from cdk_nag import AwsSolutionsChecks

        Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    return app, stacks


def nag_report(app, outdir: Path) -> dict:
    """Synthesize `app` with its validation plugins: their report, and the error findings
    raised (None when none did)."""
    try:
        app.synth()
    except Exception as exc:  # findings fail synth; the report says which
        error = exc
    else:
        error = None
    return {"report": json.loads((outdir / "validation-report.json").read_text()),
            "error": error, "outdir": outdir}


def synth_fleet(tmp: Path, *, nag: bool = False, overrides: dict | None = None):
    """The fleet app (`-c fleet=true`) over the repository's models/ and cdk.json; `overrides`
    per environment (e.g. accounts). Returns (app, fleet config, stacks by name)."""
    import importlib

    from aws_cdk import App, Validations

    cdk_app_package()
    fleet_config = importlib.import_module("mlops_infra.fleet_config")
    compose_fleet = importlib.import_module("mlops_infra.stacks.fleet").compose_fleet
    Paths = importlib.import_module("mlops_infra.stacks").Paths

    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    context["aws:cdk:bundling-stacks"] = []
    for environment, values in (overrides or {}).items():
        context["stages"][environment].update(values)
    app = App(context=context, outdir=str(tmp / "cdk.out"),
              builtin_cloud_formation_validation=False)
    config = fleet_config.load_fleet_config(context, ROOT)
    stacks = compose_fleet(app, config, Paths(pipeline_assets=staged_stub(tmp / "assets")))
    if nag:
        from cdk_nag import AwsSolutionsChecks

        Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    return app, config, stacks


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    from aws_cdk.assertions import Template

    app, stacks = synth_stage(tmp_path_factory.mktemp("synth"))
    return {"stacks": stacks,
            "stateful": Template.from_stack(stacks.stateful),
            "pipeline": Template.from_stack(stacks.pipeline),
            "control": Template.from_stack(stacks.control)}
