"""The kit's one retry helper: bounded exponential backoff around a call (standard library only).

What it is for: the retries only the kit can decide, on top of a single botocore call that
botocore has already retried for throttling and transient errors (`mlops_kit.aws.clients`): a
DynamoDB transaction cancelled by a conflict, an endpoint busy Updating, throttling that reached
the kit unretried. Each caller names what is worth another try with `retry_if`; everything
else surfaces at once.

Not tenacity, though the CLI's environment has it (through the SageMaker SDK): the Lambdas run
this code with the standard library, boto3 and the Powertools layer only, and a retry loop is
not worth a wheel in every function's bundle and its import on the cold-start path.
"""

from __future__ import annotations

import random
import time
from dataclasses import KW_ONLY, dataclass
from typing import Any, Callable, TypeVar

T = TypeVar("T")


def never(_: BaseException) -> bool:
    return False


@dataclass(eq=False)  # compared by identity, as a policy object, and hashable
class Backoff:
    """At most `max_attempts` calls, waiting `delay(n)` after the n-th failure: `base_delay`
    doubling up to `max_delay`, with jitter (a uniform draw in [½, 1] of it) unless
    `jitter=False`. `sleep` and `rng` are injectable for tests."""

    max_attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 5.0
    sleep: Callable[[float], None] = time.sleep
    rng: Callable[[], float] = random.random
    _: KW_ONLY
    jitter: bool = True
    retry_if: Callable[[BaseException], bool] = never

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("delays must satisfy 0 <= base_delay <= max_delay")

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number `attempt` (1-based)."""
        cap = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return cap * (0.5 + 0.5 * self.rng()) if self.jitter else cap

    def horizon(self) -> float:
        """The longest the retries wait in all before the last attempt fails (jitter at its
        upper bound): what a caller's deadline or lease must outlast."""
        return sum(min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
                   for attempt in range(1, self.max_attempts))

    def attempt(self, fn: Callable[..., T], *args: Any,
                retry_if: Callable[[BaseException], bool] | None = None,
                **kwargs: Any) -> tuple[T, int]:
        """`fn(*args, **kwargs)` and the number of attempts it took. An exception `retry_if`
        (default: the one given at construction) rejects, or the last attempt's, propagates."""
        worth_retrying = retry_if or self.retry_if
        attempt = 1
        while True:
            try:
                return fn(*args, **kwargs), attempt
            except Exception as exc:
                if attempt >= self.max_attempts or not worth_retrying(exc):
                    raise
            self.sleep(self.delay(attempt))
            attempt += 1

    def call(self, fn: Callable[..., T], *args: Any,
             retry_if: Callable[[BaseException], bool] | None = None, **kwargs: Any) -> T:
        return self.attempt(fn, *args, retry_if=retry_if, **kwargs)[0]
