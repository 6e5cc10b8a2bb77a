"""The backup lock: pure lease decisions (unit) and the lock against three real regions."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from s3util import STREAMER, RegionsEnv, run_streamer

from streamer.errors import BackupFailed, LockHeld, StoreFailure
from streamer.housekeeping.lease import (
    Claim,
    ClaimState,
    Holder,
    LocalHost,
    Outcome,
    Verdict,
    judge,
    majority,
    new_holder,
    process_start,
    still_held,
    tally,
)
from streamer.housekeeping.lock import BackupLock, hold_lock
from streamer.layout.catalog import CATALOG_POLICY
from streamer.settings.config import parse_config
from streamer.store.base import ObjectStore
from streamer.store.memory import MemoryStore
from streamer.store.s3 import open_stores

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def holder(**kw: object) -> Holder:
    base = Holder("tok", "web1", 100, "boot-1", 555, "20240601T115500Z", NOW - 5 * MIN, NOW + 10 * MIN)
    return replace(base, **kw)  # type: ignore[arg-type]


def here(alive: bool = True, host: str = "web1", boot: str = "boot-1") -> LocalHost:
    return LocalHost(host, boot, lambda pid, start: alive)


# ---------------------------------------------------------------- unit


def test_holder_round_trip_and_garbage() -> None:
    h = holder()
    assert Holder.decode(h.encode()) == h
    assert Holder.decode(b"{}") is None and Holder.decode(b"\xff") is None
    assert "until 2024-06-01 12:10:00 UTC" in h.describe()


def test_judge_live_expired_and_dead_on_this_machine() -> None:
    assert judge(holder(), NOW, here()) is Verdict.HELD
    assert judge(holder(expires=NOW - MIN), NOW, here()) is Verdict.STALE
    assert judge(holder(expires=NOW), NOW, here()) is Verdict.STALE
    assert judge(None, NOW, here()) is Verdict.STALE  # unreadable
    # Its process is gone on this very machine (same host name and boot): stale at once.
    assert judge(holder(), NOW, here(alive=False)) is Verdict.STALE
    # Another machine, or this host rebooted: we cannot see its process, the lease rules.
    assert judge(holder(), NOW, here(alive=False, host="web2")) is Verdict.HELD
    assert judge(holder(), NOW, here(alive=False, boot="boot-2")) is Verdict.HELD
    assert judge(holder(), NOW, here(alive=False, boot="")) is Verdict.HELD


def c(state: ClaimState) -> Claim:
    return Claim(0, state)


A, Hd, U = ClaimState.ACQUIRED, ClaimState.HELD, ClaimState.UNREACHABLE


@pytest.mark.parametrize("states,regions,outcome", [
    ([A, A, A], 3, Outcome.ACQUIRED),
    ([A, A, U], 3, Outcome.ACQUIRED),  # one region down: still a majority
    ([A, Hd, Hd], 3, Outcome.HELD),
    ([Hd, U, U], 3, Outcome.HELD),
    ([A, Hd, U], 3, Outcome.SPLIT),  # nobody has a majority: give back and retry
    ([A, U, U], 3, Outcome.ACQUIRED),  # two regions down: the survivor is backed up to
    ([U, U, U], 3, Outcome.UNREACHABLE),
    ([A, U], 2, Outcome.ACQUIRED),  # regions down do not count against the lock
    ([A], 1, Outcome.ACQUIRED),
    ([A, Hd], 2, Outcome.SPLIT),
    ([A, A], 2, Outcome.ACQUIRED),
])
def test_tally(states: list[ClaimState], regions: int, outcome: Outcome) -> None:
    assert tally([c(s) for s in states], regions) is outcome


def test_three_runs_with_one_region_each_have_split_not_lost() -> None:
    """Three takers that each won one of three regions: nobody holds a majority,
    so each must give back and retry (SPLIT), not give up (HELD) -- otherwise
    all three skip and no backup runs at all."""
    b, d = holder(token="run-b", host="b"), holder(token="run-d", host="d")
    assert tally([c(A), Claim(0, Hd, holder=b), Claim(0, Hd, holder=d)], 3) is Outcome.SPLIT
    assert tally([c(A), Claim(0, Hd, holder=b), Claim(0, Hd, holder=b)], 3) is Outcome.HELD
    assert tally([Claim(0, Hd, holder=b), Claim(0, Hd, holder=d), c(U)], 3) is Outcome.HELD


def test_two_contenders_never_both_hold_a_majority() -> None:
    for n in range(1, 8):
        for mine in range(n + 1):
            theirs = n - mine
            both = tally([c(A)] * mine + [c(Hd)] * theirs, n) is Outcome.ACQUIRED and \
                tally([c(A)] * theirs + [c(Hd)] * mine, n) is Outcome.ACQUIRED
            assert not both
    assert [majority(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]


def test_only_copies_taken_over_everywhere_lose_the_lock() -> None:
    assert still_held(held=1, taken_over=2)  # one copy left: still ours
    assert still_held(held=0, taken_over=0)  # nothing answered: unknown is not lost
    assert not still_held(held=0, taken_over=1)  # every copy we held is another run's now


def test_process_start_tells_a_reused_pid() -> None:
    me = process_start(os.getpid())
    assert me > 0
    assert process_start(2 ** 22 + 12345) == 0


# ---------------------------------------------------------------- real regions


@pytest.fixture
async def clients(regions: RegionsEnv, bucket: str) -> AsyncIterator[list[ObjectStore]]:
    cfg = parse_config({**regions.env, "STREAMER_BUCKET": bucket})
    async with open_stores(cfg, CATALOG_POLICY) as cs:
        for client in cs:
            await client.ensure_bucket()
        yield cs


KEY = "site/hourly/lock.json"


def new_lock(clients: list[ObjectStore], lease: float = 60, run: str = "r") -> BackupLock:
    return BackupLock(clients, KEY, "site/hourly", lease, new_holder(run, lease))


@pytest.mark.anyio
async def test_lock_is_exclusive_and_released(clients: list[ObjectStore], regions: RegionsEnv,
                                              bucket: str) -> None:
    first = new_lock(clients)
    await first.acquire()
    assert sorted(first.etags) == [1, 2, 3]
    body = json.loads(regions.get(2, bucket, KEY))
    assert body["pid"] == os.getpid() and body["host"] == socket.gethostname()
    with pytest.raises(LockHeld, match=r"holds the backup lock for site/hourly.*until"):
        await new_lock(clients).acquire()
    await first.release()
    assert all(regions.keys(i, bucket) == [] for i in (1, 2, 3))
    second = new_lock(clients)
    await second.acquire()  # free again
    await second.release()


def lock_body(regions: RegionsEnv, bucket: str, index: int) -> dict[str, object] | None:
    """The lock object's JSON in region ``index``, or None where there is none."""
    if KEY not in regions.keys(index, bucket):
        return None
    return dict(json.loads(regions.get(index, bucket, KEY)))


