"""The lag limit over in-memory stores (store/memory.py): a region slow enough
is dropped once the producer has waited on it alone past STREAMER_LAG_LIMIT,
a briefly slow one is not, and one the quorum needs is waited for."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from streamer.errors import EXIT_OK, EXIT_PARTIAL
from streamer.model import BackupResult, Periodicity
from streamer.pipeline.run import run_backup
from streamer.settings.config import parse_config
from streamer.store.base import ObjectStore
from streamer.store.memory import MemoryStore
from streamer.store.retry import RetryPolicy

pytestmark = pytest.mark.anyio
NO_WAIT = RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0)
WHEN = datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC)
KEY = "site/hourly/20261203T100000Z/webroot.tar"
MiB = 1024 * 1024


def _stores() -> list[MemoryStore]:
    return [MemoryStore(index=i, policy=NO_WAIT) for i in (1, 2, 3)]


def _slow_parts(store: MemoryStore, seconds: float, first: int | None = None) -> None:
    """Every UploadPart of ``store`` (or only its ``first`` ones) takes ``seconds``."""
    async def hook(_key: str) -> None:
        if first is None or store.calls["UploadPart"] <= first:
            await anyio.sleep(seconds)
    store.hooks["UploadPart"] = hook


async def _backup(tmp_path: Path, stores: list[MemoryStore], **settings: str) -> BackupResult:
    """48 MiB of incompressible data in 8 MiB parts, a 32 MiB budget (four
    parts), one part in flight per region: once the budget is full, the
    producer waits for the slowest region's next part."""
    webroot = tmp_path / "www"
    webroot.mkdir(exist_ok=True)
    (webroot / "data.bin").write_bytes(os.urandom(47 * MiB))
    config = parse_config({"S3_HOST_BASE": "http://a|http://b|http://c", "S3_ACCESS_KEY": "k",
                           "S3_SECRET_KEY": "s", "STREAMER_BUCKET": "memory",
                           "STREAMER_WEBROOT": str(webroot), "STREAMER_COMPRESSION": "none",
                           "STREAMER_MEMORY_BUDGET": "32MiB", "STREAMER_PARTS_IN_FLIGHT": "1",
                           "DATABASE_INSTALLATION_TYPE": "None",
                           "STREAMER_CHECKSUM": "md5",  # no probe: its parts would be slowed too
                           **settings})
    clients: list[ObjectStore] = list(stores)
    with anyio.fail_after(120):
        return await run_backup(config, Periodicity.HOURLY, "site", now=WHEN, clients=clients)


async def test_a_region_slower_than_the_lag_limit_allows_is_dropped(tmp_path: Path) -> None:
    """Region 2 takes 3 s a part: the producer waits on it alone for about 6 s
    (parts 5 and 6), three times the 2 s limit, so it is dropped; the others
    commit and the run exits 3."""
    stores = _stores()
    _slow_parts(stores[1], 3.0)
    result = await _backup(tmp_path, stores, STREAMER_LAG_LIMIT="2")
    assert result.exit_code == EXIT_PARTIAL
    assert [r.status for r in result.regions] == ["committed", "failed", "committed"]
    reason = result.regions[1].error or ""
    assert "region 2" in reason and "STREAMER_LAG_LIMIT=2" in reason and "too slow" in reason
    assert stores[0].objects[KEY].data == stores[2].objects[KEY].data
    assert len(stores[0].objects[KEY].data) > 47 * MiB
    assert KEY not in stores[1].objects and stores[1].uploads == {}  # aborted there


async def test_a_briefly_slow_region_is_waited_for(tmp_path: Path) -> None:
    """Region 2's first part takes 3 s, far under the 8 s limit: every region commits."""
    stores = _stores()
    _slow_parts(stores[1], 3.0, first=1)
    result = await _backup(tmp_path, stores, STREAMER_LAG_LIMIT="8")
    assert result.exit_code == EXIT_OK, result.error
    assert [r.status for r in result.regions] == ["committed"] * 3
    assert stores[1].objects[KEY].data == stores[0].objects[KEY].data


async def test_a_slow_region_the_quorum_needs_is_never_dropped_for_lag(tmp_path: Path) -> None:
    """With STREAMER_QUORUM=all the slow region is needed: the run waits for it
    (about 3 s alone, past the 1 s limit) and commits everywhere."""
    stores = _stores()
    _slow_parts(stores[1], 1.5)
    result = await _backup(tmp_path, stores, STREAMER_LAG_LIMIT="1", STREAMER_QUORUM="all")
    assert result.exit_code == EXIT_OK, result.error
    assert [r.status for r in result.regions] == ["committed"] * 3


async def test_without_a_lag_limit_a_slow_region_is_waited_for(tmp_path: Path) -> None:
    stores = _stores()
    _slow_parts(stores[1], 1.5)
    result = await _backup(tmp_path, stores, STREAMER_LAG_LIMIT="0")
    assert result.exit_code == EXIT_OK, result.error
    assert stores[1].objects[KEY].data == stores[2].objects[KEY].data
