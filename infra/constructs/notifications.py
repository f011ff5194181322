"""Notifications: the SNS topic for rollbacks and alerts (KMS-encrypted, SSL-only)."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct


class Notifications(Construct):
    def __init__(self, scope: Construct, id: str, *, key: kms.IKey,
                 email: str | None = None, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, id)
        self.topic = sns.Topic(self, "Topic", master_key=key, enforce_ssl=True,
                               display_name="mlops-kit alerts")
        self.topic.apply_removal_policy(removal_policy)
        if email:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))

    def grant_publish(self, grantee: iam.IGrantable) -> None:
        """sns:Publish on this topic only (kms via the key grant of the stack)."""
        iam.Grant.add_to_principal(grantee=grantee, actions=["sns:Publish"],
                                   resource_arns=[self.topic.topic_arn])
