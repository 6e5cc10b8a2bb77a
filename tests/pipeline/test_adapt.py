"""Unit tests for the adaptive compression level (pipeline/adapt.py): a fake clock, no I/O."""

from __future__ import annotations

from streamer.codec import auto_high, auto_threads, compressor_reserve, context_size
from streamer.pipeline.adapt import (
    CEILING_WINDOWS,
    LevelController,
    Pace,
    PaceMeter,
    Window,
    pace_state,
)

AHEAD = Window(0.5, ahead=0.5)
STARVED = Window(0.5, starved=0.5)
HALF_STARVED = Window(0.5, starved=0.2)
BALANCED = Window(0.5)


def test_pace_state_says_who_waits_on_whom() -> None:
    assert pace_state(1, [0, 0, 0], started=True) is Pace.AHEAD  # producer waits for a buffer
    assert pace_state(0, [8, 2, 1], started=True) is Pace.AHEAD  # the slowest has a backlog
    assert pace_state(0, [2, 1, 1], started=True) is Pace.AHEAD  # a part waits beside the one sent
    assert pace_state(0, [0, 0, 0], started=True) is Pace.STARVED  # nobody has anything to send
    assert pace_state(0, [1, 1, 0], started=True) is None  # one part each: just keeping up
    assert pace_state(0, [0, 0, 0], started=False) is None  # no part yet: the source is starting
    assert pace_state(0, [], started=True) is Pace.STARVED


def test_meter_credits_each_stretch_to_its_state_and_windows_restart() -> None:
    meter = PaceMeter()
    meter.observe(10.0, Pace.AHEAD)
    meter.observe(10.3, None)
    meter.observe(10.4, Pace.STARVED)
    window = meter.take(11.0)  # 0.6 s of starving runs until the take
    assert (window.seconds, round(window.ahead, 6), round(window.starved, 6)) == (1.0, 0.3, 0.6)
    window = meter.take(11.5)  # still starved: the running state carries over
    assert (window.seconds, window.ahead, window.starved) == (0.5, 0.0, 0.5)


def test_ahead_raises_after_two_windows_then_one_step_per_window() -> None:
    c = LevelController(level=3, low=1, high=9)
    assert c.decide(AHEAD) == 3  # one window ahead is not yet a trend
    assert [c.decide(AHEAD) for _ in range(4)] == [4, 5, 6, 7]
    assert c.decide(BALANCED) == 7  # the streak ends
    assert [c.decide(AHEAD) for _ in range(2)] == [7, 8]


def test_starving_lowers_at_once_and_by_two_when_severe() -> None:
    c = LevelController(level=6, low=1, high=9)
    assert c.decide(HALF_STARVED) == 5
    c.decide(BALANCED)  # settling
    assert c.decide(STARVED) == 3


def test_never_outside_the_bounds() -> None:
    c = LevelController(level=2, low=1, high=3)
    assert [c.decide(STARVED) for _ in range(4)] == [1, 1, 1, 1]
    c = LevelController(level=3, low=1, high=3)
    assert {c.decide(AHEAD) for _ in range(10)} == {3}


def test_hysteresis_keeps_below_a_level_left_for_starving() -> None:
    """Lowered from 5 because the regions starved, it lets one window pass,
    and does not climb back to 5 while the memory lasts, however ahead it
    is; afterwards it may try again."""
    c = LevelController(level=5, low=1, high=9)
    assert c.decide(HALF_STARVED) == 4
    assert c.decide(STARVED) == 4  # settling: the lowering's effect is not in this window yet
    levels = [c.decide(AHEAD) for _ in range(CEILING_WINDOWS - 2)]
    assert set(levels) == {4}
    assert [c.decide(AHEAD) for _ in range(2)] == [5, 6]


def test_mixed_or_quiet_windows_hold_the_level_and_break_a_streak() -> None:
    c = LevelController(level=3, low=1, high=9)
    c.decide(AHEAD)
    assert c.decide(BALANCED) == 3
    assert c.decide(AHEAD) == 3  # the streak started over
    assert c.decide(Window(0.5, ahead=0.45, starved=0.05)) == 3  # some starving: no raise
    assert c.decide(Window(0.0)) == 3  # an empty window decides nothing


def test_the_ceiling_is_what_the_budget_affords() -> None:
    assert auto_high(256 << 20, 0) == 9  # level 10's context (about 20 MiB) is over 16 MiB
    assert auto_high(32 << 20, 0) == 3  # a small budget: never above the start
    assert auto_high(1 << 30, 0) > auto_high(256 << 20, 0)
    assert auto_high(256 << 20, 4) < auto_high(256 << 20, 0)  # one context per thread
    assert compressor_reserve("zstd", 0, 3) == 0  # level 3's context is in the baseline
    assert compressor_reserve("zstd", 0, 9) == context_size(9) - context_size(3)
    assert compressor_reserve("gzip", 0, 9) == 0


def test_threads_only_when_more_than_two_cores_are_free() -> None:
    assert auto_threads(2, 0.0, 256 << 20) == 0
    assert auto_threads(4, 2.0, 256 << 20) == 0  # 2 free: not more than 2
    assert auto_threads(4, 1.5, 256 << 20) == 1  # 2.5 free: one worker beside the producer
    assert auto_threads(4, 0.5, 256 << 20) == 2
    assert auto_threads(16, 0.0, 256 << 20) == 4
    assert auto_threads(16, 0.0, 64 << 20) == 0  # the budget cannot spare the reserve
