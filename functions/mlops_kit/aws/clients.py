"""boto3 clients created lazily with the standard credential/region chain, and their retries.

Adapters take a client in their constructor (tests pass a moto-backed or Stubber-wrapped one);
when none is given they call `default_client(service)` on first use, not at import. Every client
the kit builds comes from here, with botocore's standard retry mode.

Retries, once per layer: botocore retries each call for throttling and transient errors (5xx,
timeouts) with its own jittered backoff and retry quota. The kit's `Backoff` (`mlops_kit.retry`)
retries only what botocore cannot know is worth another try (a cancelled transaction, a busy
endpoint) and throttling that reached the kit unretried (`unretried_throttling`: a client built
elsewhere without retries, or an error raised above botocore); an error botocore has already
retried surfaces. So attempts add up, they never multiply (before: 4 botocore tries under each
of 5 kit tries, 20 calls for one throttled operation).
"""

from __future__ import annotations

import random
import time
from typing import Any, Callable, TypeVar

from botocore.config import Config
from botocore.exceptions import ClientError

from mlops_kit import retry

T = TypeVar("T")

THROTTLING_CODES = frozenset({
    "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
    "ProvisionedThroughputExceededException", "RequestThrottled", "SlowDown",
})

BOTOCORE_RETRIES = {"mode": "standard", "total_max_attempts": 4}
"""Per call: the first try and three retries (botocore's standard mode; its `max_attempts`
counts retries, `total_max_attempts` says the total plainly)."""
DEFAULT_CONFIG = Config(retries=BOTOCORE_RETRIES, user_agent_extra="mlops-kit")


def default_client(service: str, config: Config | None = None, *,
                   region: str | None = None) -> Any:
    """A boto3 client with the kit's config (region: the standard chain unless given)."""
    import boto3

    return boto3.client(service, region_name=region, config=config or DEFAULT_CONFIG)


class LazyClient:
    """A client slot: the injected client, or a default one created on first use."""

    def __init__(self, service: str, client: Any = None):
        self.service = service
        self._client = client

    def __call__(self) -> Any:
        if self._client is None:
            self._client = default_client(self.service)
        return self._client


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def error_message(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Message", ""))
    return str(exc)


def is_throttling(exc: BaseException) -> bool:
    return error_code(exc) in THROTTLING_CODES


def botocore_retried(exc: BaseException) -> bool:
    """botocore already retried this call (its response counts the retries it made)."""
    if not isinstance(exc, ClientError):
        return False
    return int(exc.response.get("ResponseMetadata", {}).get("RetryAttempts") or 0) > 0


def unretried_throttling(exc: BaseException) -> bool:
    """Throttling that botocore has not retried: worth the kit's own backoff."""
    return is_throttling(exc) and not botocore_retried(exc)


class Backoff(retry.Backoff):
    """The kit's backoff for AWS calls: it retries a `ClientError` that `retry_if` accepts,
    by default `unretried_throttling`; any other exception surfaces at once."""

    def __init__(self, max_attempts: int = 5, base_delay: float = 0.2, max_delay: float = 5.0,
                 sleep: Callable[[float], None] = time.sleep,
                 rng: Callable[[], float] = random.random):
        super().__init__(max_attempts, base_delay, max_delay, sleep, rng,
                         retry_if=unretried_throttling)

    def attempt(self, fn: Callable[..., T], *args: Any,
                retry_if: Callable[[BaseException], bool] | None = None,
                **kwargs: Any) -> tuple[T, int]:
        accepts = retry_if or self.retry_if
        return super().attempt(fn, *args, **kwargs,
                               retry_if=lambda exc: isinstance(exc, ClientError) and accepts(exc))
