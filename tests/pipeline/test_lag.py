"""Unit tests for the lag limit's account (pipeline/lag.py): a fake clock, no I/O."""

from __future__ import annotations

from streamer.pipeline.lag import LagMeter, alone_region


def test_alone_only_when_the_producer_waits_and_one_region_has_work() -> None:
    assert alone_region(1, 0, [2], live=3) == 2
    assert alone_region(0, 0, [2], live=3) is None  # the producer is not waiting
    assert alone_region(1, 0, [1, 2], live=3) is None  # two regions still sending
    assert alone_region(1, 0, [], live=3) is None  # nobody has work
    assert alone_region(1, 1, [2], live=3) is None  # a part about to go to everyone
    assert alone_region(2, 0, [3], live=2) == 3  # both streams' producers waiting
    assert alone_region(1, 0, [2], live=1) is None  # nobody else is held back


def test_time_is_credited_to_the_region_waited_on_alone() -> None:
    meter = LagMeter(limit=10.0)
    meter.observe(100.0, 2)
    meter.observe(103.0, None)  # 3 s on region 2
    meter.observe(110.0, 3)
    meter.observe(111.5, 2)  # 1.5 s on region 3
    assert meter.waited_on(2, 112.0) == 3.5  # 3 s done + 0.5 s running
    assert meter.waited_on(3, 112.0) == 1.5
    assert meter.waited_on(1, 112.0) == 0.0
    assert meter.over(112.0) == []


def test_a_region_is_over_only_once_its_sum_passes_the_limit() -> None:
    """A briefly slow region (one stretch under the limit) is never over;
    stretches of a steadily slow one add up until they pass it."""
    meter = LagMeter(limit=5.0)
    meter.observe(0.0, 1)
    meter.observe(4.0, None)  # briefly slow: 4 s
    meter.observe(50.0, None)
    assert meter.over(1000.0) == []
    for start in (60.0, 70.0):  # two more stretches of 1 s each
        meter.observe(start, 1)
        meter.observe(start + 1.0, None)
    assert meter.waited_on(1, 80.0) == 6.0
    assert meter.over(80.0) == [1]


def test_the_running_stretch_counts_before_the_next_observation() -> None:
    meter = LagMeter(limit=5.0)
    meter.observe(10.0, 3)
    assert meter.over(14.0) == []
    assert meter.over(16.0) == [3]


def test_a_zero_limit_never_drops_anyone() -> None:
    meter = LagMeter(limit=0.0)
    meter.observe(0.0, 1)
    assert meter.waited_on(1, 1e6) == 1e6
    assert meter.over(1e6) == []


def test_a_clock_going_backwards_credits_nothing() -> None:
    meter = LagMeter(limit=1.0)
    meter.observe(10.0, 1)
    meter.observe(9.0, None)
    assert meter.waited_on(1, 20.0) == 0.0
