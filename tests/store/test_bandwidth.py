"""Unit tests for STREAMER_BWLIMIT's bucket (store/bandwidth.py): pure, on a fake clock."""

from __future__ import annotations

import math

import pytest

from streamer.store.bandwidth import (
    MAX_CHUNK,
    MIN_CHUNK,
    FairBucket,
    Ticket,
    capacity_for,
    chunk_size,
)

MiB = 1024 * 1024
KiB = 1024


def drive(bucket: FairBucket, demand: dict[int, int], chunk: int, until: float,
          step: float = 0.001) -> dict[int, int]:
    """Every flow in ``demand`` keeps one ask open (as a sending part does) and
    re-asks when granted, until ``until`` s or its demand (bytes) is met; a
    waiter polls every ``step`` s.  Returns the bytes granted per flow."""
    got = dict.fromkeys(demand, 0)
    open_asks: dict[int, Ticket] = {}
    now = bucket.now
    while now < until:
        for flow, want in demand.items():
            if flow not in open_asks and got[flow] < want:
                open_asks[flow] = bucket.ask(flow, chunk)
        for flow, ticket in list(open_asks.items()):
            if bucket.poll(ticket, now) == 0.0:
                got[flow] += ticket.amount
                del open_asks[flow]
        now += step
    return got


def test_the_rate_is_held_from_the_start_with_no_initial_burst() -> None:
    bucket = FairBucket(rate=1 * MiB, now=100.0)
    ticket = bucket.ask(1, 32 * KiB)
    assert bucket.poll(ticket, 100.0) == pytest.approx(32 * KiB / MiB)  # starts empty
    bucket.cancel(ticket)
    got = drive(bucket, {1: 10**12}, 32 * KiB, until=110.0)
    # ten seconds at 1 MiB/s, never more than rate * elapsed; within a chunk of it
    assert got[1] <= 10 * MiB
    assert got[1] >= 10 * MiB - 2 * 32 * KiB


def test_an_idle_spell_banks_at_most_the_capacity() -> None:
    bucket = FairBucket(rate=1 * MiB, now=0.0)
    bucket.refill(3600.0)
    assert bucket.tokens == bucket.capacity == capacity_for(1 * MiB)
    assert bucket.capacity < 1 * MiB  # an hour idle is not a megabyte of burst


def test_two_busy_regions_share_equally() -> None:
    bucket = FairBucket(rate=4 * MiB, now=0.0)
    got = drive(bucket, {1: 10**12, 2: 10**12}, 64 * KiB, until=20.0)
    assert abs(got[1] - got[2]) <= 64 * KiB
    assert got[1] + got[2] <= 20 * 4 * MiB


def test_a_region_with_more_senders_does_not_take_more_than_its_share() -> None:
    # region 1 has four asks open at once (four parts in flight), region 2 one
    bucket = FairBucket(rate=1 * MiB, now=0.0)
    got = {1: 0, 2: 0}
    asks = [bucket.ask(1, 16 * KiB) for _ in range(4)] + [bucket.ask(2, 16 * KiB)]
    now = 0.0
    while now < 30.0:
        for i, ticket in enumerate(asks):
            if bucket.poll(ticket, now) == 0.0:
                got[ticket.flow] += ticket.amount
                asks[i] = bucket.ask(ticket.flow, 16 * KiB)
        now += 0.001
    assert abs(got[1] - got[2]) <= 16 * KiB


def test_an_unused_share_goes_to_the_others_and_a_slow_region_is_not_starved() -> None:
    bucket = FairBucket(rate=3 * MiB, now=0.0)
    # region 3 wants only 1 MiB (it is slow: its server takes little); 1 and 2 all they can get
    got = drive(bucket, {1: 10**12, 2: 10**12, 3: 1 * MiB}, 64 * KiB, until=10.0)
    assert got[3] == 1 * MiB  # served in full, early: it never waits beyond its turn
    assert got[1] + got[2] + got[3] >= 30 * MiB - 3 * 64 * KiB  # nothing of the limit wasted
    assert got[1] + got[2] + got[3] <= 30 * MiB
    assert abs(got[1] - got[2]) <= 64 * KiB


def test_only_the_flow_whose_turn_it_is_can_be_granted() -> None:
    bucket = FairBucket(rate=1 * MiB, now=0.0)
    first, second = bucket.ask(1, 32 * KiB), bucket.ask(2, 32 * KiB)
    assert bucket.poll(second, 10.0) == math.inf
    assert bucket.poll(first, 10.0) == 0.0 and first.granted
    assert bucket.head() is second
    assert bucket.poll(second, 10.0) == 0.0  # tokens banked meanwhile cover it
    assert bucket.head() is None


def test_a_cancelled_ask_passes_the_turn_on() -> None:
    bucket = FairBucket(rate=1 * MiB, now=0.0)
    first, second = bucket.ask(1, 32 * KiB), bucket.ask(2, 32 * KiB)
    bucket.cancel(first)
    assert bucket.head() is second
    bucket.cancel(first)  # twice is harmless
    assert bucket.poll(second, 1.0) == 0.0


def test_the_rotation_serves_each_flow_in_turn() -> None:
    bucket = FairBucket(rate=1 * MiB, now=0.0)
    a1, a2, b1 = bucket.ask(1, 1024), bucket.ask(1, 1024), bucket.ask(2, 1024)
    assert bucket.poll(a1, 1.0) == 0.0
    assert bucket.head() is b1  # flow 1 was served: flow 2's turn before a2
    assert bucket.poll(a2, 1.0) == math.inf
    assert bucket.poll(b1, 1.0) == 0.0 and bucket.poll(a2, 1.0) == 0.0


def test_an_ask_beyond_the_capacity_or_a_bad_rate_is_refused() -> None:
    bucket = FairBucket(rate=1 * MiB, now=0.0)
    with pytest.raises(ValueError):
        bucket.ask(1, int(bucket.capacity) + 1)
    with pytest.raises(ValueError):
        bucket.ask(1, 0)
    with pytest.raises(ValueError):
        FairBucket(rate=0, now=0.0)


def test_a_clock_going_back_adds_no_tokens() -> None:
    bucket = FairBucket(rate=1 * MiB, now=50.0)
    bucket.refill(40.0)
    assert bucket.tokens == 0.0


def test_chunks_are_small_at_low_rates_and_bounded_at_high_ones() -> None:
    assert chunk_size(1 * MiB) == 32 * KiB  # an 8 MiB part leaves in 256 pieces, not one burst
    assert chunk_size(1) == MIN_CHUNK
    assert chunk_size(10**12) == MAX_CHUNK
    for rate in (1 * KiB, 1 * MiB, 50 * MiB, 10**12):
        assert capacity_for(rate) >= 2 * chunk_size(rate)
