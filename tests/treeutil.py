"""Test helpers for restore: a webroot with every kind of entry, its snapshot, fake runs."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path
from typing import Any

import zstandard
from s3util import RegionsEnv

from streamer.manifest import ArtifactRecord, build_manifest, encode

MiB = 1024 * 1024


def make_rich_tree(root: Path, media: int = 300_000) -> None:
    """Files of several modes, directories, symlinks (relative, dangling, absolute), a hard
    link, unicode names, an empty and a read-only directory, explicit mtimes."""
    (root / "app" / "lib").mkdir(parents=True)
    (root / "app" / "index.php").write_text("<?php echo 'hi'; ?>\n" * 50)
    (root / "app" / "lib" / "util.js").write_text("function f(x) { return x + 1; }\n" * 300)
    (root / "app" / "run.sh").write_text("#!/bin/sh\necho run\n")
    (root / "app" / "run.sh").chmod(0o755)
    (root / "app" / "secret.conf").write_text("private\n")
    (root / "app" / "secret.conf").chmod(0o600)
    (root / "app" / "group-writable").write_text("g\n")
    (root / "app" / "group-writable").chmod(0o664)
    os.link(root / "app" / "index.php", root / "app" / "index-hardlink.php")
    (root / "médias ünïcode").mkdir()
    (root / "médias ünïcode" / "photo 1.jpg").write_bytes(os.urandom(media))
    (root / "empty-dir").mkdir()
    (root / "readonly").mkdir()
    (root / "readonly" / "frozen.txt").write_text("frozen\n")
    (root / "link-to-index").symlink_to("app/index.php")
    (root / "dangling").symlink_to("nowhere/at/all")
    (root / "absolute-link").symlink_to("/var/lib/assets")
    for i, p in enumerate(sorted(root.rglob("*"), key=lambda p: -len(p.parts))):
        os.utime(p, (1_600_000_000 + i * 7, 1_600_000_000 + i * 7), follow_symlinks=False)
    (root / "readonly").chmod(0o555)
    os.utime(root / "readonly", (1_600_000_123, 1_600_000_123))
    os.utime(root, (1_600_000_999, 1_600_000_999))


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """name -> (type, mode, mtime in whole seconds, content digest or link target)."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            mtime = int(st.st_mtime)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", mtime, os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), mtime)
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), mtime, st.st_nlink,
                            hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def tar_bytes(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for ti, data in members:
            tar.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    return buf.getvalue()


def tar_member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE,
               linkname: str = "") -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = linkname
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return ti, data


def upload_fake_run(regions: RegionsEnv, bucket: str, build: str, stamp: str, tar: bytes,
                    indices: tuple[int, ...] = (1, 2, 3)) -> str:
    """A committed run made by hand: a zstd webroot and a manifest with its true SHA-256."""
    stored = zstandard.ZstdCompressor().compress(tar)
    key = f"{build}/hourly/{stamp}/webroot.tar.zst"
    manifest = build_manifest(
        build=build, periodicity="hourly", stamp=stamp, started="x", ended="x", host="h",
        version="0", artifacts=[ArtifactRecord("webroot", key, len(stored),
                                               hashlib.sha256(stored).hexdigest(), "zstd", 3,
                                               len(stored), 1, len(tar))],
        webroot={}, database=None, warnings=[])
    for i in indices:
        c = regions.client(i)
        try:
            c.create_bucket(Bucket=bucket)
        except c.exceptions.BucketAlreadyOwnedByYou:
            pass
        c.put_object(Bucket=bucket, Key=key, Body=stored)
        c.put_object(Bucket=bucket, Key=f"{build}/hourly/{stamp}/manifest.json", Body=encode(manifest))
    return key


def manifests_of(regions: RegionsEnv, bucket: str, index: int, build: str) -> list[dict[str, Any]]:
    keys = [k for k in regions.keys(index, bucket, build + "/") if k.endswith("/manifest.json")]
    return [json.loads(regions.get(index, bucket, k)) for k in sorted(keys)]


def corrupt(regions: RegionsEnv, bucket: str, index: int, key: str) -> None:
    """Overwrite one region's copy with altered bytes of the same length."""
    data = bytearray(regions.get(index, bucket, key))
    middle = len(data) // 2
    for i in range(middle, min(len(data), middle + 64)):
        data[i] ^= 0x5A
    regions.client(index).put_object(Bucket=bucket, Key=key, Body=bytes(data))
