"""The tree writer on its own (local files, no S3): safe extraction and promotion."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
import zstandard

from streamer.codec import decompressed
from streamer.errors import IntegrityError
from streamer.readback.extract import apply_dir_attrs, extract_tar, promote

MTIME = 1_600_000_000


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", mode: int = 0o644,
           linkname: str = "", mtime: int = MTIME) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.mtime = mtime
    ti.linkname = linkname
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    return ti, data


def archive(*members: tuple[tarfile.TarInfo, bytes], fmt: int = tarfile.GNU_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for ti, data in members:
            tar.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
    return buf.getvalue()


def extract(data: bytes, root: Path) -> None:
    root.mkdir(exist_ok=True)
    extract_tar(io.BytesIO(data), root, same_owner=os.geteuid() == 0)


def test_modes_mtimes_symlinks_hardlinks_fifos(tmp_path: Path) -> None:
    root = tmp_path / "t"
    data = archive(
        member("./", tarfile.DIRTYPE, mode=0o750, mtime=MTIME - 10),
        member("./app", tarfile.DIRTYPE, mode=0o555, mtime=MTIME - 20),  # read-only dir: set last
        member("./app/run.sh", data=b"#!/bin/sh\n", mode=0o755),
        member("./app/secret", data=b"s", mode=0o600, mtime=MTIME + 5),
        member("./app/setuid", data=b"x", mode=0o4755),
        member("./app/hard", tarfile.LNKTYPE, linkname="./app/run.sh"),
        member("./link", tarfile.SYMTYPE, linkname="app/run.sh", mtime=MTIME - 30),
        member("./abs-link", tarfile.SYMTYPE, linkname="/mnt/assets"),
        member("./deep/er/file.txt", data=b"implied parents"),
        member("./fifo", tarfile.FIFOTYPE, mode=0o640),
        member("./ünï cødé", data="ü".encode()),
    )
    extract(data, root)
    apply_dir_attrs(root, [], True)
    app = root / "app"
    assert (app / "run.sh").read_bytes() == b"#!/bin/sh\n"
    assert stat.S_IMODE((app / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((app / "secret").stat().st_mode) == 0o600
    assert (app / "secret").stat().st_mtime == MTIME + 5
    expected_setuid = 0o4755 if os.geteuid() == 0 else 0o755
    assert stat.S_IMODE((app / "setuid").stat().st_mode) == expected_setuid
    assert (app / "hard").stat().st_ino == (app / "run.sh").stat().st_ino
    assert os.readlink(root / "link") == "app/run.sh"
    assert (root / "link").lstat().st_mtime == MTIME - 30
    assert os.readlink(root / "abs-link") == "/mnt/assets"  # created, never followed
    assert (root / "deep" / "er" / "file.txt").read_text() == "implied parents"
    assert stat.S_ISFIFO((root / "fifo").lstat().st_mode)
    assert (root / "ünï cødé").read_text() == "ü"


def test_directory_attributes_are_applied_after_promotion(tmp_path: Path) -> None:
    temp, target = tmp_path / "temp", tmp_path / "target"
    target.mkdir()
    temp.mkdir()
    stats = extract_tar(io.BytesIO(archive(
        member("./", tarfile.DIRTYPE, mode=0o751, mtime=MTIME - 10),
        member("./ro", tarfile.DIRTYPE, mode=0o555, mtime=MTIME - 20),
        member("./ro/f", data=b"f"),
    )), temp, same_owner=True)
    promote(temp, target)
    apply_dir_attrs(target, stats.dir_attrs, True)
    assert stat.S_IMODE((target / "ro").stat().st_mode) == 0o555
    assert (target / "ro").stat().st_mtime == MTIME - 20
    assert (target / "ro" / "f").read_bytes() == b"f"
    assert stat.S_IMODE(target.stat().st_mode) == 0o751 and target.stat().st_mtime == MTIME - 10
    assert list(temp.iterdir()) == []


@pytest.mark.parametrize("members", [
    [member("../escape", data=b"x")],
    [member("/tmp-outside-abs/x", data=b"x")],
    [member("ok.txt", data=b"ok"), member("a/../../escape", data=b"x")],
    [member("evil", tarfile.SYMTYPE, linkname="OUTSIDE"), member("evil/pwned", data=b"x")],
    [member("evil", tarfile.SYMTYPE, linkname="../outside"), member("evil/pwned", data=b"x")],
    [member("d", tarfile.DIRTYPE), member("d/evil", tarfile.SYMTYPE, linkname="OUTSIDE"),
     member("d/evil/sub/pwned", data=b"x")],
    [member("hard", tarfile.LNKTYPE, linkname="OUTSIDE/target")],
    [member("dev", tarfile.CHRTYPE)],
], ids=["dotdot", "absolute", "nested-dotdot", "symlink-abs", "symlink-rel", "symlink-deep",
        "hardlink-out", "device"])
def test_malicious_archives_write_nothing_outside(tmp_path: Path,
                                                 members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target").write_text("precious")
    fixed = []
    for ti, data in members:
        ti.name = ti.name.replace("/tmp-outside-abs", str(outside))
        ti.linkname = ti.linkname.replace("OUTSIDE", str(outside))
        fixed.append((ti, data))
    root = tmp_path / "deep" / "target"
    root.parent.mkdir()
    with pytest.raises(IntegrityError, match=r"unsafe|device|hard link"):
        extract(archive(*fixed, fmt=tarfile.PAX_FORMAT), root)
    assert sorted(p.name for p in outside.iterdir()) == ["target"]
    assert (outside / "target").read_text() == "precious"
    assert not (tmp_path / "escape").exists() and not (tmp_path / "deep" / "escape").exists()


def test_a_corrupt_stream_is_an_integrity_error(tmp_path: Path) -> None:
    data = archive(member("a", data=b"x" * 5000))
    bad = bytearray(data)
    bad[100] ^= 0xFF  # the header checksum no longer matches
    with pytest.raises(IntegrityError, match="archive unreadable"):
        extract(bytes(bad), tmp_path / "t")
    compressed = zstandard.ZstdCompressor().compress(data)
    with pytest.raises(IntegrityError, match="archive unreadable"):
        extract_tar(decompressed(io.BytesIO(compressed[:-8]), "zstd"), tmp_path / "t",
                    same_owner=False)


def test_promote_merges_like_tar_x(tmp_path: Path) -> None:
    temp, target = tmp_path / "temp", tmp_path / "target"
    (temp / "app").mkdir(parents=True)
    (temp / "app" / "new.php").write_text("new")
    (temp / "index.php").write_text("restored")
    (temp / "uploads").mkdir()
    (temp / "uploads" / "a.jpg").write_text("jpg")
    (target / "app").mkdir(parents=True)
    (target / "app" / "local.cfg").write_text("kept")
    (target / "index.php").write_text("old")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (target / "uploads").symlink_to(elsewhere)  # where the backup has a directory
    promote(temp, target)
    assert (target / "app" / "new.php").read_text() == "new"
    assert (target / "app" / "local.cfg").read_text() == "kept"
    assert (target / "index.php").read_text() == "restored"
    assert not (target / "uploads").is_symlink() and (target / "uploads" / "a.jpg").exists()
    assert list(elsewhere.iterdir()) == []  # never written through
