"""Integration: verify and list against three real regions."""

from __future__ import annotations

import json
from pathlib import Path

from s3util import RegionsEnv, run_streamer
from treeutil import corrupt, make_rich_tree, manifests_of

from streamer import digests


def test_verify_passes_untouched_and_names_the_corrupt_region(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "www"
    make_rich_tree(root)
    env = {**streamer_env, "STREAMER_WEBROOT": str(root)}
    assert run_streamer(["hourly", "vsite"], env).code == 0
    [m] = manifests_of(regions, bucket, 1, "vsite")
    run = run_streamer(["verify", "hourly", "vsite"], env)
    assert run.code == 0, run.stdout + run.stderr
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 3 and all(": ok: vsite/hourly/" in ln for ln in lines)
    assert run.stderr == ""

    key = m["artifacts"]["webroot"]["key"]
    corrupt(regions, bucket, 2, key)
    run = run_streamer(["verify", "hourly", "vsite"], env)
    assert run.code == 1, run.stdout + run.stderr
    bad = [ln for ln in run.stdout.splitlines() if "BAD" in ln]
    assert len(bad) == 1 and bad[0].startswith("region 2 (") and key in bad[0]
    assert "part 1 at byte 0" in bad[0] and "CRC32C" in bad[0]  # the first bad part, named
    assert len(run.stderr.strip().splitlines()) == 1
    assert "verify failed: region 2" in run.stderr and key in run.stderr

    # A region that lost its manifest is named too; --at selects the run.
    regions.client(3).delete_object(Bucket=bucket, Key=key.rsplit("/", 1)[0] + "/manifest.json")
    run = run_streamer(["verify", "hourly", "vsite", "--at", m["stamp"]], env)
    assert run.code == 1
    assert f"region 3 (127.0.0.1:{regions.endpoints[2].rsplit(':', 1)[1]}): BAD" in run.stdout
    assert f"lacks {m['stamp']}, which region(s) 1, 2 hold (`streamer heal`" in run.stdout


def test_verify_names_a_region_whose_manifest_disagrees(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    (root / "a").write_text("a")
    env = {**streamer_env, "STREAMER_WEBROOT": str(root)}
    assert run_streamer(["daily", "dsite"], env).code == 0
    [m] = manifests_of(regions, bucket, 3, "dsite")
    key = m["artifacts"]["webroot"]["key"]
    mkey = key.rsplit("/", 1)[0] + "/manifest.json"
    # Region 3's manifest and object are consistent with each other, but not with the others.
    data = bytearray(regions.get(3, bucket, key))
    data[-1] ^= 1

    parts, offset = m["artifacts"]["webroot"]["parts"], 0
    for i, size in enumerate(parts["sizes"]):
        parts["digests"][i] = digests.hexdigest(parts["algorithm"], [data[offset:offset + size]])
        offset += size
    m["artifacts"]["webroot"]["parts_sha256"] = digests.composite(parts["algorithm"], parts["sizes"],
                                                                  parts["digests"])
    regions.client(3).put_object(Bucket=bucket, Key=key, Body=bytes(data))
    regions.client(3).put_object(Bucket=bucket, Key=mkey, Body=json.dumps(m).encode())
    run = run_streamer(["verify", "daily", "dsite"], env)
    assert run.code == 1
    [bad] = [ln for ln in run.stdout.splitlines() if "BAD" in ln]
    assert bad.startswith("region 3") and "disagrees with region 1" in bad


def test_list_shows_committed_runs_only(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.php").write_text("<?php ?>\n" * 1000)
    env = {**streamer_env, "STREAMER_WEBROOT": str(root)}
    assert run_streamer(["hourly", "lsite"], env).code == 0
    assert run_streamer(["daily", "other"], env).code == 0
    # A run without manifest (killed, or in progress) is not shown.
    regions.client(1).put_object(Bucket=bucket, Key="lsite/hourly/20991231T000000Z/webroot.tar.zst",
                                 Body=b"partial")
    run = run_streamer(["list", "--json"], env)
    assert run.code == 0, run.stderr
    data = json.loads(run.stdout)
    assert [r["index"] for r in data["regions"]] == [1, 2, 3]
    for r in data["regions"]:
        assert r["ok"] and r["error"] is None
        assert sorted((b["build"], b["periodicity"]) for b in r["backups"]) == \
            [("lsite", "hourly"), ("other", "daily")]
        for b in r["backups"]:
            assert b["size"] == b["artifacts"]["webroot"] > 0
            assert 0 <= b["age_seconds"] < 600 and len(b["stamp"]) == 16
    run = run_streamer(["list", "hourly", "lsite"], env)
    assert run.code == 0
    assert run.stdout.count("lsite/hourly/") == 3 and "other" not in run.stdout
    assert "20991231T000000Z" not in run.stdout
    run = run_streamer(["list", "other"], env)  # a lone argument that is no periodicity: the build
    assert run.stdout.count("other/daily/") == 3

    down = {**env, "S3_HOST_BASE": "|".join([*regions.endpoints[:2], "http://127.0.0.1:9"])}
    run = run_streamer(["list", "--json"], down)
    assert run.code == 1
    assert json.loads(run.stdout)["regions"][2]["ok"] is False
    assert "list incomplete" in run.stderr
