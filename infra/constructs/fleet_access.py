"""The cross-account seams of a fleet, both sides built from the same names.

The registry account holds every model's package group, the ledger of versions and
promotions, and the artifacts (model files, baselines) under its key. An environment in
another account:
- receives the promotions to it: a rule in the registry account forwards
  `contract.promotion_event_pattern(env)` to the environment's default bus
  (`PromotionForwarding`), whose policy lets the registry account put events
  (`RegistryEventsPolicy`);
- reads versions and promotions through a role in the registry account (`RegistryAccess`,
  named `registry_access_role_name(env)`), which only that environment's control functions
  may assume (their roles are named after the environment's control stack);
- reads artifacts (SageMaker serving, the monitors' baselines) from the registry's artifact
  bucket, named `registry_bucket_name(...)`, through its bucket and key policies
  (`ArtifactStore.share_read`).
"""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct

from mlops_kit import contract

from ..config import StageConfig


def control_stack_name(environment: str) -> str:
    return f"MlopsKit-{environment}-Control"


def registry_access_role_name(environment: str) -> str:
    return f"MlopsKit-RegistryAccess-{environment}"


def registry_bucket_name(account: str, region: str) -> str:
    """The registry's artifact bucket: a fixed name, so another account's policies can name it
    (S3 bucket names are global: account and region make it unique)."""
    return f"mlops-kit-registry-{account}-{region}"


def registry_region(registry: StageConfig) -> str:
    return registry.region or Aws.REGION


def registry_account(registry: StageConfig) -> str:
    return registry.account or Aws.ACCOUNT_ID


def registry_arns(registry: StageConfig) -> dict[str, list[str]]:
    """What an environment's functions call on the registry, by contract resource: every group
    and version of the registry account's (a pattern: the fleet grows without the policy
    growing; the registry account holds the kit's groups only)."""
    arn = (f"arn:{Aws.PARTITION}:sagemaker:{registry_region(registry)}:"
           f"{registry_account(registry)}")
    return {contract.MODEL_GROUP: [f"{arn}:model-package-group/*"],
            contract.MODEL_PACKAGES: [f"{arn}:model-package/*/*"]}


class RegistryAccess(Construct):
    """In the registry account: the role `environment`'s control functions assume to read
    versions (SageMaker) and the ledger of versions and promotions (DynamoDB, its key)."""

    READS = ("sagemaker:DescribeModelPackageGroup", "sagemaker:DescribeModelPackage",
             "sagemaker:ListModelPackages")

    def __init__(self, scope: Construct, id: str, *, environment: str, account: str,
                 registry: StageConfig, ledger_table_arn: str, key_arn: str) -> None:
        super().__init__(scope, id)
        principal = iam.AccountPrincipal(account).with_conditions({"ArnLike": {
            "aws:PrincipalArn": f"arn:{Aws.PARTITION}:iam::{account}:role/"
                                f"{control_stack_name(environment)}-*"}})
        self.role = iam.Role(self, "Role", role_name=registry_access_role_name(environment),
                             assumed_by=principal,
                             description=f"mlops-kit: {environment}'s controllers read the "
                                         f"registry of record")
        arns = registry_arns(registry)
        self.role.add_to_policy(iam.PolicyStatement(
            sid="ReadVersions", actions=list(self.READS),
            resources=arns[contract.MODEL_GROUP] + arns[contract.MODEL_PACKAGES]))
        self.role.add_to_policy(iam.PolicyStatement(
            sid="ReadLedger", actions=["dynamodb:GetItem", "dynamodb:Query"],
            resources=[ledger_table_arn]))
        self.role.add_to_policy(iam.PolicyStatement(
            sid="LedgerKey", actions=["kms:Decrypt"], resources=[key_arn]))


class PromotionForwarding(Construct):
    """In the registry account: promotions to `environment` go to its account's default bus."""

    def __init__(self, scope: Construct, id: str, *, environment: str, target: StageConfig,
                 dlq=None) -> None:
        super().__init__(scope, id)
        pattern = contract.promotion_event_pattern(environment)
        bus = events.EventBus.from_event_bus_arn(
            self, "Bus", f"arn:{Aws.PARTITION}:events:{target.region or Aws.REGION}:"
                         f"{target.account}:event-bus/default")
        self.rule = events.Rule(
            self, "Rule", description=f"promotions to {environment} → its account's bus",
            event_pattern=events.EventPattern(source=pattern["source"],
                                              detail_type=pattern["detail-type"],
                                              detail=pattern["detail"]),
            targets=[targets.EventBus(bus, dead_letter_queue=dlq)])


class RegistryEventsPolicy(Construct):
    """In an environment's account: its default bus accepts the registry account's events."""

    def __init__(self, scope: Construct, id: str, *, registry: StageConfig) -> None:
        super().__init__(scope, id)
        self.policy = events.CfnEventBusPolicy(
            self, "Policy", statement_id=f"mlops-kit-registry-{registry.account}",
            event_bus_name="default", action="events:PutEvents",
            principal=registry.account)
