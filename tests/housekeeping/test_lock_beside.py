"""The cleanup's listing taken while the backup lock is claimed (memory stores:
the order of requests, not a server, is what is tested)."""

from __future__ import annotations

import functools

import anyio
import pytest

from streamer.codec import Codec
from streamer.commands.common import Surveyed, survey_all
from streamer.errors import LockHeld
from streamer.housekeeping import lock as lock_module
from streamer.housekeeping.lease import new_holder
from streamer.housekeeping.lock import BackupLock, hold_lock
from streamer.layout.streamer import StreamerLayout
from streamer.model import Periodicity, Series
from streamer.store.base import ObjectStore
from streamer.store.memory import MemoryStore

SERIES = Series("site", Periodicity.HOURLY)
LAYOUT = StreamerLayout("memory", Codec("zstd", 3))


async def _stores() -> list[MemoryStore]:
    stores = [MemoryStore(index=i) for i in (1, 2, 3)]
    for s in stores:
        await s.ensure_bucket()
    return stores


def _lock(stores: list[MemoryStore], run: str = "r") -> BackupLock:
    clients: list[ObjectStore] = list(stores)
    return BackupLock(clients, LAYOUT.lock_key(SERIES), str(SERIES), 60, new_holder(run, 60))


@pytest.mark.anyio
async def test_the_listing_runs_during_the_claim_and_skips_a_region_silent_at_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lock_module, "CLAIM_TIMEOUT", 0.5)
    stores = await _stores()
    order: list[str] = []

    async def listing(key: str) -> None:
        order.append("listing")

    async def claim(key: str) -> None:
        await anyio.sleep(0.05)  # the claim is still out when the listing goes
        order.append("claimed")

    async def silent(key: str) -> None:
        await anyio.sleep_forever()

    for s in stores:
        s.hooks["ListMultipartUploads"] = listing
        s.hooks["PutObject"] = claim
    stores[1].hooks["PutObject"] = silent  # region 2 never answers the claim ...
    stores[1].hooks["ListMultipartUploads"] = silent  # ... nor the listing
    lock = _lock(stores)
    surveyed: Surveyed = {}
    beside = functools.partial(survey_all, list(stores), LAYOUT, SERIES, True, 3600.0,
                               surveyed, lock)
    with anyio.fail_after(30):  # without giving region 2 up, this waits the hour
        async with hold_lock(lock, beside=beside):
            assert set(lock.unanswered) == {2}
            assert set(surveyed) == {1, 3}
    assert order.index("listing") < order.index("claimed")  # listed while the claims were out
    assert all(stores[i].calls["ListObjectsV2"] == 1 for i in (0, 2))


@pytest.mark.anyio
async def test_a_lock_held_elsewhere_stops_the_listing_and_is_raised_as_it_is() -> None:
    stores = await _stores()
    other = _lock(stores, run="other")
    await other.acquire()

    async def slow(key: str) -> None:
        await anyio.sleep_forever()

    for s in stores:
        s.hooks["ListObjectsV2"] = slow
    mine = _lock(stores)
    surveyed: Surveyed = {}
    beside = functools.partial(survey_all, list(stores), LAYOUT, SERIES, True, 3600.0,
                               surveyed, mine)
    with anyio.fail_after(30), pytest.raises(LockHeld):
        async with hold_lock(mine, beside=beside):
            raise AssertionError("the body must not run")
    assert surveyed == {} and mine.settled.is_set() and not mine.etags
