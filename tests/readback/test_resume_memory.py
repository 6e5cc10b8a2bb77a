"""Restore resuming in the next region, over memory stores (no servers): each
part is checked as it arrives; a region that fails, hangs or returns wrong
bytes is left at the first part not yet handed to tar, and the next region
holding the run goes on from there.  Faults are injected per range."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from streamer.errors import StoreFailure
from streamer.layout.choice import layout_for
from streamer.manifest import PartDigests
from streamer.model import Periodicity, Series
from streamer.readback import restore as restore_mod
from streamer.readback.download import RANGE_SIZE, ObjectRef
from streamer.readback.restore import FailedAttempt, Restored, RestoreRequest, restore_run
from streamer.readback.resume import Source, Tally, stream_parts
from streamer.readback.sources import Download
from streamer.readback.verify import verify_run
from streamer.settings.config import Config, parse_config
from streamer.store.base import ObjectStore
from streamer.store.memory import MemoryStore
from streamer.store.retry import RetryPolicy

pytestmark = pytest.mark.anyio
STAMP = "20261203T100000Z"
KEY = f"site/hourly/{STAMP}/webroot.tar"
PART = 64 * 1024
SERIES = Series("site", Periodicity.HOURLY)


@dataclass(eq=False)
class FaultyStore(MemoryStore):
    """A memory region that records every ranged GET and fails, hangs or flips
    a byte of the ranges starting at given offsets."""

    gets: list[tuple[int, int]] = field(default_factory=list)
    fail_at: set[int] = field(default_factory=set)
    hang_from: int | None = None  # every range starting at or after this never answers
    flip_at: set[int] = field(default_factory=set)

    async def get_range(self, key: str, start: int, end: int,
                        if_match: str | None = None) -> bytearray:
        self.gets.append((start, end))
        if start in self.fail_at:
            raise StoreFailure(self.label, "GetObject", "connection reset (injected)", False)
        if self.hang_from is not None and start >= self.hang_from:
            await anyio.sleep_forever()
        data = await super().get_range(key, start, end, if_match)
        if start in self.flip_at:
            data[len(data) // 2] ^= 0x01
        return data


def tar_of_tree(root: Path) -> bytes:
    """A tree of a few hundred KB of incompressible files, as an uncompressed tar."""
    root.mkdir()
    for i in range(12):
        (root / f"f{i:02d}.bin").write_bytes(os.urandom(50_000 + i * 997))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(root, arcname=".")
    return buf.getvalue()


def part_digests(data: bytes, part: int = PART, algorithm: str = "md5") -> PartDigests:
    pieces = [data[i:i + part] for i in range(0, len(data), part)]
    return PartDigests(algorithm, tuple(len(p) for p in pieces),
                       tuple(hashlib.new(algorithm, p).hexdigest() for p in pieces))


def manifest(data: bytes, parts: PartDigests | None) -> bytes:
    art: dict[str, Any] = {"key": KEY, "stored_size": len(data),
                           "sha256": hashlib.sha256(data).hexdigest(), "compression": "none"}
    if parts is not None:
        art["parts"] = parts.to_json()
    return json.dumps({"format": 1, "build_identifier": "site", "periodicity": "hourly",
                       "stamp": STAMP, "artifacts": {"webroot": art}}).encode()


async def regions_holding(data: bytes, parts: PartDigests | None, n: int = 3) -> list[FaultyStore]:
    stores = [FaultyStore(index=i, policy=RetryPolicy(max_attempts=1)) for i in range(1, n + 1)]
    for s in stores:
        await s.ensure_bucket()
        await s.put_object(KEY, data, content_type="application/x-tar")
        await s.put_object(f"site/hourly/{STAMP}/manifest.json", manifest(data, parts))
    return stores


def config() -> Config:
    return parse_config({"S3_HOST_BASE": "http://a|http://b|http://c", "S3_ACCESS_KEY": "k",
                         "S3_SECRET_KEY": "s", "STREAMER_BUCKET": "memory",
                         "STREAMER_COMPRESSION": "none", "DATABASE_INSTALLATION_TYPE": "None"})


@pytest.fixture
def one_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    """One range at a time: which GET happens when is then deterministic."""
    monkeypatch.setattr(restore_mod.Download, "for_config",
                        staticmethod(lambda config, streams=1: Download(RANGE_SIZE, 1)))


@pytest.fixture
def tar_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts how many times the tar extractor was started."""
    runs: list[int] = []
    real = restore_mod.extract_tar

    def counting(*args: Any) -> Any:
        runs.append(1)
        return real(*args)

    monkeypatch.setattr(restore_mod, "extract_tar", counting)
    return runs


