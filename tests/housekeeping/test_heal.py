"""``streamer heal`` and the backup's own heal, against the three SeaweedFS regions."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from s3util import RegionsEnv, run_streamer


def _closed_port_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once closed


def _with_region_2_down(env: dict[str, str], regions: RegionsEnv) -> dict[str, str]:
    hosts = list(regions.endpoints)
    hosts[1] = _closed_port_endpoint()
    return {**env, "S3_HOST_BASE": "|".join(hosts), "STREAMER_REQUEST_TIMEOUT": "5"}


def _webroot(tmp_path: Path, content: str) -> Path:
    root = tmp_path / "www"
    root.mkdir(exist_ok=True)
    (root / "index.php").write_text(content)
    (root / "data.bin").write_bytes(content.encode() * 200_000)
    return root


def _stamps(regions: RegionsEnv, bucket: str, index: int, build: str) -> set[str]:
    return {k.split("/")[2] for k in regions.keys(index, bucket, f"{build}/hourly/")
            if k.endswith("/manifest.json")}


def test_heal_after_an_exit_3_makes_verify_pass_in_every_region(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path) -> None:
    env = {**streamer_env, "STREAMER_WEBROOT": str(_webroot(tmp_path, "one")),
           "STREAMER_HEAL_LIMIT": "0"}
    run = run_streamer(["hourly", "hsite"], _with_region_2_down(env, regions))
    assert run.code == 3, run.stdout + run.stderr
    assert "warning: region 2 lacks this run; `streamer heal`" in run.stdout
    [stamp] = _stamps(regions, bucket, 1, "hsite")
    assert _stamps(regions, bucket, 2, "hsite") == set()

    listed = run_streamer(["list", "--json"], env)
    assert listed.code == 0, listed.stderr
    doc = json.loads(listed.stdout)
    assert doc["missing"] == [{"build": "hsite", "periodicity": "hourly", "stamp": stamp,
                               "regions": [2]}]
    lacked = {"build": "hsite", "periodicity": "hourly", "stamp": stamp}
    assert [r["lacks"] for r in doc["regions"]] == [[], [lacked], []]
    verify = run_streamer(["verify", "hourly", "hsite"], env)
    assert verify.code == 1 and "region 2 (127.0.0.1:" in verify.stdout
    assert f"lacks {stamp}, which region(s) 1, 3 hold" in verify.stdout

    healed = run_streamer(["heal", "hourly", "hsite"], env)
    assert healed.code == 0, healed.stdout + healed.stderr
    assert f"heal hsite/hourly/{stamp}: region 2 (" in healed.stdout
    verify = run_streamer(["verify", "hourly", "hsite"], env)
    assert verify.code == 0, verify.stdout + verify.stderr
    assert verify.stdout.count(": ok: ") == 3
    manifest = f"hsite/hourly/{stamp}/manifest.json"
    assert regions.get(2, bucket, manifest) == regions.get(1, bucket, manifest)
    assert all(regions.uploads(i, bucket) == [] for i in (1, 2, 3))

    again = run_streamer(["heal"], env)  # nothing left to do, whatever the scope
    assert again.code == 0 and "0 copies made" in again.stdout, again.stdout + again.stderr


def test_heal_replaces_a_damaged_copy_of_the_same_size(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path) -> None:
    env = {**streamer_env, "STREAMER_WEBROOT": str(_webroot(tmp_path, "two"))}
    assert run_streamer(["hourly", "dsite"], env).code == 0
    [stamp] = _stamps(regions, bucket, 3, "dsite")
    key = next(k for k in regions.keys(3, bucket, f"dsite/hourly/{stamp}/") if "webroot" in k)
    original = regions.get(3, bucket, key)
    other = bytes(b ^ 0x5A for b in original)  # other bytes, the same size
    regions.client(3).put_object(Bucket=bucket, Key=key, Body=other)
    assert run_streamer(["verify", "hourly", "dsite"], env).code == 1

    healed = run_streamer(["heal", "dsite"], env)
    assert healed.code == 0, healed.stdout + healed.stderr
    assert "region 3 (" in healed.stdout and "its copy was damaged" in healed.stdout
    assert regions.get(3, bucket, key) == original
    assert run_streamer(["verify", "hourly", "dsite"], env).code == 0


def test_the_next_backup_heals_a_missed_run_within_its_limit(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path) -> None:
    env = {**streamer_env, "STREAMER_WEBROOT": str(_webroot(tmp_path, "three"))}
    first = run_streamer(["hourly", "nsite"], _with_region_2_down(env, regions))
    assert first.code == 3, first.stdout + first.stderr
    [missed] = _stamps(regions, bucket, 1, "nsite")

    # With the heal switched off the next backup commits everywhere, and region 2 still lacks it.
    time.sleep(1.1)  # a new stamp
    off = run_streamer(["hourly", "nsite"], {**env, "STREAMER_HEAL_LIMIT": "off"})
    assert off.code == 0, off.stdout + off.stderr
    assert missed not in _stamps(regions, bucket, 2, "nsite")

    time.sleep(1.1)
    on = run_streamer(["hourly", "nsite"], {**env, "STREAMER_HEAL_LIMIT": "2m"})
    assert on.code == 0, on.stdout + on.stderr  # its own run's exit code
    assert f"heal nsite/hourly/{missed}: region 2 (" in on.stdout
    assert _stamps(regions, bucket, 2, "nsite") == _stamps(regions, bucket, 1, "nsite")
    assert len(_stamps(regions, bucket, 2, "nsite")) == 3
    assert run_streamer(["verify", "hourly", "nsite", "--at", missed], env).code == 0
