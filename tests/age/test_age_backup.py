"""Integration: encrypted backups against three real SeaweedFS regions, read back
by the stock age tool (age -d | zstd -d | tar -x) and by `streamer restore`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from s3util import RegionsEnv, run_streamer
from test_backup_database import db_env
from test_database import PgSetup, pg_fingerprint, pg_setup  # noqa: F401  (fixtures)
from treeutil import make_rich_tree, manifests_of, snapshot

pytestmark = pytest.mark.anyio

AGE_HEADER = b"age-encryption.org/v1\n-> X25519 "
EXCLUDED = "uploads-excluded-dir"


def keygen(directory: Path, name: str = "key.txt") -> tuple[Path, str, str]:
    """A fresh identity file from the stock age-keygen: (path, public key, secret line)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / name
    subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    key.chmod(0o600)
    public = subprocess.run(["age-keygen", "-y", str(key)], check=True, capture_output=True,
                            text=True).stdout.strip()
    secret = next(line for line in key.read_text().splitlines() if line.startswith("AGE-SECRET"))
    return key, public, secret


def expected(root: Path) -> dict[str, object]:
    """The tree as a restore must give it: the excluded directory left out."""
    return {k: v for k, v in snapshot(root).items() if not k.startswith(EXCLUDED)}


def stored_keys(regions: RegionsEnv, bucket: str, index: int, build: str) -> list[str]:
    return [k for k in regions.keys(index, bucket, build + "/") if not k.endswith("/manifest.json")]


@pytest.fixture
def encrypted(regions: RegionsEnv, bucket: str, streamer_env: dict[str, str],
              tmp_path: Path) -> tuple[dict[str, str], Path, Path, str, dict[str, object]]:
    """One committed encrypted backup of a rich tree: (env, webroot, identity, secret, manifest)."""
    root = tmp_path / "www"
    make_rich_tree(root, media=200_000)
    (root / "uploads-excluded-dir").mkdir()
    key, public, secret = keygen(tmp_path / "keys")
    env = {**streamer_env, "STREAMER_WEBROOT": str(root), "STREAMER_AGE_RECIPIENTS": public,
           "EXCLUDE_FROM_BACKUP": "uploads-excluded-dir"}
    # An operator may set both: the backup needs only the public key, and
    # neither the key's path nor its contents reach a child, a hook or the summary.
    hook_env = tmp_path / "hook-env"
    run = run_streamer(["hourly", "esite", "--json", "--on-success", f"env > {hook_env}"],
                       {**env, "STREAMER_AGE_IDENTITY": str(key)})
    assert run.code == 0, run.stdout + run.stderr
    assert secret not in run.stdout + run.stderr and str(key) not in run.stdout
    assert "STREAMER_EXIT_CODE=0" in hook_env.read_text()
    assert "STREAMER_AGE_IDENTITY" not in hook_env.read_text()
    [manifest] = manifests_of(regions, bucket, 1, "esite")
    return env, root, key, secret, manifest


def test_every_region_holds_the_same_age_file_that_stock_age_decrypts(
        encrypted: tuple[dict[str, str], Path, Path, str, dict[str, object]],
        regions: RegionsEnv, bucket: str, tmp_path: Path) -> None:
    _, root, key, _, _ = encrypted
    copies = []
    for index in (1, 2, 3):
        [name] = stored_keys(regions, bucket, index, "esite")
        assert name.endswith("/webroot.tar.zst.age")
        copies.append(regions.get(index, bucket, name))
    assert copies[0].startswith(AGE_HEADER)
    assert copies[0] == copies[1] == copies[2]  # encrypted once, the same ciphertext everywhere
    out = tmp_path / "by-age"
    out.mkdir()
    pipeline = subprocess.run(
        f"age -d -i {key} | zstd -d | tar -x -C {out}", shell=True, input=copies[0],
        capture_output=True, check=False)
    assert pipeline.returncode == 0, pipeline.stderr
    assert snapshot(out) == expected(root)


def test_the_manifest_reveals_no_file_name_and_restore_needs_the_identity(
        encrypted: tuple[dict[str, str], Path, Path, str, dict[str, object]],
        regions: RegionsEnv, bucket: str, tmp_path: Path) -> None:
    env, root, key, secret, manifest = encrypted
    stored = regions.get(2, bucket, f"esite/hourly/{manifest['stamp']}/manifest.json").decode()
    for revealing in ("util.js", "index-hardlink.php", "photo 1.jpg", "uploads-excluded-dir",
                      str(root)):
        assert revealing not in stored, revealing
    section = json.loads(stored)["encryption"]
    assert section["recipients"] == [env["STREAMER_AGE_RECIPIENTS"]]
    assert json.loads(stored)["artifacts"]["webroot"]["encryption"] == "age"
    # list works without the identity: sizes and ages only
    listed = run_streamer(["list", "hourly", "esite", "--json"], env)
    assert listed.code == 0, listed.stderr
    assert '"size"' in listed.stdout
    target = tmp_path / "restored"
    run = run_streamer(["restore", "hourly", "esite", "--webroot", str(target)],
                       {**env, "STREAMER_AGE_IDENTITY": str(key)})
    assert run.code == 0, run.stdout + run.stderr
    assert snapshot(target) == expected(root)
    assert secret not in run.stdout + run.stderr


