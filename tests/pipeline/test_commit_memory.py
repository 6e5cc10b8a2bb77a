"""A whole backup run (tar -> parts -> fan-out -> commit) over in-memory stores:
the commit and quorum paths, fast and without servers (store/memory.py)."""

from __future__ import annotations

import io
import json
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from streamer.errors import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL
from streamer.model import BackupResult, Periodicity
from streamer.pipeline.run import run_backup
from streamer.settings.config import parse_config
from streamer.store.base import ObjectStore
from streamer.store.memory import MemoryStore
from streamer.store.retry import RetryPolicy

pytestmark = pytest.mark.anyio
NO_WAIT = RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0)
WHEN = datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC)
PREFIX = "site/hourly/20261203T100000Z/"


def _stores() -> list[MemoryStore]:
    return [MemoryStore(index=i, policy=NO_WAIT) for i in (1, 2, 3)]


async def _backup(tmp_path: Path, stores: list[MemoryStore], quorum: int,
                  **settings: str) -> BackupResult:
    webroot = tmp_path / "www"
    (webroot / "sub").mkdir(parents=True, exist_ok=True)
    (webroot / "index.php").write_text("<?php echo 'hello';\n")
    (webroot / "sub" / "data.bin").write_bytes(bytes(range(256)) * 4000)
    config = parse_config({"S3_HOST_BASE": "http://a|http://b|http://c", "S3_ACCESS_KEY": "k",
                           "S3_SECRET_KEY": "s", "STREAMER_BUCKET": "memory",
                           "STREAMER_WEBROOT": str(webroot), "STREAMER_COMPRESSION": "none",
                           "STREAMER_QUORUM": str(quorum), "DATABASE_INSTALLATION_TYPE": "None",
                           **settings})
    clients: list[ObjectStore] = list(stores)
    with anyio.fail_after(60):
        return await run_backup(config, Periodicity.HOURLY, "site", now=WHEN, clients=clients)


def _members(data: bytes) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return {m.name for m in tar.getmembers()}


async def test_every_region_commits_the_same_run(tmp_path: Path) -> None:
    stores = _stores()
    result = await _backup(tmp_path, stores, 3)
    assert result.exit_code == EXIT_OK and [r.status for r in result.regions] == ["committed"] * 3
    bodies = {s.objects[PREFIX + "webroot.tar"].data for s in stores}
    assert len(bodies) == 1  # every region holds the very same bytes
    assert {"./index.php", "./sub/data.bin"} <= _members(bodies.pop())
    manifest = json.loads(stores[0].objects[PREFIX + "manifest.json"].data)
    assert manifest["stamp"] == "20261203T100000Z"
    assert all(s.uploads == {} for s in stores)  # nothing left unfinished


async def test_a_region_failing_to_complete_loses_only_its_copy(tmp_path: Path) -> None:
    stores = _stores()
    stores[1].fail("CompleteMultipartUpload", transient=False, status=500)
    result = await _backup(tmp_path, stores, 2)
    assert result.exit_code == EXIT_PARTIAL
    assert [r.status for r in result.regions] == ["committed", "failed", "committed"]
    assert PREFIX + "manifest.json" in stores[0].objects
    assert PREFIX + "manifest.json" in stores[2].objects
    assert PREFIX + "manifest.json" not in stores[1].objects  # no commit marker there
    assert stores[1].uploads == {}  # and its upload was aborted


async def test_below_the_quorum_nothing_is_committed_anywhere(tmp_path: Path) -> None:
    stores = _stores()
    stores[0].fail("PutObject", transient=False, status=500)  # the manifest write
    result = await _backup(tmp_path, stores, 3)
    assert result.exit_code == EXIT_FAILED and result.error
    for store in stores:  # the completed objects and manifests are removed again
        assert not [k for k in store.objects if k.startswith(PREFIX)], store.label
        assert store.uploads == {}


async def test_a_region_down_at_the_start_is_not_waited_for(tmp_path: Path) -> None:
    stores = _stores()
    stores[2].fail("HeadBucket", transient=False, status=403)  # e.g. credentials revoked
    result = await _backup(tmp_path, stores, 2)
    assert result.exit_code == EXIT_PARTIAL
    assert [r.status for r in result.regions] == ["committed", "committed", "failed"]
    assert not stores[2].objects


@pytest.mark.parametrize("phase", ["HeadBucket", "CreateMultipartUpload", "UploadPart",
                                   "CompleteMultipartUpload", "PutObject"])
async def test_a_black_hole_in_any_phase_is_dropped_after_the_stall_timeout(
        tmp_path: Path, phase: str) -> None:
    """A region that accepts a request and never answers, in each phase of a
    run: it is dropped after STREAMER_STALL_TIMEOUT and the others commit."""
    stores = _stores()

    async def black_hole(key: str) -> None:
        await anyio.sleep_forever()

    stores[1].hooks[phase] = black_hole
    # Without the bound this would never return (the hook never does): the
    # run's fail_after in _backup turns a hang into a failure.
    result = await _backup(tmp_path, stores, 1, STREAMER_STALL_TIMEOUT="2")
    assert result.exit_code == EXIT_PARTIAL, result.error
    assert [r.status for r in result.regions] == ["committed", "failed", "committed"]
    assert "stall timeout" in (result.regions[1].error or "")
