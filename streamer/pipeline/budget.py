"""The memory budget: a byte-counting limiter with current and peak use.

All chunk buffers of all streams and regions together are accounted here.  A
producer ``acquire``s a part's size before it fills the buffer and the last
region to acknowledge that part ``release``s it, so the producer waits -- the
backpressure -- whenever the slowest live region is ``budget`` bytes behind.
"""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import anyio.from_thread
import anyio.lowlevel

from streamer.errors import ConfigError


class ByteBudget:
    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError("budget must be positive")
        self.limit = limit
        self.used = 0
        self.peak = 0
        self._changed = anyio.Event()
        self._thread = threading.get_ident()
        # The event loop's token, for releases from other threads (a buffer's
        # finalizer runs in whichever thread drops the last reference).
        self._token: anyio.lowlevel.EventLoopToken | None = None
        try:
            self._token = anyio.lowlevel.current_token()
        except RuntimeError:
            pass  # made outside an event loop (unit tests): single-threaded use

    async def acquire(self, n: int) -> None:
        if n > self.limit:
            raise ValueError(f"cannot hold {n} bytes in a budget of {self.limit}")
        while self.used + n > self.limit:
            await self.changed()
        self.used += n
        self.peak = max(self.peak, self.used)

    def release(self, n: int) -> None:
        """Give ``n`` bytes back; callable from any thread (buffer finalizers)."""
        if threading.get_ident() != self._thread and self._token is not None:
            try:
                anyio.from_thread.run_sync(self.release, n, token=self._token)
                return
            except anyio.RunFinishedError:
                pass  # the loop has ended: nobody waits any more, count it here
        if n > self.used:
            raise ValueError(f"releasing {n} bytes but only {self.used} are held")
        self.used -= n
        self.notify()

    def notify(self) -> None:
        """Wake every waiter to look again (bytes released, or a buffer pooled)."""
        self._changed.set()
        self._changed = anyio.Event()

    async def changed(self) -> None:
        """Wait until some bytes are released."""
        await self._changed.wait()


MEMINFO = Path("/proc/meminfo")


def available_memory(meminfo: str) -> int | None:
    """MemAvailable from /proc/meminfo's text, in bytes (None if absent)."""
    for line in meminfo.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def check_budget_fits(limit: int, meminfo: Path = MEMINFO) -> None:
    """Refuse (exit 2, before anything starts) a memory budget larger than the
    memory this machine has available: the budget would not bound anything,
    and the backup would meet the OOM killer instead of its backpressure."""
    try:
        available = available_memory(meminfo.read_text())
    except OSError:
        return  # not Linux, or no /proc: nothing to check against
    if available is not None and limit > available:
        raise ConfigError(
            f"STREAMER_MEMORY_BUDGET is {limit / 2**20:.0f} MiB but this machine has only "
            f"{available / 2**20:.0f} MiB available",
            "lower STREAMER_MEMORY_BUDGET; the default is 256MiB")

