"""Operator experience through the real CLI: progress off a terminal, config check."""

from __future__ import annotations

import os
import re
from pathlib import Path

from s3util import RegionsEnv, run_streamer

MiB = 1024 * 1024


def test_progress_off_a_terminal_is_plain_lines(regions: RegionsEnv, bucket: str,
                                                streamer_env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    for i in range(6):
        (root / f"media-{i}.bin").write_bytes(os.urandom(8 * MiB))
    env = {**streamer_env, "STREAMER_WEBROOT": str(root), "STREAMER_PROGRESS_INTERVAL": "0.1"}
    run = run_streamer(["hourly", "progress"], env)
    assert run.code == 0, run.stderr
    text = run.stdout + run.stderr
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", text), "control characters off a terminal"
    lines = run.stdout.splitlines()
    progress = [ln for ln in lines if ln.startswith("progress ")]
    assert progress, run.stdout
    assert any(re.match(r"progress webroot region [123]: \w+, [\d.]+ MB sent, [\d.]+ MB/s", ln)
               for ln in progress)
    assert any(re.match(r"progress \d+s: read webroot [\d.]+ MB; memory \d+ of 256 MiB", ln)
               for ln in progress)
    assert lines[-1].startswith("committed progress/hourly/")


def test_config_check_names_wrong_secret_missing_bucket_and_dead_region(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str]) -> None:
    secret = regions.env["S3_SECRET_KEY"]
    env = {**streamer_env,
           "S3_HOST_BASE": "|".join([*regions.endpoints, "http://127.0.0.1:9"]),
           "S3_SECRET_KEY": f"{secret}|not-the-secret|{secret}|{secret}"}
    run = run_streamer(["config", "check"], env)
    assert run.code == 2, run.stdout + run.stderr
    problems = run.stderr.strip().splitlines()
    assert len(problems) == 4, problems
    assert any("region 2" in p and "credentials" in p and "SignatureDoesNotMatch" in p for p in problems)
    assert any("region 1" in p and f"{bucket} missing" in p for p in problems)
    assert any("region 3" in p and f"{bucket} missing" in p for p in problems)
    assert any("region 4 (127.0.0.1:9)" in p and "reachable" in p for p in problems)
    assert "not-the-secret" not in run.stdout + run.stderr and secret not in run.stdout
    assert '"secret_key": "****"' in run.stdout

    # With the bucket created and the right secrets, every check passes.
    env["S3_HOST_BASE"] = "|".join(regions.endpoints)
    env["S3_SECRET_KEY"] = secret
    run = run_streamer(["config", "check", "--create-buckets"], env)
    assert run.code == 0, run.stdout + run.stderr
    run = run_streamer(["config", "check"], env)
    assert run.code == 0 and "FAIL" not in run.stdout
