"""One Lambda of the kit, as every one is made: its own role and log group, Python 3.12 on the
pinned Powertools layer, active tracing, the code bundled from functions/<name>/; and the grants
its contract states (`mlops_kit.contract`), mapped to the resources of the stack it is in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from mlops_kit import contract

from ..config import StageConfig
from .bundling import function_code

# Pinned to the Powertools release the code is tested with (requirements.lock): the public SSM
# parameter per release resolves to that release's layer ARN in the deploying region, so the
# layer version cannot float between deploys. Change both together.
POWERTOOLS_VERSION = "3.37.0"
POWERTOOLS_LAYER_PARAMETER = f"/aws/service/powertools/python/x86_64/python3.12/{POWERTOOLS_VERSION}"


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    memory: int
    timeout: Duration
    requirements: str | None = None
    """A requirements file under the requirements folder, bundled with the code."""

    @property
    def ident(self) -> str:
        return "".join(part.title() for part in self.name.split("_"))


def powertools_layer(scope: Construct) -> lambda_.ILayerVersion:
    return lambda_.LayerVersion.from_layer_version_arn(
        scope, "Powertools", ssm.StringParameter.value_for_string_parameter(
            scope, POWERTOOLS_LAYER_PARAMETER))


def kit_function(scope: Construct, spec: FunctionSpec, cfg: StageConfig, *,
                 layer: lambda_.ILayerVersion, functions_dir: Path, requirements_dir: Path,
                 environment: dict[str, str], extra_files: dict[str, bytes] | None = None,
                 **options: Any) -> tuple[lambda_.Function, iam.Role]:
    """The function `<Ident>` with `<Ident>Role` and `<Ident>Logs` in `scope`; `options` are
    further `lambda_.Function` properties (asynchronous retries, reserved concurrency)."""
    ident = spec.ident
    role = iam.Role(scope, f"{ident}Role",
                    assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                    description=f"mlops-kit {spec.name} Lambda")
    log_group = logs.LogGroup(
        scope, f"{ident}Logs", retention=retention(cfg.log_retention_days),
        removal_policy=RemovalPolicy.RETAIN if cfg.retain else RemovalPolicy.DESTROY)
    reqs = requirements_dir / spec.requirements if spec.requirements else None
    function = lambda_.Function(
        scope, ident, runtime=lambda_.Runtime.PYTHON_3_12,
        architecture=lambda_.Architecture.X86_64, handler="handler.lambda_handler",
        code=function_code(functions_dir, spec.name, reqs, extra_files), role=role,
        memory_size=spec.memory, timeout=spec.timeout, layers=[layer],
        environment=environment, tracing=lambda_.Tracing.ACTIVE, log_group=log_group,
        description=f"mlops-kit {spec.name} ({cfg.stage})", **options)
    log_group.grant_write(role)
    return function, role


def grant_contract(name: str, role: iam.Role, resources: Callable[[str], list[str]]) -> None:
    """Every action `name`'s contract states, on `resources(contract key)`, one statement per
    key (a key with no resources here is skipped: e.g. no registry role in one account)."""
    for key, actions in sorted(contract.function(name).grants().items()):
        arns = resources(key)
        if not arns:
            continue
        sid = "".join(word.title() for word in key.replace("*", "any").split("-"))
        conditions = None
        if key == contract.SERVING_ROLE:
            conditions = {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
        role.add_to_policy(iam.PolicyStatement(
            sid=sid, actions=list(actions), resources=arns, conditions=conditions))


def retention(days: int) -> logs.RetentionDays:
    """The shortest CloudWatch Logs retention of at least `days`."""
    R = logs.RetentionDays
    steps = [(1, R.ONE_DAY), (3, R.THREE_DAYS), (5, R.FIVE_DAYS), (7, R.ONE_WEEK),
             (14, R.TWO_WEEKS), (30, R.ONE_MONTH), (60, R.TWO_MONTHS), (90, R.THREE_MONTHS),
             (180, R.SIX_MONTHS), (365, R.ONE_YEAR), (731, R.TWO_YEARS), (1827, R.FIVE_YEARS),
             (3653, R.TEN_YEARS)]
    return next((r for d, r in steps if d >= days), R.TEN_YEARS)
