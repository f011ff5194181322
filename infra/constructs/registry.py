"""ModelRegistry (SageMaker model package group) and the DynamoDB tables next to it."""

from __future__ import annotations


from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

# Mirrors functions/mlops_kit/aws/ledger.py (LEDGER_TABLE, IAM_ACTIONS); infra never imports
# runtime code, tests/infra checks both stay equal.
LEDGER_PARTITION_KEY = "pk"
LEDGER_SORT_KEY = "sk"
LEDGER_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                  "dynamodb:Query")
IDEMPOTENCY_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                       "dynamodb:DeleteItem")
"""What Powertools' DynamoDBPersistenceLayer calls (its documented IAM policy)."""


class ModelRegistry(Construct):
    """The model package group the pipeline registers into; with `reader_accounts`, a resource
    policy lets those accounts describe and list its versions (e.g. a prod account deploying a
    dev-trained model)."""

    def __init__(self, scope: Construct, id: str, *, model_group: str,
                 reader_accounts: tuple[str, ...] = ()) -> None:
        super().__init__(scope, id)
        self.model_group = model_group
        region, account = Aws.REGION, Aws.ACCOUNT_ID
        self.group_arn = f"arn:{Aws.PARTITION}:sagemaker:{region}:{account}:model-package-group/{model_group}"
        # SageMaker lower-cases the group name in version ARNs.
        self.packages_arn = (f"arn:{Aws.PARTITION}:sagemaker:{region}:{account}:model-package/"
                             f"{model_group.lower()}/*")
        policy = None
        if reader_accounts:
            policy = {"Version": "2012-10-17", "Statement": [{
                "Sid": "CrossAccountRead", "Effect": "Allow",
                "Principal": {"AWS": [f"arn:aws:iam::{a}:root" for a in reader_accounts]},
                "Action": ["sagemaker:DescribeModelPackageGroup", "sagemaker:DescribeModelPackage",
                           "sagemaker:ListModelPackages"],
                "Resource": [self.group_arn, self.packages_arn]}]}
        self.group = sagemaker.CfnModelPackageGroup(
            self, "Group", model_package_group_name=model_group,
            model_package_group_description="mlops-kit: versions registered by the training pipeline",
            model_package_group_policy=policy)
        self.group.apply_removal_policy(RemovalPolicy.RETAIN)

    def package_resources(self) -> list[str]:
        return [self.group_arn, self.packages_arn]


class Tables(Construct):
    """The ledger (audit trail, version records, deployment history; keys as in
    mlops_kit/aws/ledger.py; always retained) and the Powertools idempotency table (key `id`,
    TTL `expiration`)."""

    def __init__(self, scope: Construct, id: str, *, key: kms.IKey,
                 removal_policy: RemovalPolicy, ledger_table_name: str | None = None) -> None:
        """`ledger_table_name`: a fixed name (a fleet's registry ledger, which other accounts'
        roles name); None: CloudFormation names it."""
        super().__init__(scope, id)
        common = dict(billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
                      encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED, encryption_key=key,
                      point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                          point_in_time_recovery_enabled=True))
        self.ledger = dynamodb.Table(
            self, "Ledger", table_name=ledger_table_name,
            partition_key=dynamodb.Attribute(name=LEDGER_PARTITION_KEY,
                                             type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=LEDGER_SORT_KEY, type=dynamodb.AttributeType.STRING),
            removal_policy=RemovalPolicy.RETAIN, deletion_protection=True, **common)
        self.idempotency = dynamodb.Table(
            self, "Idempotency",
            partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
            time_to_live_attribute="expiration", removal_policy=removal_policy, **common)

    def grant_ledger(self, grantee: iam.IGrantable) -> None:
        iam.Grant.add_to_principal(grantee=grantee, actions=list(LEDGER_ACTIONS),
                                   resource_arns=[self.ledger.table_arn])

    def grant_ledger_read(self, grantee: iam.IGrantable) -> None:
        iam.Grant.add_to_principal(grantee=grantee, actions=["dynamodb:GetItem", "dynamodb:Query"],
                                   resource_arns=[self.ledger.table_arn])

    def grant_idempotency(self, grantee: iam.IGrantable) -> None:
        iam.Grant.add_to_principal(grantee=grantee, actions=list(IDEMPOTENCY_ACTIONS),
                                   resource_arns=[self.idempotency.table_arn])
