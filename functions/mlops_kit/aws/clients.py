"""boto3 clients created lazily with the standard credential/region chain, and bounded retries.

Adapters take a client in their constructor (tests pass a moto-backed or Stubber-wrapped one);
when none is given they call `default_client(service)` on first use, not at import.
"""

from __future__ import annotations

import random
import time
from typing import Any, Callable, TypeVar

from botocore.config import Config
from botocore.exceptions import ClientError

T = TypeVar("T")

THROTTLING_CODES = frozenset({
    "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
    "ProvisionedThroughputExceededException", "RequestThrottled", "SlowDown",
})

DEFAULT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3},
                        user_agent_extra="mlops-kit")
"""botocore's own retries stay modest; adapters add their own bounded backoff on throttling."""


def default_client(service: str, config: Config | None = None) -> Any:
    import boto3

    return boto3.client(service, config=config or DEFAULT_CONFIG)


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


class Backoff:
    """Bounded exponential backoff with full jitter; `sleep` is injectable for tests."""

    def __init__(self, max_attempts: int = 5, base_delay: float = 0.2, max_delay: float = 5.0,
                 sleep: Callable[[float], None] = time.sleep,
                 rng: Callable[[], float] = random.random):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.sleep = sleep
        self.rng = rng

    def delay(self, attempt: int) -> float:
        """Delay before retry number `attempt` (1-based): full jitter under a capped exponential."""
        cap = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return cap * (0.5 + 0.5 * self.rng())

    def call(self, fn: Callable[..., T], *args: Any,
             retry_if: Callable[[BaseException], bool] = is_throttling, **kwargs: Any) -> T:
        attempt = 1
        while True:
            try:
                return fn(*args, **kwargs)
            except ClientError as exc:
                if attempt >= self.max_attempts or not retry_if(exc):
                    raise
                self.sleep(self.delay(attempt))
                attempt += 1
