"""STREAMER_BWLIMIT's arithmetic: one token bucket shared fairly by the regions (pure).

A token is a byte.  The bucket fills at ``rate`` bytes per second up to
``capacity`` and starts empty, so by any moment ``t`` after it was made it has
granted at most ``rate * t`` bytes: no burst at the start, and after an idle
spell at most ``capacity``.  Senders (a part body being written, chunk by
chunk: store/throttle.py) ask for a chunk at a time; the asks wait in one
queue per *flow* (a region), and the flows take turns: the flow whose turn it
is gets its oldest ask granted as soon as the bucket holds enough, then goes
to the back of the rotation.  So every region that is sending gets the same
share; a region with nothing to send (slow, or waiting on its server) is not
in the rotation and its share goes to the others; none waits longer than one
round of the others' chunks.  See docs/ARCHITECTURE.md (the bandwidth limit).

No clock is read here: every call takes ``now`` (seconds, monotonic), so the
rules are tested with a fake clock (tests/store/test_bandwidth.py).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

MIN_CHUNK = 16 * 1024
MAX_CHUNK = 1024 * 1024
CHUNKS_PER_SECOND = 32  # grants per second at most, whatever the rate
SLACK_SECONDS = 0.125  # a late waiter still finds the tokens it was due


def chunk_size(rate: float) -> int:
    """The bytes one ask covers at ``rate``: small enough that a part is sent
    smoothly, not in bursts (a 1 MiB/s limit sends 32 KiB at a time), large
    enough that a fast limit is not all bookkeeping."""
    return int(min(MAX_CHUNK, max(MIN_CHUNK, rate / CHUNKS_PER_SECOND)))


def capacity_for(rate: float) -> float:
    """The bucket's capacity: two chunks, or an eighth of a second of tokens.

    A waiter that wakes a little late must still find the tokens that
    accrued meanwhile, or the rate held would fall short of the limit."""
    return max(2.0 * chunk_size(rate), rate * SLACK_SECONDS)


@dataclass(eq=False)
class Ticket:
    """One ask: ``amount`` bytes for ``flow``, waiting until granted or cancelled."""

    flow: int
    amount: int
    granted: bool = False


@dataclass
class FairBucket:
    """The token bucket and the rotation of flows waiting on it (see the module docstring)."""

    rate: float
    now: float
    capacity: float = 0.0
    tokens: float = 0.0
    queues: dict[int, deque[Ticket]] = field(default_factory=dict)
    turns: deque[int] = field(default_factory=deque)  # flows with asks, whose turn first

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError("rate must be positive")
        self.capacity = self.capacity or capacity_for(self.rate)

    def refill(self, now: float) -> None:
        """Add the tokens accrued since the last call (a clock going back adds none)."""
        if now > self.now:
            self.tokens = min(self.capacity, self.tokens + (now - self.now) * self.rate)
            self.now = now

    def ask(self, flow: int, amount: int) -> Ticket:
        """Queue an ask of ``amount`` bytes (at most the capacity) for ``flow``."""
        if not 0 < amount <= self.capacity:
            raise ValueError(f"ask of {amount} bytes outside 1..{self.capacity:.0f}")
        ticket = Ticket(flow, amount)
        queue = self.queues.setdefault(flow, deque())
        if not queue:
            self.turns.append(flow)
        queue.append(ticket)
        return ticket

    def head(self) -> Ticket | None:
        """The ask whose turn it is: the oldest of the flow at the front."""
        return self.queues[self.turns[0]][0] if self.turns else None

    def poll(self, ticket: Ticket, now: float) -> float:
        """Try to grant ``ticket``: 0.0 if it is granted now (its tokens taken),
        else the seconds until it could be (``math.inf``: not its turn yet)."""
        if ticket.granted:
            return 0.0
        if ticket is not self.head():
            return math.inf
        self.refill(now)
        if self.tokens < ticket.amount:
            return (ticket.amount - self.tokens) / self.rate
        self.tokens -= ticket.amount
        ticket.granted = True
        self._remove(ticket)
        return 0.0

    def cancel(self, ticket: Ticket) -> None:
        """Withdraw an ask that was not granted (its sender gave up)."""
        if not ticket.granted:
            self._remove(ticket)

    def _remove(self, ticket: Ticket) -> None:
        queue = self.queues.get(ticket.flow)
        if queue is None or ticket not in queue:
            return
        was_front = self.turns[0] == ticket.flow
        queue.remove(ticket)
        if not queue:
            self.turns.remove(ticket.flow)
        elif ticket.granted and was_front:
            self.turns.rotate(-1)  # served: the next flow's turn
