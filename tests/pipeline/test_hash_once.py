"""Each part is hashed once, not once per region: counted in-process over a real backup.

The backup runs in this process against the three real regions, with every
hash function that streamer, botocore or aiobotocore could apply to a body
wrapped to count the bytes it is fed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import botocore.auth
import botocore.httpchecksum
import botocore.utils
import crc32c  # type: ignore[import-not-found,unused-ignore]
import pytest
from s3util import RegionsEnv

import streamer.digests
import streamer.pipeline.chunker
from streamer.model import Periodicity
from streamer.pipeline.run import run_backup
from streamer.settings.config import parse_config

MiB = 1024 * 1024
BIG = 64 * 1024  # bodies above this are part payloads, not requests' small XML


class Counting:
    """A stand-in for a hashlib constructor that counts the bytes it hashes."""

    def __init__(self, real: Any, name: str, counts: dict[str, int]) -> None:
        self.real, self.name, self.counts = real, name, counts

    def __call__(self, data: Any = b"", **kw: Any) -> Any:
        counts, name = self.counts, self.name
        inner = self.real(**kw)

        class Wrapped:
            def update(self, chunk: Any) -> None:
                if len(chunk) > 0:
                    counts[name] = counts.get(name, 0) + len(chunk)
                inner.update(chunk)

            def __getattr__(self, attr: str) -> Any:
                return getattr(inner, attr)

        w = Wrapped()
        if len(data):
            w.update(data)
        return w


class CountingCrc:
    """A stand-in for a CRC function that counts the bytes it is fed."""

    def __init__(self, real: Any, name: str, counts: dict[str, int]) -> None:
        self.real, self.name, self.counts = real, name, counts

    def __call__(self, data: Any, previous: int = 0) -> int:
        if len(data) > BIG:
            self.counts[self.name] = self.counts.get(self.name, 0) + len(data)
        return int(self.real(data, previous))


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "md5"])
async def test_every_part_is_hashed_once_whatever_the_region_count(
        regions: RegionsEnv, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        mode: str) -> None:
    root = tmp_path / "www"
    root.mkdir()
    for i in range(3):
        (root / f"media-{i}.bin").write_bytes(os.urandom(10 * MiB))
    counts: dict[str, int] = {}
    crc: list[int] = [0]
    real_crc = botocore.httpchecksum.crc32

    def counting_crc(chunk: Any, value: int = 0) -> int:
        if len(chunk) > BIG:
            crc[0] += len(chunk)
        return real_crc(chunk, value)

    fake_hashlib = type("H", (), {"md5": staticmethod(Counting(hashlib.md5, "md5", counts)),
                                  "sha256": staticmethod(Counting(hashlib.sha256, "sha256", counts))})
    monkeypatch.setattr(streamer.pipeline.chunker, "hashlib", fake_hashlib)
    monkeypatch.setattr(streamer.digests, "hashlib", fake_hashlib)
    monkeypatch.setattr(streamer.digests, "_crc32c", type("C", (), {
        "crc32c": staticmethod(CountingCrc(crc32c.crc32c, "crc32c", counts))}))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the probe runs
    monkeypatch.setattr(botocore.auth, "sha256", Counting(hashlib.sha256, "botocore-sha256", counts))
    monkeypatch.setattr(botocore.httpchecksum, "sha256",
                        Counting(hashlib.sha256, "botocore-checksum-sha256", counts))
    monkeypatch.setattr(botocore.httpchecksum, "crc32", counting_crc)
    monkeypatch.setattr(botocore.utils, "hashlib", type("H2", (), {
        "md5": staticmethod(Counting(hashlib.md5, "botocore-md5", counts)),
        "sha256": staticmethod(Counting(hashlib.sha256, "botocore-util-sha256", counts))}))

    config = parse_config({**regions.env, "STREAMER_BUCKET": bucket, "STREAMER_WEBROOT": str(root),
                           "STREAMER_COMPRESSION": "none", "STREAMER_CHECKSUM": mode})
    assert len(config.regions) == 3
    result = await run_backup(config, Periodicity.MANUAL, "hash-once")
    assert result.exit_code == 0, result.error
    stored = result.artifacts[0].stored_bytes
    assert stored > 30 * MiB
    if mode == "md5":
        # One MD5 per part (Content-MD5, shared by 3 regions), one SHA-256 of the stream.
        assert counts.get("md5") == stored
        assert counts.get("sha256") == stored
    else:
        # SeaweedFS verifies CRC32C: one CRC32C per part, shared by 3 regions,
        # and no other pass over the bytes (docs/SECURITY.md, "Integrity").
        assert counts.get("crc32c") == stored
        assert counts.get("md5") is None
        assert counts.get("sha256", 0) < 1000  # the manifest's parts_sha256, over the digests
    # botocore hashes no part body, in any region: no SigV4 payload hash, no checksums.
    big_botocore = {k: v for k, v in counts.items() if k.startswith("botocore") and v > BIG * 4}
    assert big_botocore == {}, big_botocore
    assert crc[0] == 0
