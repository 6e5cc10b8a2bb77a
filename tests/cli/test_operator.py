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


def test_json_summary_metrics_and_hooks_through_the_cli(regions: RegionsEnv, bucket: str,
                                                        streamer_env: dict[str, str],
                                                        tmp_path: Path) -> None:
    import json

    import jsonschema
    from prometheus_client.parser import text_string_to_metric_families

    schema = json.loads((Path(__file__).parents[2] / "docs" / "summary.schema.json").read_text())
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.php").write_text("<?php echo 1; ?>\n")
    metrics = tmp_path / "streamer.prom"
    hooks = {"success": tmp_path / "success.json", "failure": tmp_path / "failure.json"}
    args = ["hourly", "reports", "--json", "--metrics-file", str(metrics),
            "--on-success", f"cat > {hooks['success']}", "--on-failure", f"cat > {hooks['failure']}"]
    env = {**streamer_env, "STREAMER_WEBROOT": str(root)}

    ok = run_streamer(args, env)
    assert ok.code == 0, ok.stderr
    summary = json.loads(ok.stdout)  # stdout holds the summary and nothing else
    jsonschema.validate(summary, schema)
    assert summary["exit_code"] == 0 and summary["status"] == "committed"
    assert json.loads(hooks["success"].read_text()) == summary
    assert not hooks["failure"].exists()  # the failure hook only on failure
    families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
    [success] = families["streamer_last_success_timestamp_seconds"].samples
    assert success.labels == {"build": "reports", "periodicity": "hourly"}

    hooks["success"].unlink()
    dead = {**env, "S3_HOST_BASE": "http://127.0.0.1:9"}
    bad = run_streamer(args, dead)
    assert bad.code == 1, bad.stderr
    summary = json.loads(bad.stdout)
    jsonschema.validate(summary, schema)
    assert summary["exit_code"] == 1 and summary["error"]
    assert json.loads(hooks["failure"].read_text())["exit_code"] == 1
    assert not hooks["success"].exists()
    families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
    # the earlier success is kept; the last exit code is the failure's
    assert families["streamer_last_success_timestamp_seconds"].samples[0].value == success.value
    assert regions.env["S3_SECRET_KEY"] not in bad.stdout + metrics.read_text()


def test_quiet_prints_only_errors(regions: RegionsEnv, bucket: str, streamer_env: dict[str, str],
                                  tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.php").write_text("<?php echo 1; ?>\n")
    run = run_streamer(["hourly", "quiet", "--quiet"], {**streamer_env, "STREAMER_WEBROOT": str(root)})
    assert run.code == 0 and run.stdout == "" and run.stderr == ""


def test_version_flag_and_command_print_the_version_and_exit_0(
        streamer_env: dict[str, str]) -> None:
    from streamer import __version__
    for args in (["--version"], ["version"]):
        run = run_streamer(args, streamer_env)
        assert run.code == 0, run.stderr
        assert run.stdout.strip() == __version__
