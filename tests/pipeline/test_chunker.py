"""The chunk producer and the part sharing (a pipe, no network, no disk)."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import zlib

import pytest
import zstandard

from streamer.pipeline.chunker import PRODUCER, ChunkFiller, Part, PartReleased
from streamer.store.base import PartBody
from streamer.store.s3_hooks import PrecomputedPayloadAuth


def _feed(data: bytes) -> int:
    r, w = os.pipe()

    def writer() -> None:
        with os.fdopen(w, "wb") as f:
            f.write(data)

    threading.Thread(target=writer, daemon=True).start()
    return r


def _parts(data: bytes, kind: str, size: int) -> tuple[list[bytes], ChunkFiller]:
    fd = _feed(data)
    filler = ChunkFiller(fd, kind, 3)  # type: ignore[arg-type]
    parts = []
    while not filler.exhausted:
        body = PartBody(size)
        n = filler.fill(body)
        if n == 0 and parts:
            break
        parts.append(bytes(body[:n]))
    os.close(fd)
    return parts, filler


def test_parts_are_exact_sizes_and_hash_the_whole_stream() -> None:
    data = os.urandom(3 * 1024 * 1024 + 12345)
    parts, filler = _parts(data, "none", 1024 * 1024)
    assert [len(p) for p in parts] == [1024 * 1024] * 3 + [12345]
    assert b"".join(parts) == data
    assert filler.sha256.hexdigest() == hashlib.sha256(data).hexdigest()
    assert filler.source_bytes == filler.stored_bytes == len(data)


def test_zstd_and_gzip_round_trip() -> None:
    data = b"<?php echo 'hello'; ?>\n" * 200_000
    parts, filler = _parts(data, "zstd", 64 * 1024)
    stored = b"".join(parts)
    assert zstandard.ZstdDecompressor().decompressobj().decompress(stored) == data
    assert filler.stored_bytes == len(stored) < len(data) // 10
    parts, _ = _parts(data, "gzip", 64 * 1024)
    assert zlib.decompress(b"".join(parts), 16 + zlib.MAX_WBITS) == data


def test_empty_stream_yields_one_empty_part() -> None:
    parts, _ = _parts(b"", "none", 1024)
    assert parts == [b""]


def test_part_hands_its_buffer_over_once_when_the_last_holder_lets_go() -> None:
    done: list[tuple[Part, PartBody | None]] = []
    body = PartBody(b"x" * 10)
    part = Part(1, body, {1, 2, 3}, lambda p, b: done.append((p, b)))
    part.release(2)
    part.release(2)
    part.release(1)
    part.release(3)
    assert not done  # the producer has not sealed and queued it yet
    assert part.body_for(PRODUCER) is body
    with pytest.raises(PartReleased):
        part.body_for(2)  # a region that let go cannot send it any more
    part.release(PRODUCER)
    part.release(PRODUCER)
    assert done == [(part, None)]  # the test still holds `body`: not reusable
    assert len(part) == 10 and part.freed
    with pytest.raises(PartReleased):
        part.body_for(PRODUCER)  # no bytes at all once freed: no placeholder to hash or send


def test_a_region_dropped_before_sealing_cannot_free_the_part() -> None:
    """The defect of issue #10: a part waiting for the sealing thread had no
    holders yet, so dropping a region freed it and its buffer was refilled."""
    freed: list[int] = []
    part = Part(7, PartBody(b"y" * 10), {1, 2, 3}, lambda p, b: freed.append(p.number))
    part.release(2)  # region 2 dropped while the part waits to be sealed
    assert not freed
    part.seal("md5")
    assert part.body_for(1).md5_b64 == base64.b64encode(hashlib.md5(b"y" * 10).digest()).decode()
    part.release(PRODUCER)
    part.release(1)
    assert not freed
    part.release(3)
    assert freed == [7]


def test_part_digest_is_computed_once_and_used_by_the_signer() -> None:
    body = PartBody(b"abc" * 1000)
    part = Part(1, body, (), lambda p, b: None)
    part.seal("sha256")
    assert body.sha256_hex == hashlib.sha256(body).hexdigest()

    class Req:
        pass

    req = Req()
    fake = PartBody(b"payload")
    fake.sha256_hex = "0" * 64  # not the real digest: proves the signer does not rehash
    req.body = fake  # type: ignore[attr-defined]
    auth = PrecomputedPayloadAuth.__new__(PrecomputedPayloadAuth)
    assert auth.payload(req) == "0" * 64
    part.seal("md5")
    assert body.md5_b64