@pytest.mark.anyio
async def test_stale_and_dead_locks_are_taken_over_by_exactly_one(
        clients: list[ObjectStore], regions: RegionsEnv, bucket: str) -> None:
    expired = holder(host="elsewhere", expires=datetime.now(UTC) - MIN)

    def plant(h: Holder) -> None:
        for i in (1, 2, 3):
            regions.client(i).put_object(Bucket=bucket, Key=KEY, Body=h.encode())

    # One taker alone: it must take the expired copy over in every region.
    plant(expired)
    alone = new_lock(clients, run="alone")
    await alone.acquire()
    assert sorted(alone.etags) == [1, 2, 3]
    assert [h.token for h in alone.taken_over] == ["tok"] * 3
    assert [h.host for h in alone.taken_over] == ["elsewhere"] * 3
    for i in (1, 2, 3):
        body = lock_body(regions, bucket, i)
        assert body is not None and body["token"] == alone.holder.token
    await alone.release()

    # Three takers racing for it: exactly one wins; the expired copy is gone
    # everywhere (taken over, the losers' copies given back).
    plant(expired)
    takers = [new_lock(clients, run=f"t{n}") for n in range(3)]
    results: list[str] = []

    async def take(lock: BackupLock) -> None:
        try:
            await lock.acquire()
            results.append("won")
        except LockHeld:
            results.append("held")

    async with anyio.create_task_group() as tg:
        for lock in takers:
            tg.start_soon(take, lock)
    assert sorted(results) == ["held", "held", "won"]
    winner = next(t for t in takers if t.etags)
    assert len(winner.etags) >= 2  # a majority of the three regions
    # Whatever the winner took over was the expired holder (after a split
    # round it may have created fresh copies instead: nothing to take over).
    assert all(h.host == "elsewhere" for h in winner.taken_over)
    bodies = {i: lock_body(regions, bucket, i) for i in (1, 2, 3)}
    for i, body in bodies.items():
        if i in winner.etags:
            assert body is not None and body["token"] == winner.holder.token
        else:
            assert body is None or body["token"] == winner.holder.token, body
    await winner.release()

    # A holder on this machine whose process is gone is stale at once, lease or not.
    dead = subprocess.Popen(["true"])
    dead.wait()
    me = new_holder("dead-run", 600)
    ghost = replace(me, token="ghost", pid=dead.pid, pid_start=12345)
    assert ghost.expires > datetime.now(UTC) + 5 * MIN  # its lease alone would hold
    plant(ghost)
    lock = new_lock(clients)
    await lock.acquire()
    assert sorted(lock.etags) == [1, 2, 3]
    assert [h.token for h in lock.taken_over] == ["ghost"] * 3
    for i in (1, 2, 3):
        body = lock_body(regions, bucket, i)
        assert body is not None and body["token"] == lock.holder.token
    await lock.release()


