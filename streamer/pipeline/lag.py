"""The lag limit: how long the producer has waited on one region alone (I/O-free).

The memory budget is shared, so the slowest live region sets the pace: the
producer waits for a buffer until that region acknowledges a part.  For a
region that is briefly slow that is right.  A region that keeps the producer
waiting while every other region has nothing left to send holds the whole
run back; past ``STREAMER_LAG_LIMIT`` seconds of that, summed over the run,
the fan-out drops it (it is healed afterwards).  See docs/RELIABILITY.md.

``LagMeter`` is a clock-driven account: the fan-out tells it, whenever what
the producer waits on may have changed, which region it now waits on alone
(``alone_region``); the time until the next observation is credited to that
region.  The sum is the time that region alone added to the run's wall time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


def alone_region(producers_waiting: int, unqueued_parts: int,
                 busy: Iterable[int], live: int) -> int | None:
    """The region the producer waits on alone, or None.

    ``producers_waiting``: producers blocked on the budget for a buffer;
    ``unqueued_parts``: parts made but not yet sealed and queued (they are
    about to give every region work); ``busy``: the live regions with parts
    queued or in flight; ``live``: how many regions are live.  With a single
    live region nobody else is held back, so nobody is alone."""
    if producers_waiting <= 0 or unqueued_parts > 0 or live < 2:
        return None
    regions = list(busy)
    return regions[0] if len(regions) == 1 else None


@dataclass
class LagMeter:
    """Seconds the producer waited on each region alone, over one run.

    ``limit``: seconds allowed per region (0: no limit, nothing is ever over).
    Times are monotonic seconds supplied by the caller (``time.monotonic``)."""

    limit: float
    waited: dict[int, float] = field(default_factory=dict)
    _alone: int | None = None
    _since: float = 0.0

    def observe(self, now: float, alone: int | None) -> None:
        """From ``now`` on the producer waits on ``alone`` alone (None: on no single region)."""
        if self._alone is not None:
            self.waited[self._alone] = self.waited_on(self._alone, now)
        self._alone, self._since = alone, now

    def waited_on(self, region: int, now: float) -> float:
        """Seconds waited on ``region`` alone until ``now`` (the running stretch included)."""
        total = self.waited.get(region, 0.0)
        if region == self._alone:
            total += max(0.0, now - self._since)
        return total

    def over(self, now: float) -> list[int]:
        """The regions the producer has waited on alone for longer than the limit."""
        if self.limit <= 0:
            return []
        regions = set(self.waited)
        if self._alone is not None:
            regions.add(self._alone)
        return sorted(r for r in regions if self.waited_on(r, now) > self.limit)
