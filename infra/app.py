#!/usr/bin/env python3
"""The CDK app: one stage (`-c stage=dev|prod`, default dev) → three stacks, or the whole fleet
(`-c fleet=true`: every model of models/ in every environment, docs/fleet.md), checked by
cdk-nag.

    npx cdk synth -c stage=prod      (after `make definition`, see docs/deploy.md)
    npx cdk synth -c fleet=true
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python3 infra/app.py` puts infra/ itself first on sys.path, where infra/constructs/ would
# shadow the `constructs` library (ModuleNotFoundError: constructs._jsii): swap it for the repo root.
_HERE, _ROOT = Path(__file__).resolve().parent, Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_ROOT))

from aws_cdk import App, Validations  # noqa: E402
from cdk_nag import AwsSolutionsChecks  # noqa: E402

from infra.config import ConfigError, load  # noqa: E402
from infra.fleet_config import load_fleet_config  # noqa: E402
from infra.constructs.training_pipeline import PipelineAssetsMissing  # noqa: E402
from infra.stacks import compose  # noqa: E402
from infra.stacks.fleet import compose_fleet  # noqa: E402


def main() -> None:
    app = App()
    context = {key: app.node.try_get_context(key)
               for key in ("stage", "stages", "fallbackRegion", "registryEnvironment")}
    try:
        if str(app.node.try_get_context("fleet") or "").lower() in ("true", "1", "yes"):
            compose_fleet(app, load_fleet_config(context, _ROOT))
        else:
            compose(app, load(context))
    except (ConfigError, PipelineAssetsMissing) as exc:
        sys.exit(f"error: {exc}")
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    app.synth()


if __name__ == "__main__":
    main()