@pytest.mark.anyio
async def test_renewal_extends_the_lease_and_a_taken_over_lock_cancels_the_run(
        clients: list[ObjectStore], regions: RegionsEnv, bucket: str) -> None:
    lock = new_lock(clients, lease=3)
    async with hold_lock(lock):
        seen = [json.loads(regions.get(1, bucket, KEY))["expires"]]
        # Renewed every lease/3 = 1 s: wait for two renewals, however loaded
        # the machine (the deadline is a bound, not a margin).
        with anyio.fail_after(60):
            while len(seen) < 3:
                await anyio.sleep(0.1)
                now = json.loads(regions.get(1, bucket, KEY))["expires"]
                if now != seen[-1]:
                    assert now > seen[-1]
                    seen.append(now)
        assert not lock.lost
    assert regions.keys(1, bucket) == []

    lock = new_lock(clients, lease=3)
    reached_end = False
    with pytest.raises(BackupFailed, match="lost the backup lock"):
        async with hold_lock(lock):
            thief = holder(host="thief", expires=datetime.now(UTC) + timedelta(hours=1))
            for i in (1, 2, 3):  # taken from under us everywhere
                regions.client(i).put_object(Bucket=bucket, Key=KEY, Body=thief.encode())
            await anyio.sleep(120)  # a bound: the loss cancels this at once
            reached_end = True
    assert not reached_end
    assert all(json.loads(regions.get(i, bucket, KEY))["host"] == "thief"  # theirs: left alone
               for i in (1, 2, 3))


@pytest.mark.anyio
async def test_regions_that_do_not_answer_never_block_the_lock(regions: RegionsEnv,
                                                               bucket: str) -> None:
    """Two of three regions down: the survivor alone is enough; a second run that
    can see it still skips; with no region answering, the lock fails (exit 1)."""
    endpoints = "|".join([regions.endpoints[0], "http://127.0.0.1:9", "http://127.0.0.1:9"])
    cfg = parse_config({**regions.env, "S3_HOST_BASE": endpoints, "STREAMER_BUCKET": bucket})
    async with open_stores(cfg, CATALOG_POLICY) as cs:
        await cs[0].ensure_bucket()
        lock = new_lock(cs)
        await lock.acquire()
        assert sorted(lock.etags) == [1]
        with pytest.raises(LockHeld):
            await new_lock(cs).acquire()
        await lock.release()
        with pytest.raises(BackupFailed, match=r"cannot take the backup lock.*none of the 2"):
            await new_lock(cs[1:]).acquire()


