"""Part digests and the composite of an auto-mode manifest (pure; docs/SECURITY.md "Integrity")."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from streamer import digests
from streamer.errors import IntegrityError
from streamer.layout.catalog import parse_manifest
from streamer.manifest import ArtifactRecord, PartDigests, build_manifest, encode, end_to_end
from streamer.pipeline.chunker import PRODUCER, Part
from streamer.store import integrity
from streamer.store.base import PartBody


def test_the_crcs_are_the_ones_s3_specifies() -> None:
    # The standard check values, and the probe's table-driven CRCs on random bytes.
    assert digests.hexdigest("crc32c", [b"1234", bytearray(b"56789")]) == "e3069283"
    data = os.urandom(4099)
    assert digests.hexdigest("crc32c", [memoryview(data)]) == f"{integrity.crc32c(data):08x}"
    assert digests.hexdigest("md5", [data[:7], data[7:]]) == hashlib.md5(data).hexdigest()


def test_part_digests_computes_each_algorithm_once() -> None:
    data = os.urandom(1000)
    got = digests.part_digests(data, ["crc32c", "md5", "crc32c"])
    assert set(got) == {"crc32c", "md5"}
    assert digests.b64(got["md5"]) == integrity.checksum("md5", data)
    assert digests.b64(got["crc32c"]) == integrity.checksum("crc32c", data)


def test_a_sealed_part_carries_the_crcs_and_md5_its_regions_need() -> None:
    data = os.urandom(5000)
    part = Part(1, PartBody(data), [1, 2], lambda *_: None)
    part.seal("auto", {"md5"})
    body = part.body_for(PRODUCER)
    assert part.digest == ("crc32c", digests.hexdigest("crc32c", [data]))
    assert body.crcs == {"crc32c": integrity.checksum("crc32c", data)}
    assert body.header_for("md5") == {"md5": integrity.checksum("md5", data)}
    assert body.header_for("crc32c") == {"crc32c": integrity.checksum("crc32c", data)}
    assert body.sha256_hex == ""
    only = Part(2, PartBody(data), [1], lambda *_: None)
    only.seal("auto", {"crc32c"})
    assert only.body_for(PRODUCER).header_for("md5") == {}  # never computed


def test_the_parts_hash_checks_every_part_whatever_the_chunking() -> None:
    data = bytearray(os.urandom(10_000))
    sizes = [4096, 0, 4096, 1808]
    recorded, offset = [], 0
    for size in sizes:
        recorded.append(digests.hexdigest("crc32c", [data[offset:offset + size]]))
        offset += size
    expected = digests.composite("crc32c", sizes, recorded)
    for step in (1, 999, 4096, 10_000):
        h = digests.PartsHash("crc32c", sizes)
        for at in range(0, len(data), step):
            h.update(data[at:at + step])
        assert h.hexdigest() == expected
    flipped = bytearray(data)
    flipped[5000] ^= 1
    h = digests.PartsHash("crc32c", sizes)
    h.update(flipped)
    assert h.hexdigest() != expected
    short, long = digests.PartsHash("crc32c", sizes), digests.PartsHash("crc32c", sizes)
    short.update(data[:-1])
    long.update(data + b"x")
    assert short.hexdigest().startswith("incomplete") and long.hexdigest().startswith("incomplete")


def _manifest(record: ArtifactRecord) -> bytes:
    return encode(build_manifest(build="b", periodicity="hourly", stamp="20261203T000000Z",
                                 started="s", ended="e", host="h", version="v",
                                 artifacts=[record], webroot={}, database=None, warnings=[]))


def test_an_auto_manifest_records_the_composite_and_is_checked_by_it() -> None:
    data = os.urandom(3000)
    sizes = (1000, 2000)
    parts = PartDigests("crc32c", sizes, tuple(
        digests.hexdigest("crc32c", [c]) for c in (data[:1000], data[1000:])))
    raw = _manifest(ArtifactRecord("webroot", "k", 3000, "", "zstd", 3, 2000, 2, 9000, parts))
    art = json.loads(raw)["artifacts"]["webroot"]
    assert "sha256" not in art and art["parts_sha256"] == parts.composite()
    stored = parse_manifest(raw, "region 1").artifacts["webroot"]
    assert stored.composite and stored.sha256 == parts.composite() and stored.parts == parts
    whole = end_to_end(stored.parts, stored.composite)
    whole.update(data)
    assert whole.hexdigest() == stored.sha256
    # A part digest changed without its composite: the manifest is refused.
    doc = json.loads(raw)
    doc["artifacts"]["webroot"]["parts"]["digests"][0] = "0" * 8
    with pytest.raises(IntegrityError, match="parts_sha256 does not match"):
        parse_manifest(json.dumps(doc).encode(), "region 1")
    # No end-to-end value at all: refused too.
    del doc["artifacts"]["webroot"]["parts_sha256"]
    with pytest.raises(IntegrityError, match="unreadable"):
        parse_manifest(json.dumps(doc).encode(), "region 1")


def test_an_older_manifest_keeps_its_stream_sha256() -> None:
    data = os.urandom(3000)
    parts = PartDigests("md5", (3000,), (hashlib.md5(data).hexdigest(),))
    sha = hashlib.sha256(data).hexdigest()
    raw = _manifest(ArtifactRecord("webroot", "k", 3000, sha, "zstd", 3, 3000, 1, 9000, parts))
    assert "parts_sha256" not in json.loads(raw)["artifacts"]["webroot"]
    stored = parse_manifest(raw, "region 1").artifacts["webroot"]
    assert not stored.composite and stored.sha256 == sha
    whole = end_to_end(stored.parts, stored.composite)
    whole.update(data)
    assert whole.hexdigest() == sha
