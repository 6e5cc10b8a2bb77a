"""The tar reader and the block pipe of the restore's extraction (no S3): the
members read exactly as tarfile reads them, however the blocks cut the
stream, and either thread stopping the other."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamer.errors import IntegrityError
from streamer.readback.blocks import BlockPipe, FillerFailed
from streamer.readback.extract import extract_tar
from streamer.readback.safety import Kind
from streamer.readback.tarstream import ArchiveError, Member, TarCursor, from_tarinfo, parse_header

MTIME = 1_600_000_000


def build(fmt: int, members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for ti, data in members:
            tar.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    return buf.getvalue()


def info(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **attrs: object
         ) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mtime, ti.mode = kind, MTIME, 0o644
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    for k, v in attrs.items():
        setattr(ti, k, v)
    return ti, data


VARIED = [
    info("./index.php", data=b"<?php echo 1;\n", mode=0o640, uid=33, gid=33),
    info("./wp-content", tarfile.DIRTYPE, mode=0o755),
    info("./wp-content/" + "long-directory-name/" * 6 + "file.css", data=b"x" * 1000),  # > 100 chars
    info("./a/" + "n" * 120, data=b"long name, no prefix split"),
    info("./link", tarfile.SYMTYPE, linkname="wp-content/" + "l" * 110),  # long link name
    info("./hard", tarfile.LNKTYPE, linkname="./index.php"),
    info("./fifo", tarfile.FIFOTYPE, mode=0o600),
    info("./dev", tarfile.CHRTYPE),
    info("./ünï cødé €.txt", data="ü".encode()),
    info("./big.bin", data=os.urandom(200_000), mtime=MTIME + 7),
    info("./huge-uid", data=b"u", uid=0o10000000),  # needs base-256 in GNU format
    info("./empty", data=b""),
    info("./dir-with-slash/", tarfile.DIRTYPE),
]


def blocks_of(data: bytes, size: int) -> Iterator[memoryview]:
    for i in range(0, len(data), size):
        yield memoryview(data[i:i + size])


def read_all(data: bytes, block: int) -> list[tuple[Member, bytes]]:
    it = blocks_of(data, block)
    cursor = TarCursor(lambda: next(it, None))
    out = []
    while (m := cursor.next_member()) is not None:
        left, got = m.size, []
        while left:
            view = cursor.take(left)
            got.append(bytes(view))
            left -= len(view)
        out.append((m, b"".join(got)))
    return out


def by_tarfile(data: bytes) -> list[tuple[Member, bytes]]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
        for ti in tar:
            f = tar.extractfile(ti) if ti.isreg() else None
            out.append((from_tarinfo(ti), f.read() if f is not None else b""))
    return out


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT, tarfile.PAX_FORMAT],
                         ids=["gnu", "ustar", "pax"])
@pytest.mark.parametrize("block", [1, 511, 512, 4096, 1 << 20])
def test_members_read_as_tarfile_reads_them(fmt: int, block: int) -> None:
    members = [m for m in VARIED if fmt != tarfile.USTAR_FORMAT or not (
        len(m[0].name) > 256 or len(m[0].linkname) > 100 or m[0].uid > 0o7777777
        or m[0].name.startswith("./a/"))]
    data = build(fmt, members)
    assert read_all(data, block) == by_tarfile(data)


def test_plain_headers_are_read_here_and_extensions_by_tarfile() -> None:
    ti, _ = info("./short.php", data=b"x")
    plain = ti.tobuf(tarfile.GNU_FORMAT)
    member = parse_header(plain)
    assert member == from_tarinfo(tarfile.TarInfo.frombuf(plain, "utf-8", "surrogateescape"))
    assert member is not None and member.kind is Kind.FILE and member.size == 1
    long_name = info("./" + "x" * 150)[0].tobuf(tarfile.GNU_FORMAT)
    assert parse_header(long_name[:512]) is None  # the GNU long-name header ('L')
    assert parse_header(info("./p", data=b"1")[0].tobuf(tarfile.PAX_FORMAT, "utf-8")[:512]) is not None
    pax = info("./ü" * 60)[0].tobuf(tarfile.PAX_FORMAT)
    assert parse_header(pax[:512]) is None  # the pax extended header ('x')
    big_uid = info("./u", uid=0o10000000)[0].tobuf(tarfile.GNU_FORMAT)
    assert parse_header(big_uid) is None  # base-256
    bad = bytearray(plain)
    bad[0] ^= 1
    assert parse_header(bytes(bad)) is None  # the checksum: tarfile judges it


def test_a_bad_header_after_the_first_is_an_error_not_the_end() -> None:
    data = bytearray(build(tarfile.GNU_FORMAT, [info("a", data=b"1"), info("b", data=b"2")]))
    data[1024 + 5] ^= 0xFF  # the second header
    with pytest.raises(ArchiveError, match="bad header at byte 1024"):
        read_all(bytes(data), 4096)


def test_truncated_data_and_empty_streams_are_errors() -> None:
    data = build(tarfile.GNU_FORMAT, [info("a", data=b"1" * 5000)])
    with pytest.raises(ArchiveError, match="unexpected end"):
        read_all(data[:3000], 1000)
    with pytest.raises(ArchiveError, match="byte 0"):
        read_all(b"", 1000)


def test_the_pipe_reuses_its_buffers_and_passes_a_failure_on() -> None:
    pipe = BlockPipe(count=2, size=1000)
    seen: list[int] = []
    got: list[bytes] = []

    def consume() -> None:
        try:
            while (view := pipe.next_block()) is not None:
                seen.append(id(view.obj))
                got.append(bytes(view))
        except FillerFailed:
            got.append(b"FAILED")
        finally:
            pipe.stop()

    t = threading.Thread(target=consume)
    t.start()
    pipe.fill(io.BytesIO(b"a" * 10_500))
    t.join()
    assert b"".join(got) == b"a" * 10_500 and len(set(seen)) <= 2

    class Broken(io.RawIOBase):
        def readinto(self, b: object) -> int:
            raise OSError("damaged")

    pipe = BlockPipe(count=2, size=1000)
    got.clear()
    t = threading.Thread(target=consume)
    t.start()
    with pytest.raises(OSError, match="damaged"):
        pipe.fill(Broken())
    t.join()
    assert got == [b"FAILED"]


class Counting(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._f = io.BytesIO(data)
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        n = self._f.readinto(b)
        self.read_bytes += n
        return n


@pytest.mark.parametrize("evil", [
    info("../escape", data=b"x"),
    info("./" + "d/" * 60 + "../" * 70 + "escape", data=b"x"),  # a GNU long name: tarfile's path
    info("./innocent", data=b"x", pax_headers={"path": "../escape"}),  # pax overrides the name
    info("./abs", tarfile.SYMTYPE, linkname="/"),
], ids=["dotdot", "long-name-dotdot", "pax-path", "symlink"])
def test_a_refused_member_stops_the_reading_thread_early(tmp_path: Path,
                                                        evil: tuple[tarfile.TarInfo, bytes]) -> None:
    members = [info("./first.bin", data=os.urandom(3 << 20)), evil]
    if evil[0].issym():
        members.append(info("./abs/etc-file", data=b"through the symlink"))
    members.append(info("./after.bin", data=os.urandom(24 << 20)))
    source = Counting(build(tarfile.PAX_FORMAT if evil[0].pax_headers else tarfile.GNU_FORMAT,
                            members))
    root = tmp_path / "t"
    root.mkdir()
    with pytest.raises(IntegrityError, match=r"unsafe|refusing"):
        extract_tar(source, root, same_owner=False)
    assert source.read_bytes < 16 << 20  # stopped within a few blocks, not read to the end
    assert not (tmp_path / "escape").exists()


def test_large_files_across_blocks_and_sparse_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    big = os.urandom(5 * (1 << 20) + 12345)
    (src / "big.bin").write_bytes(big)
    with open(src / "sparse.img", "wb") as f:
        f.seek(3 << 20)
        f.write(b"middle")
        f.seek(8 << 20)
        f.write(b"end")
    archive = subprocess.run(["tar", "--create", "--sparse", "--file=-", "--directory", str(src), "."],
                             capture_output=True, check=True).stdout
    assert any(m.sparse for m, _ in read_all(archive, 1 << 20))  # GNU tar wrote a sparse member
    root = tmp_path / "t"
    root.mkdir()
    stats = extract_tar(io.BytesIO(archive), root, same_owner=False)
    assert (root / "big.bin").read_bytes() == big
    assert (root / "sparse.img").read_bytes() == (src / "sparse.img").read_bytes()
    assert os.stat(root / "sparse.img").st_blocks * 512 < 1 << 20  # still sparse
    assert stats.files == 2
