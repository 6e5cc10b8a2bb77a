"""The one retry policy: how often a store request is tried, and how long to wait between."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int) -> float:
        """Delay before attempt ``attempt + 1`` (attempt counts from 1)."""
        return float(min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1)))
