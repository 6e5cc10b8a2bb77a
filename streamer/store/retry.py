"""The one retry policy: how often a store request is tried, and how long to wait between.

Every store runs its requests through ``retrying``: the only retry loop of the
store layer.  A caller that needs a different patience (the lock, the catalog's
quick listings) passes its own ``RetryPolicy`` per call, so one store per
region serves a whole run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

import anyio

from streamer.errors import StoreFailure

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int) -> float:
        """Delay before attempt ``attempt + 1`` (attempt counts from 1)."""
        return float(min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1)))

    def tries(self, attempts: int) -> RetryPolicy:
        """The same delays, ``attempts`` tries."""
        return replace(self, max_attempts=attempts)


async def retrying(policy: RetryPolicy, call: Callable[[], Awaitable[T]]) -> T:
    """``call`` until it succeeds, fails for good (a ``StoreFailure`` that is not
    transient), or the policy's attempts are spent; backoff between tries."""
    tries = max(1, policy.max_attempts)
    for attempt in range(1, tries + 1):
        try:
            return await call()
        except StoreFailure as failure:
            if not failure.transient or attempt == tries:
                raise
        await anyio.sleep(policy.delay(attempt))
    raise AssertionError("unreachable")
