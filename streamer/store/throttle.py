"""STREAMER_BWLIMIT at work: the shared bucket, awaited chunk by chunk as part bodies are sent.

One ``Throttle`` serves every region of a run (store/s3.py ``open_stores``
makes it); each region's client gets a ``Meter`` for its own flow, and its
part body (store/s3_hooks.py ``PartPayload``) is written through the meter a
chunk at a time, each chunk waiting for its tokens first.  So an 8 MiB part
at 1 MiB/s leaves as 32 KiB every 1/32 s, not in one burst, and every byte
sent to any region, retries included, is counted.  The rules (fair turns,
the bucket) are pure, in store/bandwidth.py; this module only sleeps and
wakes.  See docs/ARCHITECTURE.md (the bandwidth limit).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable

import anyio

from streamer.store.bandwidth import FairBucket, Ticket, chunk_size


class Throttle:
    """The bucket of one run, shared by every region (flow = region index)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.chunk = chunk_size(rate)
        self._clock = clock
        self._bucket = FairBucket(rate, clock())
        self._wakers: dict[Ticket, anyio.Event] = {}
        self.granted: dict[int, int] = {}  # bytes per flow, for the bench and the tests

    def meter(self, flow: int) -> Meter:
        return Meter(self, flow)

    async def take(self, flow: int, amount: int) -> None:
        """Wait until ``amount`` bytes (at most ``chunk``) may be sent for ``flow``."""
        ticket = self._bucket.ask(flow, amount)
        self._wakers[ticket] = anyio.Event()
        try:
            while True:
                wait = self._bucket.poll(ticket, self._clock())
                if wait == 0.0:
                    self.granted[flow] = self.granted.get(flow, 0) + amount
                    return
                if wait == math.inf:
                    await self._wakers[ticket].wait()
                    self._wakers[ticket] = anyio.Event()
                else:
                    await anyio.sleep(wait)
        finally:
            del self._wakers[ticket]
            self._bucket.cancel(ticket)  # a no-op once granted
            head = self._bucket.head()
            if head is not None:
                self._wakers[head].set()  # its turn now (or still): let it look


class Meter:
    """One region's view of the run's ``Throttle``."""

    def __init__(self, throttle: Throttle, flow: int) -> None:
        self.throttle = throttle
        self.flow = flow

    async def send(self, data: memoryview, write: Callable[[memoryview], Awaitable[None]]) -> None:
        """Write ``data`` through ``write`` a chunk at a time, each chunk paid for first."""
        step = self.throttle.chunk
        for start in range(0, len(data), step):
            piece = data[start:start + step]
            await self.throttle.take(self.flow, len(piece))
            await write(piece)
