"""The adaptive compression level (``STREAMER_COMPRESSION_LEVEL=auto``), I/O-free.

Like ``zstd --adapt``, but driven by streamer's own backpressure: when the
producer is ahead of the regions (the network is the bottleneck) the level
goes up, since spare CPU buys fewer bytes to send; when the regions wait for
parts (the CPU is the bottleneck) it comes down.  See docs/ARCHITECTURE.md,
"Compression".

Two pieces, both pure:

* ``pace_state`` and ``PaceMeter``: a clock-driven account, like the lag
  limit's (lag.py).  The fan-out tells the meter, whenever the producers'
  waiting or a region's outstanding parts change, which state the run is in:
  ``AHEAD`` (a producer waits for a free buffer, or the slowest live region
  has another part waiting beside the one it is sending), ``STARVED`` (no
  live region has anything to send: they all wait for the producer), or
  neither (one part each: the producer just keeps up).  Counted in parts, not
  request slots: one request can fill a slow link.  The time until the next observation is credited
  to that state; ``take`` closes a window.
* ``LevelController``: one window in, the next level out, with hysteresis:
  it lowers at once when the regions starved for a good part of the window
  (two steps when most of it), lets the next window pass (the change's
  effect is what it judges after that), and keeps below the level it left
  for ``CEILING_WINDOWS``; it raises one step per window once ``RAISE_AFTER``
  windows in a row were spent mostly ahead with no starving.  Raising does
  not wait for its effect: while the regions still have parts queued the
  raise costs no upload time, and the first starving window undoes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

WINDOW = 0.5  # seconds per decision
AHEAD_PARTS = 2  # parts outstanding in the slowest region that make the producer ahead
LOWER_AT = 0.25  # share of a window starved that lowers the level
LOWER_TWICE_AT = 0.75  # ... by two steps
RAISE_AT = 0.75  # share of a window ahead that counts towards raising it
QUIET = 0.05  # most starving a window may show and still count towards raising
RAISE_AFTER = 2  # windows ahead in a row before one step up
CEILING_WINDOWS = 20  # windows a level left for starving is not tried again


class Pace(Enum):
    AHEAD = "ahead"
    STARVED = "starved"


def pace_state(producers_waiting: int, outstanding: Iterable[int], started: bool) -> Pace | None:
    """Who waits on whom right now.

    ``outstanding``: each live region's parts queued or in flight;
    ``started``: a part has been queued (before that, the regions wait on the
    source's start, not on the compressor)."""
    if not started:
        return None
    deepest = max(outstanding, default=0)
    if producers_waiting > 0 or deepest >= AHEAD_PARTS:
        return Pace.AHEAD
    if deepest == 0:
        return Pace.STARVED
    return None


@dataclass(frozen=True)
class Window:
    """Seconds of one window, and how many of them were spent in each state."""

    seconds: float
    ahead: float = 0.0
    starved: float = 0.0


@dataclass
class PaceMeter:
    """Seconds spent ahead and starved since the last ``take``; times are
    monotonic seconds supplied by the caller."""

    _state: Pace | None = None
    _since: float | None = None
    _opened: float | None = None
    _spent: dict[Pace, float] = field(default_factory=dict)

    def observe(self, now: float, state: Pace | None) -> None:
        """From ``now`` on the run is in ``state``."""
        self._credit(now)
        self._state = state

    def take(self, now: float) -> Window:
        """The window since the last take (or the first observation), and start a new one."""
        self._credit(now)
        opened = self._opened if self._opened is not None else now
        window = Window(max(0.0, now - opened), self._spent.get(Pace.AHEAD, 0.0),
                        self._spent.get(Pace.STARVED, 0.0))
        self._spent, self._opened = {}, now
        return window

    def _credit(self, now: float) -> None:
        if self._since is not None and self._state is not None:
            self._spent[self._state] = self._spent.get(self._state, 0.0) + max(0.0, now - self._since)
        if self._opened is None:
            self._opened = now
        self._since = now


@dataclass
class LevelController:
    """The next level from each window, within ``low``..``high``."""

    level: int
    low: int
    high: int
    _streak: int = 0  # windows ahead in a row
    _settle: int = 0  # windows still to let pass after a change
    _ceiling: int = 0  # a level left for starving ...
    _ceiling_left: int = 0  # ... is not tried for this many more windows

    def decide(self, window: Window) -> int:
        if window.seconds <= 0:
            return self.level
        if self._ceiling_left:
            self._ceiling_left -= 1
        if self._settle:
            self._settle -= 1
            return self.level
        ahead, starved = window.ahead / window.seconds, window.starved / window.seconds
        if starved >= LOWER_AT:
            self._streak = 0
            lower = max(self.low, self.level - (2 if starved >= LOWER_TWICE_AT else 1))
            if lower < self.level:
                self._ceiling, self._ceiling_left = self.level, CEILING_WINDOWS
                self.level, self._settle = lower, 1
        elif ahead >= RAISE_AT and starved <= QUIET:
            self._streak += 1
            blocked = self._ceiling_left and self.level + 1 >= self._ceiling
            if self._streak >= RAISE_AFTER and self.level < self.high and not blocked:
                self.level += 1
        else:
            self._streak = 0
        return self.level
