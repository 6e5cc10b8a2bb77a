"""Start-up and tear-down against the real regions: one client set per region
for the whole backup, and no request sent twice (docs/ARCHITECTURE.md,
"Start-up and tear-down").  Every request is counted through the clients' own
event systems (botocore's ``before-call``), per region."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from s3util import RegionsEnv

from streamer.commands import backup as backup_module
from streamer.commands.backup import BackupRequest, backup
from streamer.model import Periodicity, Series
from streamer.settings.config import parse_config
from streamer.settings.ops import parse_ops
from streamer.store.s3 import S3Store

# What a backup of a one-file webroot asks each region, once each: the bucket
# check, the lock (create, release), the cleanup's listings (uploads, runs),
# the upload (create, one part, complete), the manifest, and heal's listing of
# the series (which retention reuses).
EXPECTED = Counter({"HeadBucket": 1, "PutObject": 2, "DeleteObject": 1,
                    "ListMultipartUploads": 1, "ListObjectsV2": 2,
                    "CreateMultipartUpload": 1, "UploadPart": 1,
                    "CompleteMultipartUpload": 1})


@pytest.mark.anyio
async def test_a_backup_opens_one_client_per_region_and_asks_nothing_twice(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    webroot = tmp_path / "www"
    webroot.mkdir()
    (webroot / "index.php").write_text("<?php echo 1;\n")
    settings = {**streamer_env, "STREAMER_WEBROOT": str(webroot), "STREAMER_KEEP_MANUAL": "1"}
    config = parse_config(settings)
    calls: dict[int, Counter[str]] = {}
    opened: list[int] = []
    real_open = backup_module.open_stores

    @contextlib.asynccontextmanager
    async def counting_open(*args: Any, **kwargs: Any) -> AsyncIterator[list[Any]]:
        async with real_open(*args, **kwargs) as stores:
            for store in stores:
                assert isinstance(store, S3Store)
                opened.append(store.index)
                seen = calls.setdefault(store.index, Counter())

                def count(model: Any, seen: Counter[str] = seen, **_: Any) -> None:
                    seen[model.name] += 1
                store.client.meta.events.register("before-call.s3", count)
            yield stores

    monkeypatch.setattr(backup_module, "open_stores", counting_open)
    series = Series("startup-1", Periodicity.MANUAL)
    first = await backup(BackupRequest(config, series, parse_ops(settings)))
    assert first.exit_code == 0, first.error
    assert sorted(opened) == [1, 2, 3]  # one client per region, opened once
    for index in (1, 2, 3):  # the bucket is new: created once in each region
        assert calls[index] == EXPECTED + Counter({"CreateBucket": 1}), (index, calls[index])

    # The second run's retention (keep 1) removes the first in every region,
    # from heal's listing: still one listing of the runs after the commit.
    calls.clear()
    await anyio.sleep(1.1)  # a run's stamp has whole seconds
    second = await backup(BackupRequest(config, series, parse_ops(settings)))
    assert second.exit_code == 0, second.error
    assert second.retention is not None and not second.retention.errors
    removed = {p.report.region: p.report.removed for p in second.retention.pruned}
    assert len(removed) == 3 and all(len(r) == 1 for r in removed.values()), removed
    assert first.result is not None and second.result is not None
    assert all(r == (first.result.stamp,) for r in removed.values()), removed
    for index in (1, 2, 3):
        seen = calls[index]
        assert {k: seen[k] for k in EXPECTED} == dict(EXPECTED), (index, seen)
        assert seen["CreateBucket"] == 0 and seen["DeleteObjects"] >= 1, (index, seen)
        keys = regions.keys(index, bucket)
        assert keys and not any(first.result.stamp in k for k in keys), keys
        assert any(second.result.stamp in k for k in keys), keys
