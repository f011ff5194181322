"""compose(): the three stacks of one stage, used by infra/app.py and by tests/infra."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import App, Environment, Tags

from ..config import StageConfig

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Paths:
    functions_dir: Path = REPO / "functions"
    requirements_dir: Path = REPO / "infra" / "lambda_requirements"
    alarm_definitions: Path = REPO / "functions" / "mlops_kit" / "core" / "alarm_definitions.json"
    definition: Path = REPO / "pipelines" / "definition.json"
    pipeline_assets: Path = REPO / "pipelines" / "build" / "artifact-bucket"


@dataclass(frozen=True)
class Stacks:
    stateful: object
    pipeline: object
    control: object


def compose(app: App, cfg: StageConfig, paths: Paths = Paths()) -> Stacks:
    from .control import ControlStack
    from .pipeline import PipelineStack
    from .stateful import StatefulStack

    env = Environment(account=cfg.account or os.environ.get("CDK_DEFAULT_ACCOUNT"),
                      region=cfg.region or os.environ.get("CDK_DEFAULT_REGION")
                      or cfg.fallback_region)
    stateful = StatefulStack(app, f"{cfg.prefix}-Stateful", cfg=cfg, env=env,
                             description=f"mlops-kit {cfg.stage}: key, buckets, tables, model group, topic")
    pipeline = PipelineStack(app, f"{cfg.prefix}-Pipeline", cfg=cfg, stateful=stateful, env=env,
                             definition_path=paths.definition, assets_dir=paths.pipeline_assets,
                             description=f"mlops-kit {cfg.stage}: SageMaker training pipeline, triggers, Studio")
    control = ControlStack(app, f"{cfg.prefix}-Control", cfg=cfg, stateful=stateful, env=env,
                           functions_dir=paths.functions_dir,
                           requirements_dir=paths.requirements_dir,
                           alarm_definitions=paths.alarm_definitions,
                           description=f"mlops-kit {cfg.stage}: control Lambdas, rules, alarms, dashboard")
    for stack in (stateful, pipeline, control):
        Tags.of(stack).add("mlops-kit:stage", cfg.stage)
        Tags.of(stack).add("mlops-kit:endpoint", cfg.endpoint_name)
    from ..nag import acknowledge

    acknowledge(stateful, pipeline, control, endpoint_name=cfg.endpoint_name,
                model_group=cfg.model_group)
    return Stacks(stateful, pipeline, control)
