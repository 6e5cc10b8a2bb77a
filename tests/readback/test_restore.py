"""Integration: restore against three real SeaweedFS regions, real tar, real databases."""

from __future__ import annotations

import json
import os
import tarfile
import time
import uuid
from pathlib import Path

import pytest
from s3util import RegionsEnv, run_streamer
from test_backup_database import db_env
from test_database import (  # noqa: F401  (fixtures)
    MySetup,
    PgSetup,
    my_fingerprint,
    my_setup,
    pg_fingerprint,
    pg_setup,
)
from treeutil import (
    corrupt,
    make_rich_tree,
    manifests_of,
    snapshot,
    tar_bytes,
    tar_member,
    upload_fake_run,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def backed_up(regions: RegionsEnv, bucket: str, streamer_env: dict[str, str],
              tmp_path: Path) -> tuple[dict[str, str], Path, dict[str, object]]:
    """One committed backup of a rich tree: (env, source webroot, manifest)."""
    root = tmp_path / "www"
    make_rich_tree(root)
    env = {**streamer_env, "STREAMER_WEBROOT": str(root)}
    run = run_streamer(["hourly", "rsite"], env)
    assert run.code == 0, run.stdout + run.stderr
    [manifest] = manifests_of(regions, bucket, 1, "rsite")
    return env, root, manifest


def test_backup_then_restore_gives_the_same_tree(
        backed_up: tuple[dict[str, str], Path, dict[str, object]], tmp_path: Path) -> None:
    env, root, manifest = backed_up
    target = tmp_path / "restored" / "www"  # its parent does not exist either
    run = run_streamer(["restore", "hourly", "rsite", "--webroot", str(target)], env)
    assert run.code == 0, run.stdout + run.stderr
    assert f"restored webroot of rsite/hourly/{manifest['stamp']} from region 1" in run.stdout
    expected = snapshot(root)
    assert snapshot(target) == expected
    assert expected["app/index.php"][3] == 2  # the hard link survived
    assert expected["readonly"][1] == 0o555
    assert int(target.stat().st_mtime) == int(root.stat().st_mtime)
    assert not [p for p in target.parent.iterdir() if p.name != "www"]  # no temporary left

    # Not into a non-empty directory without --force (exit 2, before any download).
    run = run_streamer(["restore", "hourly", "rsite", "--webroot", str(target)], env)
    assert run.code == 2 and "is not empty" in run.stderr and "--force" in run.stderr
    # --force: the backup's files replace the same names, other files stay.
    (target / "app" / "index.php").chmod(0o644)
    (target / "app" / "index.php").write_text("defaced")
    (target / "local-only.txt").write_text("mine")
    run = run_streamer(["restore", "hourly", "rsite", "--webroot", str(target), "--force",
                        "--at", str(manifest["stamp"])], env)
    assert run.code == 0, run.stdout + run.stderr
    after = snapshot(target)
    assert after.pop("local-only.txt")[0] == "file"
    assert after == expected


def test_restore_uses_the_next_region_when_the_first_is_down(
        backed_up: tuple[dict[str, str], Path, dict[str, object]], regions: RegionsEnv,
        tmp_path: Path) -> None:
    env, root, _ = backed_up
    down = {**env, "S3_HOST_BASE": "|".join(["http://127.0.0.1:9", *regions.endpoints[1:]])}
    target = tmp_path / "out"
    started = time.monotonic()
    run = run_streamer(["restore", "hourly", "rsite", "--webroot", str(target)], down)
    assert run.code == 0, run.stdout + run.stderr
    assert "from region 2" in run.stdout
    assert "region 1 (127.0.0.1:9)" in run.stderr  # said once that it did not answer
    assert snapshot(target) == snapshot(root)
    assert time.monotonic() - started < 30


def test_restore_uses_the_next_region_when_the_first_copy_is_corrupt(
        backed_up: tuple[dict[str, str], Path, dict[str, object]], regions: RegionsEnv,
        bucket: str, tmp_path: Path) -> None:
    env, root, manifest = backed_up
    key = manifest["artifacts"]["webroot"]["key"]  # type: ignore[index]
    corrupt(regions, bucket, 1, key)
    target = tmp_path / "out"
    run = run_streamer(["restore", "hourly", "rsite", "--webroot", str(target)], env)
    assert run.code == 0, run.stdout + run.stderr
    assert "webroot from region 1" in run.stderr and "from the next region" in run.stderr
    assert "from region 2" in run.stdout
    assert snapshot(target) == snapshot(root)

    # Only the damaged region: fails, and leaves no half-restored tree.
    only1 = tmp_path / "only1"
    run = run_streamer(["restore", "hourly", "rsite", "--webroot", str(only1), "--region", "1"], env)
    assert run.code == 1, run.stdout + run.stderr
    assert "failed in every region" in run.stderr and "Traceback" not in run.stderr
    assert not only1.exists() or list(only1.iterdir()) == []


def test_restore_errors_are_one_line(backed_up: tuple[dict[str, str], Path, dict[str, object]],
                                     tmp_path: Path) -> None:
    env, _, _ = backed_up
    for args, code, text in [
        (["restore", "hourly", "nosuch", "--webroot", str(tmp_path / "a")], 1, "no committed backup"),
        (["restore", "hourly", "rsite", "--at", "yesterday"], 2, "is not a stamp"),
        (["restore", "hourly", "rsite", "--at", "20200101T000000Z", "--webroot", str(tmp_path / "b")],
         1, "no committed backup rsite/hourly/20200101T000000Z"),
        (["restore", "hourly", "rsite", "--region", "7", "--webroot", str(tmp_path / "c")], 2,
         "--region 7"),
        (["restore", "hourly", "rsite", "--database"], 2, "--database needs"),
    ]:
        run = run_streamer(args, env)
        assert run.code == code, (args, run.stdout, run.stderr)
        assert text in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr


@pytest.mark.parametrize("attack", ["dotdot", "absolute", "symlink-write-through"])
def test_a_malicious_archive_restores_nothing_and_fails(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path,
        attack: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("precious")
    before = tar_member("./a-good-file.txt", b"written first, must not survive")
    etc_x = f"/etc/x-streamer-test-{uuid.uuid4().hex}"  # as in the issue, but unique
    evil = {
        "dotdot": [tar_member("../escape", b"x"), tar_member("./../../escape2", b"x")],
        "absolute": [tar_member(str(outside / "abs"), b"x"), tar_member(etc_x, b"x")],
        "symlink-write-through": [tar_member("./evil", kind=tarfile.SYMTYPE, linkname=str(outside)),
                                  tar_member("./evil/pwned", b"x")],
    }[attack]
    upload_fake_run(regions, bucket, "evil", "20240101T000000Z",
                    tar_bytes(tar_member("./", kind=tarfile.DIRTYPE), before, *evil))
    target = tmp_path / "work" / "target"
    run = run_streamer(["restore", "hourly", "evil", "--webroot", str(target)], streamer_env)
    assert run.code == 1, run.stdout + run.stderr
    assert "unsafe archive member" in run.stderr and "failed in every region" in run.stderr
    assert "Traceback" not in run.stderr
    assert sorted(p.name for p in outside.iterdir()) == ["keep"]
    assert not os.path.lexists(etc_x)
    assert not (tmp_path / "escape").exists() and not (tmp_path / "work" / "escape").exists()
    assert not target.exists() or list(target.iterdir()) == []


async def test_postgres_database_restores_into_a_fresh_database(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path,
        pg_setup: PgSetup) -> None:  # noqa: F811
    s = pg_setup
    root = tmp_path / "www"
    make_rich_tree(root, media=10_000)
    env = db_env(streamer_env, s.cfg(), root)
    run = run_streamer(["daily", "pgr"], env)
    assert run.code == 0, run.stdout + run.stderr
    [manifest] = manifests_of(regions, bucket, 1, "pgr")
    # Region 1's dump is damaged: psql is killed before it commits, region 2 restores.
    corrupt(regions, bucket, 1, manifest["artifacts"]["database"]["key"])
    restore_env = db_env(streamer_env, s.restore_cfg(), root)
    target = tmp_path / "out"
    run = run_streamer(["restore", "daily", "pgr", "--database", "--webroot", str(target)],
                       restore_env)
    assert run.code == 0, run.stdout + run.stderr
    assert "database from region 1" in run.stderr
    assert f"restored database of pgr/daily/{manifest['stamp']} from region 2" in run.stdout
    assert await pg_fingerprint(s.target) == await pg_fingerprint(s.source)
    assert snapshot(target) == snapshot(root)
    assert s.password not in run.stdout + run.stderr


async def test_mariadb_database_restores_into_a_fresh_database(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path,
        my_setup: MySetup) -> None:  # noqa: F811
    s = my_setup
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.php").write_text("<?php ?>\n")
    env = db_env(streamer_env, s.cfg(), root)
    run = run_streamer(["daily", "myr"], env)
    assert run.code == 0, run.stdout + run.stderr
    restore_env = db_env(streamer_env, s.cfg(name=s.target), root)
    run = run_streamer(["restore", "daily", "myr", "--database", "--region", "3"], restore_env)
    assert run.code == 0, run.stdout + run.stderr
    assert "from region 3" in run.stdout
    assert await my_fingerprint(s.target) == await my_fingerprint(s.source)
    assert s.password not in run.stdout + run.stderr
    assert json.dumps(manifests_of(regions, bucket, 3, "myr")).count(s.password) == 0