@pytest.mark.anyio
async def test_a_region_that_stops_answering_does_not_take_the_lock_away() -> None:
    """Over memory stores: renewals that fail keep the lock; copies taken over
    by another run in every region lose it."""
    stores = [MemoryStore(index=i) for i in (1, 2, 3)]
    for s in stores:
        await s.ensure_bucket()
    lock = new_lock(list(stores), lease=60)
    await lock.acquire()

    tried: list[str] = []
    renewed: list[str] = []

    async def down(key: str) -> None:
        tried.append(key)
        raise StoreFailure("region", "PutObject", "timed out", True)

    async def answers(key: str) -> None:
        renewed.append(key)

    stores[0].hooks["PutObject"] = answers
    for s in stores[1:]:  # regions 2 and 3 stop answering (every try of the renewal)
        s.hooks["PutObject"] = down
    await lock.renew()
    assert renewed == [KEY]  # region 1 was renewed
    assert len(tried) >= 2 and set(tried) == {KEY}  # 2 and 3 were asked, and failed
    assert not lock.lost and sorted(lock.etags) == [1, 2, 3]
    thief = holder(host="thief", expires=datetime.now(UTC) + timedelta(hours=1))
    for s in stores:
        s.hooks.clear()
        await s.put_object(KEY, thief.encode())
    await lock.renew()
    assert lock.lost and "took it over in every region" in lock.lost


# ---------------------------------------------------------------- the CLI


def small_webroot(tmp_path: Path, size: int = 200_000) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.php").write_text("<?php echo 1; ?>\n")
    (root / "media.bin").write_bytes(os.urandom(size))
    return root


def test_backup_exits_4_while_another_host_holds_the_lock(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path) -> None:
    env = {**streamer_env, "STREAMER_WEBROOT": str(small_webroot(tmp_path))}
    live = holder(host="web-other", expires=datetime.now(UTC) + timedelta(minutes=10))
    key = "lk/hourly/lock.json"
    for i in (1, 2, 3):
        regions.client(i).create_bucket(Bucket=bucket)
        regions.client(i).put_object(Bucket=bucket, Key=key, Body=live.encode())
    run = run_streamer(["hourly", "lk"], env)
    assert run.code == 4, run.stdout + run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert "another host holds the backup lock for lk/hourly: web-other pid 100" in run.stderr
    assert "until" in run.stderr
    for i in (1, 2, 3):
        assert regions.keys(i, bucket) == [key] and regions.uploads(i, bucket) == []

    # Expired: taken over, backed up, released.
    stale = replace(live, expires=datetime.now(UTC) - timedelta(seconds=1))
    for i in (1, 2, 3):
        regions.client(i).put_object(Bucket=bucket, Key=key, Body=stale.encode())
    run = run_streamer(["hourly", "lk"], env)
    assert run.code == 0, run.stdout + run.stderr
    assert "took over the backup lock of web-other pid 100" in run.stdout
    for i in (1, 2, 3):
        keys = regions.keys(i, bucket)
        assert key not in keys and any(k.endswith("/manifest.json") for k in keys)


def test_two_backups_started_together_one_runs_one_exits_4(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path) -> None:
    root = small_webroot(tmp_path, 24 * 1024 * 1024)
    # The winner holds the lock for about 4.5 s (72 MB at 16 MiB/s), far longer
    # than the two start-ups can drift apart, so the runs surely overlap.
    env = {**streamer_env, "STREAMER_WEBROOT": str(root), "STREAMER_COMPRESSION": "none",
           "STREAMER_BWLIMIT": "16MiB"}
    procs = [subprocess.Popen([*STREAMER, "hourly", "twin"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    text = [o.decode() + e.decode() for o, e in outs]
    assert codes == [0, 4], text
    loser = text[[p.returncode for p in procs].index(4)]
    assert "holds the backup lock for twin/hourly" in loser
    assert "another streamer process on this host" in loser
    for i in (1, 2, 3):
        manifests = [k for k in regions.keys(i, bucket) if k.endswith("manifest.json")]
        assert len(manifests) == 1  # the loser uploaded nothing
        assert regions.uploads(i, bucket) == []
        assert "twin/hourly/lock.json" not in regions.keys(i, bucket)


def test_lock_lease_setting_is_validated(streamer_env: dict[str, str], tmp_path: Path) -> None:
    env = {**streamer_env, "STREAMER_WEBROOT": str(small_webroot(tmp_path)),
           "STREAMER_LOCK_LEASE": "1s"}
    run = run_streamer(["hourly", "x"], env)
    assert run.code == 2 and "STREAMER_LOCK_LEASE" in run.stderr
