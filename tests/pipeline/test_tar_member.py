"""A stream of unknown length stored as the one member of a gzip'd tar, its
header written last (tarframe.py; docs/ARCHITECTURE.md "A tar member of unknown
size"): the framing alone, then a whole run over in-memory stores read back by
GNU tar."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from streamer import digests, tarframe
from streamer.layout.adt import DUMPS
from streamer.layout.choice import layout_for
from streamer.model import Periodicity, Series
from streamer.pipeline.run import run_backup
from streamer.process import ProcessSource
from streamer.readback.verify import verify_run
from streamer.settings.config import Config, parse_config
from streamer.store.base import ObjectStore
from streamer.store.memory import MemoryStore
from streamer.store.retry import RetryPolicy

pytestmark = pytest.mark.anyio
MiB = 1024 * 1024


@pytest.mark.parametrize("size", [0, 1, 511, 512, 10 * MiB + 7, 9 * 1024 ** 3])
def test_header_and_trailer_make_an_archive_tar_reads(size: int) -> None:
    member = tarframe.TarMember("applicationDB.sql", mtime=1704067200)
    header = tarframe.header(member, size)
    trailer = tarframe.trailer(size)
    assert len(header) == tarframe.BLOCK
    assert (len(header) + size + len(trailer)) % tarframe.RECORD == 0
    assert len(trailer) >= 2 * tarframe.BLOCK and not any(trailer)
    info = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")
    assert (info.name, info.size, info.mtime, info.uname) == ("applicationDB.sql", size,
                                                              1704067200, "root")
    head = tarframe.head(member, size, 6)
    assert gzip.decompress(head) == header and len(head) <= tarframe.HEAD_RESERVE


async def _backup(tmp_path: Path) -> tuple[Config, list[MemoryStore], Path]:
    """A run of the ADT layout over two in-memory regions whose database is ``cat`` of a dump."""
    sql = tmp_path / "dump.sql"
    sql.write_bytes(b"".join(b"INSERT INTO t VALUES (%d, '%s');\n" % (i, os.urandom(24).hex().encode())
                             for i in range(600_000)))
    (tmp_path / "www").mkdir()
    config = parse_config({"S3_HOST_BASE": "http://a|http://b", "S3_ACCESS_KEY": "k",
                           "S3_SECRET_KEY": "s", "STREAMER_WEBROOT": str(tmp_path / "www"),
                           "STREAMER_LAYOUT": "adt", "WEBSITE_URL": "www.example.com",
                           "DATABASE_INSTALLATION_TYPE": "Maria", "DB_NAME": "d",
                           "DB_USERNAME": "u", "STREAMER_MEMORY_BUDGET": "64MiB"})
    stores = [MemoryStore(index=i, policy=RetryPolicy(base_delay=0, max_delay=0)) for i in (1, 2)]
    clients: list[ObjectStore] = list(stores)
    source = ProcessSource("database", ("cat", str(sql)))
    with anyio.fail_after(120):
        result = await run_backup(config, Periodicity.HOURLY, "site", clients=clients,
                                  layout=layout_for(config), extra_sources=[(source, {})],
                                  now=datetime(2026, 12, 3, 10, tzinfo=UTC))
    assert result.exit_code == 0, result.error
    return config, stores, sql


async def test_a_run_stores_one_member_gnu_tar_extracts(tmp_path: Path) -> None:
    """Several parts: part 1 (with the header) is sent last, and the object is
    still exactly the header's gzip member followed by the data's."""
    _, stores, sql = await _backup(tmp_path)
    manifest = json.loads(stores[1].objects["streamer-manifest.json"].data)
    art = manifest["artifacts"]["database"]
    assert art["member"] == "applicationDB.sql" and art["bucket"] == "www-example-com-db-hourly"
    assert art["part_count"] >= 3
    data = stores[1].sibling("www-example-com-db-hourly").objects["example-DB-backup.tar.gz"].data
    assert data == stores[0].sibling("www-example-com-db-hourly").objects[
        "example-DB-backup.tar.gz"].data
    head = art["head"]["size"]
    assert hashlib.sha256(data[:head]).hexdigest() == art["head"]["sha256"]
    assert sum(art["parts"]["sizes"]) == len(data) == art["stored_size"]
    # STREAMER_CHECKSUM=auto: no stream SHA-256; the composite of the parts' CRCs, head included.
    assert "sha256" not in art and art["parts"]["algorithm"] == "crc32c"
    whole = digests.PartsHash("crc32c", art["parts"]["sizes"])
    whole.update(data)
    assert whole.hexdigest() == art["parts_sha256"]
    member = DUMPS["maria"]
    expected = member.prefix + sql.read_bytes() + member.suffix
    out = tmp_path / "out"
    out.mkdir()
    listing = subprocess.run(["tar", "xvzf", "-", "-C", str(out)], input=data,
                             capture_output=True, check=True)
    assert listing.stdout == b"applicationDB.sql\n" and listing.stderr == b""
    assert (out / "applicationDB.sql").read_bytes() == expected
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data)), mode="r:") as tar:
        assert [(m.name, m.size) for m in tar.getmembers()] == [("applicationDB.sql",
                                                                  len(expected))]


async def test_part_digests_cover_the_head_and_verify_names_a_bad_one(tmp_path: Path) -> None:
    """Part 1, sealed last, is recorded with the others: its digest covers the
    head, so a flipped byte in the head is found part by part (verify names
    part 1) while the other region's copy checks out."""
    config, stores, _ = await _backup(tmp_path)
    artifacts = json.loads(stores[0].objects["streamer-manifest.json"].data)["artifacts"]
    art = artifacts["database"]
    bucket = art["bucket"]
    data = stores[0].sibling(bucket).objects["example-DB-backup.tar.gz"].data
    offset = 0
    for size, digest in zip(art["parts"]["sizes"], art["parts"]["digests"], strict=True):
        assert digests.hexdigest(art["parts"]["algorithm"], [data[offset:offset + size]]) \
            == digest
        offset += size
    assert art["head"]["size"] < art["parts"]["sizes"][0]
    damaged = stores[0].sibling(bucket).objects["example-DB-backup.tar.gz"]
    flipped = bytearray(damaged.data)
    flipped[art["head"]["size"] // 2] ^= 0xFF
    damaged.data = bytes(flipped)
    clients: list[ObjectStore] = list(stores)
    report = await verify_run(config, clients, layout_for(config),
                              Series("site", Periodicity.HOURLY), None)
    assert [c.client.index for c in report.bad] == [1]
    assert "part 1" in (report.bad[0].problem or "")
    assert report.checks[1].ok and report.checks[1].verified_bytes == sum(
        a["stored_size"] for a in artifacts.values())