def tree(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


async def restore(stores: list[FaultyStore], target: Path) -> restore_mod.RestoreReport:
    clients: list[ObjectStore] = list(stores)
    with anyio.fail_after(30):
        return await restore_run(config(), clients, layout_for(config()),
                                 RestoreRequest(SERIES, webroot=target))


async def test_a_region_failing_half_way_is_resumed_from_the_first_part_not_yet_delivered(
        tmp_path: Path, one_in_flight: None, tar_runs: list[int]) -> None:
    data = tar_of_tree(tmp_path / "src")
    parts = part_digests(data)
    spans = parts.spans()
    assert len(spans) >= 8
    stores = await regions_holding(data, parts)
    k = len(spans) // 2  # region 1 resets the connection on this part
    stores[0].fail_at = {spans[k][0]}
    report = await restore(stores, tmp_path / "out")
    assert report.exit_code == 0, report.error
    assert tree(tmp_path / "out") == tree(tmp_path / "src")
    ranges = [(off, off + size - 1) for off, size, _ in spans]
    assert stores[0].gets == ranges[:k + 1]  # up to and including the one that failed
    assert stores[1].gets == ranges[k:]  # from that part on: nothing before it again
    assert stores[2].gets == []
    assert tar_runs == [1]  # tar read one unbroken stream
    failed, restored = report.events
    assert isinstance(failed, FailedAttempt) and failed.at == spans[k][0] and not failed.last
    assert "connection reset" in failed.error
    assert isinstance(restored, Restored)
    assert restored.region == "region 1 (memory) then region 2 (memory)"
    assert restored.downloaded == restored.size == len(data)  # the failed GET brought nothing


async def test_wrong_bytes_mid_restore_are_caught_in_their_part_and_fetched_from_the_next_region(
        tmp_path: Path, tar_runs: list[int]) -> None:
    """Several GETs in flight (the default): the bad part and at most the parts
    in flight beside it are fetched again, nothing before it."""
    data = tar_of_tree(tmp_path / "src")
    parts = part_digests(data, algorithm="sha256")
    spans = parts.spans()
    stores = await regions_holding(data, parts)
    k = len(spans) // 2
    stores[0].flip_at = {spans[k][0]}
    report = await restore(stores, tmp_path / "out")
    assert report.exit_code == 0, report.error
    assert tree(tmp_path / "out") == tree(tmp_path / "src")
    assert tar_runs == [1]
    failed = report.events[0]
    assert isinstance(failed, FailedAttempt) and "part" in failed.error and "SHA256" in failed.error
    assert failed.at is not None and failed.at <= spans[k][0]
    refetched = {start for start, _ in stores[1].gets}
    assert spans[k][0] in refetched
    assert min(refetched) == spans[k][0] or min(refetched) >= failed.at  # never before the stop
    assert len(stores[1].gets) <= len(spans) - k + 4  # the rest, plus what was in flight
    restored = report.events[-1]
    assert isinstance(restored, Restored)
    assert len(data) < restored.downloaded <= len(data) + 4 * PART


async def test_a_region_that_hangs_after_failing_is_left_at_once(
        tmp_path: Path, tar_runs: list[int]) -> None:
    """Region 1 resets one part and never answers the ones after it: its
    requests in flight are cancelled and fetched from region 2."""
    data = tar_of_tree(tmp_path / "src")
    parts = part_digests(data)
    spans = parts.spans()
    stores = await regions_holding(data, parts)
    k = len(spans) // 3
    stores[0].fail_at = {spans[k][0]}
    stores[0].hang_from = spans[k + 1][0]
    report = await restore(stores, tmp_path / "out")  # within fail_after(30)
    assert report.exit_code == 0, report.error
    assert tree(tmp_path / "out") == tree(tmp_path / "src")
    assert tar_runs == [1]


async def test_a_part_bad_in_every_region_fails_naming_it_and_restores_nothing(
        tmp_path: Path) -> None:
    data = tar_of_tree(tmp_path / "src")
    parts = part_digests(data)
    spans = parts.spans()
    stores = await regions_holding(data, parts)
    for s in stores:
        s.flip_at = {spans[3][0]}
    report = await restore(stores, tmp_path / "out")
    assert report.exit_code == 1 and report.error is not None
    assert "failed in every region" in str(report.error)
    attempts = [e for e in report.events if isinstance(e, FailedAttempt)]
    assert [a.region for a in attempts] == [s.label for s in stores]
    assert all(f"part 4 at byte {spans[3][0]}" in a.error for a in attempts)
    assert attempts[-1].last and not attempts[0].last
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


async def test_an_old_manifest_without_part_digests_restores_from_byte_zero_elsewhere(
        tmp_path: Path, tar_runs: list[int]) -> None:
    data = tar_of_tree(tmp_path / "src")
    stores = await regions_holding(data, None)  # no "parts": written before they were recorded
    stores[0].flip_at = {0}
    report = await restore(stores, tmp_path / "out")
    assert report.exit_code == 0, report.error
    assert tree(tmp_path / "out") == tree(tmp_path / "src")
    failed, restored = report.events
    assert isinstance(failed, FailedAttempt) and failed.at is None and "SHA-256" in failed.error
    assert isinstance(restored, Restored) and restored.region == "region 2 (memory)"
    assert stores[1].gets[0][0] == 0  # the whole stream again
    assert tar_runs == [1, 1]  # tar started again
    assert restored.downloaded == len(data)


async def test_a_region_whose_manifest_records_other_parts_is_not_resumed_from(
        tmp_path: Path, one_in_flight: None) -> None:
    data = tar_of_tree(tmp_path / "src")
    parts = part_digests(data)
    stores = await regions_holding(data, parts)
    other = part_digests(data, part=PART * 2)  # same bytes, other parts: cannot splice
    await stores[1].put_object(f"site/hourly/{STAMP}/manifest.json", manifest(data, other))
    stores[0].fail_at = {parts.spans()[2][0]}
    report = await restore(stores, tmp_path / "out")
    assert report.exit_code == 0, report.error
    assert tree(tmp_path / "out") == tree(tmp_path / "src")
    skipped = report.events[1]
    assert isinstance(skipped, FailedAttempt) and skipped.region == "region 2 (memory)"
    assert "another webroot" in skipped.error
    assert stores[1].gets == [] and stores[2].gets[0][0] == parts.spans()[2][0]


async def test_a_part_split_into_ranges_is_checked_whole_and_refetched_whole() -> None:
    data = os.urandom(10 * 300_000 + 123)
    parts = part_digests(data, part=300_000)
    stores = await regions_holding(data, parts, n=2)
    stores[0].fail_at = {300_000 + 200_000}  # the third range of part 2
    sources = [Source(s, ObjectRef(KEY, len(data), hashlib.sha256(data).hexdigest(),
                                   s.objects[KEY].etag)) for s in stores]
    rest = iter(sources[1:])

    async def next_source() -> Source | None:
        return next(rest, None)

    tally = Tally()
    got = await stream_parts(sources[0], next_source, parts, lambda r: r.read(),
                             range_size=100_000, in_flight=1, tally=tally)
    assert got == data
    assert stores[0].gets == [(0, 99_999), (100_000, 199_999), (200_000, 299_999),
                              (300_000, 399_999), (400_000, 499_999), (500_000, 599_999)]
    assert stores[1].gets[:3] == [(300_000, 399_999), (400_000, 499_999), (500_000, 599_999)]
    assert min(start for start, _ in stores[1].gets) == 300_000
    assert [(s.region, s.at) for s in tally.stops] == [("region 1 (memory)", 300_000)]
    assert tally.downloaded == len(data) + 200_000  # part 2's first two ranges, read again


async def test_verify_names_the_bad_part_and_its_offset(tmp_path: Path) -> None:
    data = tar_of_tree(tmp_path / "src")
    parts = part_digests(data)
    spans = parts.spans()
    stores = await regions_holding(data, parts)
    stores[1].flip_at = {spans[5][0]}
    clients: list[ObjectStore] = list(stores)
    report = await verify_run(config(), clients, layout_for(config()), SERIES, None)
    assert [c.ok for c in report.checks] == [True, False, True]
    problem = report.checks[1].problem or ""
    assert f"part 6 at byte {spans[5][0]} ({spans[5][1]} bytes): MD5" in problem
    assert KEY in problem