def test_restore_errors_are_one_line_and_exit_2(
        encrypted: tuple[dict[str, str], Path, Path, str, dict[str, object]],
        tmp_path: Path) -> None:
    env, _, key, secret, _ = encrypted
    stranger, stranger_public, stranger_secret = keygen(tmp_path / "other")
    loose = tmp_path / "loose.txt"
    loose.write_text(key.read_text())
    loose.chmod(0o644)
    cases = [
        ({}, "is encrypted (age) and no identity is set"),
        ({"STREAMER_AGE_IDENTITY": str(stranger)}, "(wrong identity)"),
        ({"STREAMER_AGE_IDENTITY": str(loose)}, "is readable by group or others"),
    ]
    for extra, expected in cases:
        target = tmp_path / f"t{len(extra)}-{len(expected)}"
        run = run_streamer(["restore", "hourly", "esite", "--webroot", str(target)], {**env, **extra})
        assert run.code == 2, run.stdout + run.stderr
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], run.stderr
        assert secret not in run.stderr and stranger_secret not in run.stderr
        assert not target.exists() or not any(target.iterdir())
    assert stranger_public in run_streamer(
        ["restore", "hourly", "esite", "--webroot", str(tmp_path / "w")],
        {**env, "STREAMER_AGE_IDENTITY": str(stranger)}).stderr


def test_verify_and_heal_work_on_ciphertext_without_the_identity(
        encrypted: tuple[dict[str, str], Path, Path, str, dict[str, object]],
        regions: RegionsEnv, bucket: str, tmp_path: Path) -> None:
    env, root, key, _, _ = encrypted
    run = run_streamer(["verify", "hourly", "esite"], env)
    assert run.code == 0, run.stdout + run.stderr
    assert run.stdout.count(": ok: ") == 3
    # region 2 loses the run; heal copies the ciphertext back from another region
    client = regions.client(2)
    for name in regions.keys(2, bucket, "esite/"):
        client.delete_object(Bucket=bucket, Key=name)
    run = run_streamer(["heal", "hourly", "esite"], env)
    assert run.code == 0, run.stdout + run.stderr
    [name] = stored_keys(regions, bucket, 2, "esite")
    assert regions.get(2, bucket, name) == regions.get(1, bucket, name)
    target = tmp_path / "from-2"
    run = run_streamer(["restore", "hourly", "esite", "--webroot", str(target), "--region", "2"],
                       {**env, "STREAMER_AGE_IDENTITY": str(key)})
    assert run.code == 0, run.stdout + run.stderr
    assert snapshot(target) == expected(root)


def test_verify_with_the_identity_finds_a_run_it_cannot_open(
        encrypted: tuple[dict[str, str], Path, Path, str, dict[str, object]],
        tmp_path: Path) -> None:
    """The run's key opens its header in every region; a stranger's key (the
    case of a mistyped recipient at backup) fails verify, naming the keys."""
    env, _, key, secret, _ = encrypted
    run = run_streamer(["verify", "hourly", "esite"], {**env, "STREAMER_AGE_IDENTITY": str(key)})
    assert run.code == 0, run.stdout + run.stderr
    assert run.stdout.count(": ok: ") == 3
    stranger, _, stranger_secret = keygen(tmp_path / "other")
    run = run_streamer(["verify", "hourly", "esite"],
                       {**env, "STREAMER_AGE_IDENTITY": str(stranger)})
    assert run.code == 1, run.stdout + run.stderr
    assert run.stdout.count("BAD") == 3 and "(wrong identity)" in run.stdout, run.stdout
    assert secret not in run.stdout + run.stderr and stranger_secret not in run.stdout + run.stderr


async def test_an_encrypted_database_reveals_no_table_name_and_restores(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path,
        pg_setup: PgSetup) -> None:  # noqa: F811
    s = pg_setup
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.php").write_text("<?php ?>\n")
    key, public, secret = keygen(tmp_path / "keys")
    env = {**db_env(streamer_env, s.cfg(), root), "STREAMER_AGE_RECIPIENTS": public}
    run = run_streamer(["daily", "edb"], env)
    assert run.code == 0, run.stdout + run.stderr
    [manifest] = manifests_of(regions, bucket, 3, "edb")
    stored = json.dumps(manifest)
    # table names of the fixture (tests/db/test_database.py): none in the manifest
    for table in ("empty_t", "Items", "public.blobs", "texts"):
        assert table not in stored, table
    assert "row" not in stored
    dump = regions.get(3, bucket, manifest["artifacts"]["database"]["key"])
    assert dump.startswith(AGE_HEADER)
    plain = subprocess.run(f"age -d -i {key} | zstd -d", shell=True, input=dump,
                           capture_output=True, check=True).stdout
    assert b"CREATE TABLE public.empty_t" in plain
    restore_env = {**db_env(streamer_env, s.restore_cfg(), root), "STREAMER_AGE_IDENTITY": str(key)}
    run = run_streamer(["restore", "daily", "edb", "--database"], restore_env)
    assert run.code == 0, run.stdout + run.stderr
    assert await pg_fingerprint(s.target) == await pg_fingerprint(s.source)
    assert secret not in run.stdout + run.stderr and s.password not in stored
