"""Gentle on a live host, through the real CLI and real regions: STREAMER_BWLIMIT
holds the run to the limit and still commits; STREAMER_NICE reaches tar and
every thread of streamer; streamer-cron turns it on; bad values are exit 2."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from s3util import RegionsEnv, run_streamer
from test_cron import cron_env, run_cron

MiB = 1024 * 1024

# A tar on PATH that records its own priority and that of every thread of
# its parent (streamer), then runs the real tar: no timing involved.
SPY_TAR = """#!/bin/sh
out=${SPY_OUT:?}
cat /proc/$$/stat > "$out/tar.stat"
ionice -p $$ > "$out/tar.io"
for t in /proc/$PPID/task/*; do cat "$t/stat"; done > "$out/streamer.stat"
ionice -p $(ls /proc/$PPID/task) > "$out/streamer.io"
exec /usr/bin/tar "$@"
"""


def nice_of(stat_line: str) -> int:
    """Field 19 of /proc/PID/stat (the fields after the command name, which may hold spaces)."""
    return int(stat_line.rsplit(")", 1)[1].split()[16])


def webroot(tmp_path: Path, size: int) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    (root / "media.bin").write_bytes(os.urandom(size))  # incompressible: sent as is
    (root / "index.php").write_text("<?php echo 'hi'; ?>\n")
    return root


def test_bwlimit_holds_a_backup_to_the_limit_and_it_commits(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path) -> None:
    limit = 2 * MiB
    env = {**streamer_env, "STREAMER_WEBROOT": str(webroot(tmp_path, 5 * MiB)),
           "STREAMER_BWLIMIT": "2MiB"}
    started = time.monotonic()
    run = run_streamer(["backup", "hourly", "slow", "--json"], env)
    elapsed = time.monotonic() - started
    assert run.code == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["regions_committed"] == 3
    sent = sum(a["stored_bytes"] for a in summary["artifacts"].values()) * 3
    assert sent > 15 * MiB
    # a lower bound: the limit is never beaten (the bucket starts empty)
    assert elapsed >= sent / limit, (elapsed, sent / limit)
    for index in (1, 2, 3):
        assert any(k.endswith("/manifest.json") for k in regions.keys(index, bucket))


def test_nice_reaches_tar_and_every_streamer_thread(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path) -> None:
    spy = tmp_path / "bin"
    spy.mkdir()
    (spy / "tar").write_text(SPY_TAR)
    (spy / "tar").chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    env = {**streamer_env, "STREAMER_WEBROOT": str(webroot(tmp_path, 64 * 1024)),
           "PATH": f"{spy}:{streamer_env['PATH']}", "SPY_OUT": str(out)}
    own = os.getpriority(os.PRIO_PROCESS, 0)

    run = run_streamer(["hourly", "calm"], {**env, "STREAMER_NICE": "off"})
    assert run.code == 0, run.stderr
    assert nice_of((out / "tar.stat").read_text()) == own  # off: nothing changed

    # The spy lists streamer's threads when tar starts: with early start
    # (pipeline/early.py) that is before any worker thread exists, so here tar
    # starts late; the idle run below starts it early.
    run = run_streamer(["hourly", "calm"], {**env, "STREAMER_NICE": "on",
                                            "STREAMER_EARLY_START": "off"})
    assert run.code == 0, run.stderr
    assert nice_of((out / "tar.stat").read_text()) == 19
    assert (out / "tar.io").read_text().strip() == "best-effort: prio 7"
    threads = (out / "streamer.stat").read_text().splitlines()
    assert len(threads) >= 2  # the main thread and at least the producer's worker
    assert {nice_of(t) for t in threads} == {19}
    assert set((out / "streamer.io").read_text().split("\n")) - {""} == {"best-effort: prio 7"}

    run = run_streamer(["hourly", "calm"], {**env, "STREAMER_NICE": "idle"})
    assert run.code == 0, run.stderr
    assert nice_of((out / "tar.stat").read_text()) == 19
    assert (out / "tar.io").read_text().strip() == "idle"


def test_bad_values_are_one_line_and_exit_2(streamer_env: dict[str, str], tmp_path: Path) -> None:
    env = {**streamer_env, "STREAMER_WEBROOT": str(tmp_path)}
    for name, value in (("STREAMER_NICE", "loud"), ("STREAMER_BWLIMIT", "fast"),
                        ("STREAMER_BWLIMIT", "100KiB")):
        run = run_streamer(["hourly", "bad"], {**env, name: value})
        assert run.code == 2, (name, value, run.stderr)
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and name in lines[0], lines
        assert "Traceback" not in run.stderr


FAKE = """#!/bin/sh
echo "nice=${STREAMER_NICE:-unset}"
"""


def test_streamer_cron_is_gentle_by_default_and_an_explicit_setting_wins(tmp_path: Path) -> None:
    fake = tmp_path / "fake-streamer"
    fake.write_text(FAKE)
    fake.chmod(0o755)
    log = tmp_path / "log" / "streamer.log"
    env = cron_env(tmp_path, BUILD_IDENTIFIER="site", STREAMER_BIN=str(fake))
    assert run_cron(["hourly"], env)[0] == 0
    assert "nice=on" in log.read_text()
    assert run_cron(["hourly"], {**env, "STREAMER_NICE": "5"})[0] == 0
    assert "nice=5" in log.read_text()
    # set to off in the config file: the wrapper leaves it to streamer, which reads the file
    (tmp_path / "streamer.toml").write_text('STREAMER_NICE = "off"\n')
    log.write_text("")
    assert run_cron(["hourly"], env)[0] == 0
    assert "nice=unset" in log.read_text()
