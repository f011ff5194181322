"""boto3 clients in another account, with the credentials of a role assumed there: a fleet
environment's controllers read the registry account's package groups and version ledger this
way (`mlops_kit.homes.aws.registry`).

The credentials are botocore's own refreshable kind (`DeferredRefreshableCredentials`): the
first call assumes the role, and botocore assumes it again before the credentials expire
(15 minutes before, advisory; 10, mandatory), so a warm Lambda container that outlives one
session keeps working without the kit tracking expiry itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

from botocore.credentials import (CredentialProvider, CredentialResolver,
                                  DeferredRefreshableCredentials)

from mlops_kit.aws.clients import DEFAULT_CONFIG, default_client

ASSUME_ROLE = "assume-role"
"""botocore's name for credentials obtained with sts:AssumeRole."""


class _Assumed(CredentialProvider):
    """The only provider of the role's session: the standard chain (environment, the
    function's own role) is not consulted, so a client never silently runs as the caller."""

    METHOD = ASSUME_ROLE
    CANONICAL_NAME = "custom-mlops-kit-assumed-role"  # botocore asks others' to be custom-*

    def __init__(self, credentials: DeferredRefreshableCredentials):
        super().__init__()
        self._credentials = credentials

    def load(self) -> DeferredRefreshableCredentials:
        return self._credentials


class AssumedRoleClients:
    """`service -> boto3 client` of the account of `role_arn` (a `Clients`-compatible
    factory), each client made once, with the kit's retry config (`clients.DEFAULT_CONFIG`).

    `sts_client`: the base client that calls AssumeRole (default: the standard credential
    chain's, i.e. the function's own role); `session_name` names the caller in the registry
    account's CloudTrail. `now`: botocore's clock, for tests that move past the expiry."""

    def __init__(self, role_arn: str, session_name: str, *, sts_client: Any = None,
                 now: Callable[[], datetime] | None = None):
        import boto3
        import botocore.session

        self.role_arn, self.session_name = role_arn, session_name
        self._sts = sts_client
        self._made: dict[str, Any] = {}
        refreshing = dict(time_fetcher=now) if now is not None else {}
        self.credentials = DeferredRefreshableCredentials(self._assume, ASSUME_ROLE,
                                                          **refreshing)
        session = botocore.session.Session()
        session.register_component("credential_provider",
                                   CredentialResolver([_Assumed(self.credentials)]))
        self._session = boto3.Session(botocore_session=session)  # the standard region chain

    def __call__(self, service: str) -> Any:
        if service not in self._made:
            self._made[service] = self._session.client(service, config=DEFAULT_CONFIG)
        return self._made[service]

    def _assume(self) -> dict[str, Any]:
        """One AssumeRole, as the metadata `RefreshableCredentials` refreshes from."""
        if self._sts is None:
            self._sts = default_client("sts")
        granted = self._sts.assume_role(RoleArn=self.role_arn,
                                        RoleSessionName=self.session_name)["Credentials"]
        return {"access_key": granted["AccessKeyId"], "secret_key": granted["SecretAccessKey"],
                "token": granted["SessionToken"],
                "expiry_time": granted["Expiration"].isoformat()}
