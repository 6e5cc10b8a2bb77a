"""Integration: the backup CLI against three real SeaweedFS regions and real tar."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tarfile
import time
import zlib
from pathlib import Path

import pytest
import zstandard
from s3util import STREAMER, RegionsEnv, run_streamer

from streamer import digests

MiB = 1024 * 1024


def make_tree(root: Path) -> None:
    (root / "app" / "lib").mkdir(parents=True)
    (root / "app" / "index.php").write_text("<?php echo 'hi'; ?>\n" * 50)
    (root / "app" / "lib" / "util.js").write_text("function f(x) { return x + 1; }\n" * 300)
    (root / "app" / "run.sh").write_text("#!/bin/sh\necho run\n")
    (root / "app" / "run.sh").chmod(0o755)
    (root / "app" / "secret.conf").write_text("private\n")
    (root / "app" / "secret.conf").chmod(0o600)
    (root / "médias ünïcode").mkdir()
    (root / "médias ünïcode" / "photo 1.jpg").write_bytes(os.urandom(300_000))
    (root / "empty-dir").mkdir()
    (root / "link-to-index").symlink_to("app/index.php")
    (root / "dangling").symlink_to("nowhere/at/all")
    for excluded in ("cache", "tmp/sessions", "images"):
        (root / excluded).mkdir(parents=True)
        (root / excluded / "junk.bin").write_bytes(b"x" * 1000)
    (root / "app" / "cache").mkdir()  # same name deeper down: not excluded
    (root / "app" / "cache" / "keep.txt").write_text("kept\n")


def source_members(root: Path, excludes: set[str]) -> dict[str, tuple[str, int, str]]:
    """name -> (type, mode, content digest or link target) of the tree on disk."""
    out: dict[str, tuple[str, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        for name in list(dirnames):
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if rel in excludes:
                dirnames.remove(name)
                continue
            p = Path(dirpath) / name
            if p.is_symlink():
                out[rel] = ("sym", 0, os.readlink(p))
                dirnames.remove(name)
            else:
                out[rel] = ("dir", stat.S_IMODE(p.lstat().st_mode), "")
        for name in filenames:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if rel in excludes:
                continue
            p = Path(dirpath) / name
            if p.is_symlink():
                out[rel] = ("sym", 0, os.readlink(p))
            else:
                out[rel] = ("file", stat.S_IMODE(p.lstat().st_mode),
                            hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def decompress(data: bytes, compression: str) -> bytes:
    if compression == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(  # every frame: the level may change
                   io.BytesIO(data), read_across_frames=True).read()
    if compression == "gzip":
        return zlib.decompress(data, 16 + zlib.MAX_WBITS)
    return data


def stored_members(tar_bytes: bytes) -> dict[str, tuple[str, int, str]]:
    out: dict[str, tuple[str, int, str]] = {}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        for m in tar.getmembers():
            name = os.path.normpath(m.name)
            if name == ".":
                continue
            if m.issym():
                out[name] = ("sym", 0, m.linkname)
            elif m.isdir():
                out[name] = ("dir", m.mode, "")
            else:
                f = tar.extractfile(m)
                assert f is not None
                out[name] = ("file", m.mode, hashlib.sha256(f.read()).hexdigest())
    return out


def manifests(regions: RegionsEnv, bucket: str, index: int) -> list[dict]:  # type: ignore[type-arg]
    keys = [k for k in regions.keys(index, bucket) if k.endswith("/manifest.json")]
    return [json.loads(regions.get(index, bucket, k)) for k in sorted(keys)]


def test_tree_lands_identical_in_every_region(regions: RegionsEnv, bucket: str,
                                              streamer_env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "www"
    make_tree(root)
    env = {**streamer_env, "STREAMER_WEBROOT": str(root),
           "EXCLUDE_FROM_BACKUP": "cache:tmp/sessions", "DIRECTORIES_TO_MOUNT": "images"}
    run = run_streamer(["HOURLY", "site-1"], env)
    assert run.code == 0, run.stderr
    assert "committed site-1/hourly/" in run.stdout
    expected = source_members(root, {"cache", "tmp/sessions", "images"})
    assert "app/cache/keep.txt" in expected and "tmp" in expected
    for i in (1, 2, 3):
        [m] = manifests(regions, bucket, i)
        art = m["artifacts"]["webroot"]
        assert art["key"].startswith(f"site-1/hourly/{m['stamp']}/webroot.tar.zst")
        data = regions.get(i, bucket, art["key"])
        assert len(data) == art["stored_size"]
        whole = digests.PartsHash(art["parts"]["algorithm"], art["parts"]["sizes"])
        whole.update(data)  # STREAMER_CHECKSUM=auto: the composite of the part CRCs
        assert whole.hexdigest() == art["parts_sha256"] and "sha256" not in art
        assert art["compression"] == "zstd" and art["part_count"] == 1
        assert m["build_identifier"] == "site-1" and m["periodicity"] == "hourly"
        assert m["webroot"]["excludes"] == ["cache", "tmp/sessions", "images"]
        assert m["webroot"]["files"] == len(expected) + 1  # plus "./"
        assert m["database"] is None and m["format"] == 1
        assert stored_members(decompress(data, "zstd")) == expected
    assert regions.uploads(1, bucket) == []
    assert "streamer-test-secret" not in run.stdout + run.stderr


@pytest.mark.parametrize("compression,suffix", [("gzip", ".gz"), ("none", "")])
def test_other_compressions(regions: RegionsEnv, bucket: str, streamer_env: dict[str, str],
                            tmp_path: Path, compression: str, suffix: str) -> None:
    root = tmp_path / "www"
    make_tree(root)
    env = {**streamer_env, "STREAMER_WEBROOT": str(root), "STREAMER_COMPRESSION": compression}
    run = run_streamer(["daily", "site-2"], env)
    assert run.code == 0, run.stderr
    [m] = manifests(regions, bucket, 2)
    key = m["artifacts"]["webroot"]["key"]
    assert key.endswith("/webroot.tar" + suffix)
    assert stored_members(decompress(regions.get(2, bucket, key), compression)) == \
        source_members(root, set())


def test_persisted_asset_mounts_are_excluded(regions: RegionsEnv, bucket: str,
                                             streamer_env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "www"
    make_tree(root)
    assets = root / "assets"
    assets.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(assets)], check=True)
    try:
        (assets / "big-asset.bin").write_bytes(b"a" * 1000)
        env = {**streamer_env, "STREAMER_WEBROOT": str(root), "PERSIST_ASSETS_TO_DATASTORE": "1"}
        run = run_streamer(["weekly", "site-3"], env)
    finally:
        subprocess.run(["umount", str(assets)], check=True)
    assert run.code == 0, run.stderr
    [m] = manifests(regions, bucket, 3)
    assert m["webroot"]["excludes"] == ["assets"]
    names = stored_members(decompress(regions.get(3, bucket, m["artifacts"]["webroot"]["key"]), "zstd"))
    assert "app/index.php" in names
    assert not any(n == "assets" or n.startswith("assets/") for n in names)


def _big_tree(root: Path, total: int) -> None:
    """Incompressible files (media-like), written in 8 MiB blocks."""
    root.mkdir(parents=True, exist_ok=True)
    block = os.urandom(8 * MiB)
    n_files = max(1, total // (64 * MiB))
    for i in range(n_files):
        with open(root / f"media-{i:03}.bin", "wb") as f:
            for j in range(64 // 8):
                f.write(block[j:] + block[:j])  # distinct content per block
    (root / "index.php").write_text("<?php echo 1; ?>\n")


def test_memory_stays_under_budget_and_nothing_is_staged(regions: RegionsEnv, bucket: str,
                                                         streamer_env: dict[str, str],
                                                         tmp_path: Path) -> None:
    """A 1 GiB webroot with a 64 MiB budget: peak RSS <= baseline + budget, no disk writes.

    The baseline is the peak RSS of the same command backing up a tiny webroot
    (interpreter, libraries, clients, zstd contexts): what does not grow with input."""
    budget = 64 * MiB
    env = {**streamer_env, "STREAMER_MEMORY_BUDGET": "64MiB"}
    small = tmp_path / "small"
    small.mkdir()
    (small / "index.php").write_text("<?php ?>\n")
    base = run_streamer(["manual", "rss-small"], {**env, "STREAMER_WEBROOT": str(small)})
    assert base.code == 0, base.stderr

    big = tmp_path / "big"
    _big_tree(big, 1024 * MiB)
    size = sum(p.stat().st_size for p in big.iterdir())
    assert size >= 1024 * MiB
    shutil.rmtree(Path(env["TMPDIR"]))
    Path(env["TMPDIR"]).mkdir()
    run = run_streamer(["manual", "rss-big"], {**env, "STREAMER_WEBROOT": str(big)})
    assert run.code == 0, run.stderr
    baseline = base.max_rss_kib * 1024
    peak = run.max_rss_kib * 1024
    print(f"baseline {baseline / MiB:.1f} MiB, peak {peak / MiB:.1f} MiB, budget {budget / MiB:.0f} MiB")
    assert peak <= baseline + budget, (peak, baseline)
    # Nothing staged: TMPDIR stays empty and the process tree wrote (almost) no
    # bytes to storage -- the backup's size would be 1 GiB.
    assert list(Path(env["TMPDIR"]).iterdir()) == []
    assert run.written_bytes < 4 * MiB, run.written_bytes
    [m] = [m for m in manifests(regions, bucket, 1) if m["build_identifier"] == "rss-big"]
    assert m["artifacts"]["webroot"]["part_count"] > 1
    assert m["artifacts"]["webroot"]["stored_size"] >= size


def test_refused_region_with_quorum_two_is_partial(regions: RegionsEnv, bucket: str,
                                                   streamer_env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "www"
    make_tree(root)
    endpoints = [*regions.endpoints[:2], "http://127.0.0.1:9"]  # nothing listens on port 9
    env = {**streamer_env, "STREAMER_WEBROOT": str(root), "S3_HOST_BASE": "|".join(endpoints),
           "STREAMER_QUORUM": "2"}
    run = run_streamer(["hourly", "site-4"], env)
    assert run.code == 3, run.stdout + run.stderr
    assert "region 3 (http://127.0.0.1:9): failed" in run.stdout
    for i in (1, 2):
        assert len(manifests(regions, bucket, i)) == 1


def test_refused_region_with_default_quorum_commits_in_the_others(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path) -> None:
    """The default quorum (1): a region that refuses connections does not stop
    the backup; the other two commit and the run says so with exit 3."""
    root = tmp_path / "www"
    make_tree(root)
    endpoints = [*regions.endpoints[:2], "http://127.0.0.1:9"]
    env = {**streamer_env, "STREAMER_WEBROOT": str(root), "S3_HOST_BASE": "|".join(endpoints)}
    run = run_streamer(["hourly", "site-5"], env)
    assert run.code == 3, run.stdout + run.stderr
    assert "region 3 (http://127.0.0.1:9): failed" in run.stdout and "Traceback" not in run.stderr
    for i in (1, 2):
        assert len(manifests(regions, bucket, i)) == 1


def test_two_regions_down_commit_in_the_survivor(regions: RegionsEnv, bucket: str,
                                                 streamer_env: dict[str, str],
                                                 tmp_path: Path) -> None:
    root = tmp_path / "www"
    make_tree(root)
    endpoints = [regions.endpoints[0], "http://127.0.0.1:9", "http://127.0.0.1:7"]
    env = {**streamer_env, "STREAMER_WEBROOT": str(root), "S3_HOST_BASE": "|".join(endpoints),
           "STREAMER_QUORUM": "1"}
    run = run_streamer(["hourly", "site-5b"], env)
    assert run.code == 3, run.stdout + run.stderr
    assert len(manifests(regions, bucket, 1)) == 1


def test_refused_region_with_quorum_all_commits_nothing(regions: RegionsEnv, bucket: str,
                                                        streamer_env: dict[str, str],
                                                        tmp_path: Path) -> None:
    root = tmp_path / "www"
    make_tree(root)
    endpoints = [*regions.endpoints[:2], "http://127.0.0.1:9"]
    env = {**streamer_env, "STREAMER_WEBROOT": str(root), "S3_HOST_BASE": "|".join(endpoints),
           "STREAMER_QUORUM": "all"}
    run = run_streamer(["hourly", "site-5"], env)
    assert run.code == 1, run.stdout + run.stderr
    assert "127.0.0.1:9" in run.stderr and "Traceback" not in run.stderr
    errors = [ln for ln in run.stderr.splitlines() if ln.startswith("streamer:")]
    assert len(errors) == 1, run.stderr  # one error line (warnings may precede it)
    for i in (1, 2):
        assert regions.keys(i, bucket) == []
        assert regions.uploads(i, bucket) == []


def _last_in_readdir_order(root: Path, first: str) -> Path:
    """A new directory under ``root`` that readdir lists after ``first`` (the
    order GNU tar archives a directory's entries in, by default): names are
    tried until the file system's order puts it last."""
    for n in range(200):
        candidate = root / f"locked-{n}"
        candidate.mkdir()
        if os.listdir(root) == [first, candidate.name]:
            return candidate
        candidate.rmdir()
    raise AssertionError(f"no name that {root}'s readdir lists after {first}")


def test_tar_failure_after_parts_were_uploaded_commits_nothing(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path) -> None:
    """tar exits 2 (an unreadable directory: root without CAP_DAC_*, as a web
    user would be) only after every region has acknowledged parts: the
    unreadable directory is read last, after 96 MiB of incompressible data that
    cannot pass a 32 MiB budget unless parts are sent.  Nothing is committed and
    no multipart upload is left behind."""
    root = tmp_path / "www"
    root.mkdir()
    block = os.urandom(8 * MiB)
    with open(root / "media.bin", "wb") as f:
        for j in range(12):
            f.write(block[j:] + block[:j])
    locked = _last_in_readdir_order(root, "media.bin")
    (locked / "f").write_text("x")
    locked.chmod(0)
    env = {**streamer_env, "STREAMER_WEBROOT": str(root), "STREAMER_MEMORY_BUDGET": "32MiB"}
    try:
        run = run_streamer(["hourly", "site-6", "--json"], env,
                           prefix=["setpriv", "--bounding-set=-dac_override,-dac_read_search"])
    finally:
        locked.chmod(0o755)
    assert run.code == 1, run.stdout + run.stderr
    assert "tar exited with status 2" in run.stderr and "Permission denied" in run.stderr
    summary = json.loads(run.stdout)
    assert summary["exit_code"] == 1 and summary["regions_committed"] == 0
    # The run's own report: every region had acknowledged parts before tar failed
    # (at least (96 - 32) MiB less zstd's window, in parts of at most 16 MiB).
    acknowledged = {r["index"]: r["parts_acknowledged"] for r in summary["regions"]}
    assert sorted(acknowledged) == [1, 2, 3]
    assert all(n >= 3 for n in acknowledged.values()), acknowledged
    for i in (1, 2, 3):
        assert regions.keys(i, bucket) == []
        assert regions.uploads(i, bucket) == []


def test_config_error_is_exit_2_before_any_upload(regions: RegionsEnv, bucket: str,
                                                  streamer_env: dict[str, str], tmp_path: Path) -> None:
    env = {**streamer_env, "STREAMER_WEBROOT": str(tmp_path / "missing")}
    run = run_streamer(["hourly", "site-7"], env)
    assert run.code == 2
    assert run.stderr.strip().count("\n") == 0 and "is not a directory" in run.stderr
    run = run_streamer(["hourly", "bad/id"], env)
    assert run.code == 2 and "invalid BUILD_IDENTIFIER" in run.stderr
    run = run_streamer(["yearly", "x"], env)
    assert run.code == 2
    env2 = {**streamer_env, "STREAMER_MEMORY_BUDGET": "lots"}
    run = run_streamer(["hourly", "site-7"], env2)
    assert run.code == 2 and "STREAMER_MEMORY_BUDGET" in run.stderr
    for i in (1, 2, 3):
        assert regions.keys(i, bucket) == []


def test_stalled_region_is_dropped_and_the_others_commit(regions: RegionsEnv, bucket: str,
                                                         streamer_env: dict[str, str],
                                                         tmp_path: Path) -> None:
    """Region 3 freezes (SIGSTOP) mid-run: after the stall timeout it is dropped, its
    upload abandoned, and the other two commit (exit 3 under STREAMER_QUORUM=2).
    The stall timeout is 6 s, not less: a healthy region on a loaded 2-core
    machine must not be dropped too (each phase left waits that long on region 3)."""
    root = tmp_path / "www"
    _big_tree(root, 192 * MiB)
    env = {**streamer_env, "STREAMER_WEBROOT": str(root), "STREAMER_QUORUM": "2",
           "STREAMER_STALL_TIMEOUT": "6", "STREAMER_REQUEST_TIMEOUT": "8",
           "STREAMER_MEMORY_BUDGET": "64MiB"}
    regions_cmd = [str(Path(__file__).parents[2] / "scripts" / "regions")]
    proc = subprocess.Popen([*STREAMER, "hourly", "stall"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not regions.uploads(3, bucket):  # region 3 has started its upload
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        subprocess.run([*regions_cmd, "pause", "3"], check=True, capture_output=True)
        try:
            out, err = proc.communicate(timeout=300)
        finally:
            subprocess.run([*regions_cmd, "resume", "3"], check=True, capture_output=True)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 3, out + err
    assert re.search(r"region 3 \(.*\): failed: .*(no progress|timed out)", out), out
    for i in (1, 2):
        assert len(manifests(regions, bucket, i)) == 1
    assert manifests(regions, bucket, 3) == []


def test_sigterm_aborts_in_flight_uploads_with_exit_130(regions: RegionsEnv, bucket: str,
                                                        streamer_env: dict[str, str],
                                                        tmp_path: Path) -> None:
    root = tmp_path / "www"
    _big_tree(root, 192 * MiB)
    env = {**streamer_env, "STREAMER_WEBROOT": str(root), "STREAMER_MEMORY_BUDGET": "64MiB"}
    proc = subprocess.Popen([*STREAMER, "hourly", "interrupted"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not all([u for u in regions.uploads(i, bucket) if not u.startswith("streamer-probe/")]
                      for i in (1, 2, 3)):  # the artifacts' uploads, not the checksum probe's
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, out + err
    assert "interrupted" in err and "Traceback" not in err
    for i in (1, 2, 3):
        assert regions.uploads(i, bucket) == []
        assert regions.keys(i, bucket) == []
