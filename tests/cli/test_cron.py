"""scripts/streamer-cron under a cron-like environment, and scripts/install-cron.

The wrapper runs the real streamer (.venv/bin/streamer) against the three
local regions, under ``env -i PATH=/usr/bin:/bin HOME=...`` with stdin from
/dev/null and no controlling terminal, as cron runs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from s3util import RegionsEnv

REPO = Path(__file__).resolve().parents[2]
CRON = REPO / "scripts" / "streamer-cron"
INSTALL = REPO / "scripts" / "install-cron"
STREAMER_BIN = REPO / ".venv" / "bin" / "streamer"
STAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} ", re.M)


def cron_env(home: Path, **extra: str) -> dict[str, str]:
    """What cron gives a job (PATH, HOME), plus the wrapper's settings."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "STREAMER_BIN": str(STREAMER_BIN),
           "STREAMER_LOG": str(home / "log" / "streamer.log"),
           "STREAMER_STATE_DIR": str(home / "state"),
           "STREAMER_CONFIG": str(home / "streamer.toml")}
    env.update(extra)
    return env


def start_cron(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    # `env -i` as the outermost command: nothing of the test's environment leaks in.
    argv = ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()), str(CRON), *args]
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd="/",
                            start_new_session=True)  # no controlling terminal


def run_cron(args: list[str], env: dict[str, str], timeout: float = 300) -> tuple[int, str, str]:
    proc = start_cron(args, env)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def write_config(home: Path, regions: RegionsEnv, bucket: str, **extra: str) -> Path:
    webroot = home / "www"
    (webroot / "app").mkdir(parents=True, exist_ok=True)
    (webroot / "index.php").write_text("<?php echo 'hello'; ?>\n")
    (webroot / "app" / "data.txt").write_text("x" * 5000)
    settings = {**regions.env, "BUILD_IDENTIFIER": "cron-site", "STREAMER_BUCKET": bucket,
                "STREAMER_WEBROOT": str(webroot), "DATABASE_INSTALLATION_TYPE": "None",
                "STREAMER_MEMORY_BUDGET": "64MiB", **extra}
    path = home / "streamer.toml"
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items()))
    return path


def manifests(regions: RegionsEnv, bucket: str) -> list[list[str]]:
    return [[k for k in regions.keys(i, bucket) if k.endswith("/manifest.json")]
            for i in range(1, len(regions.endpoints) + 1)]


def wait_for(path: Path, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in {path} after {timeout} s")


# ------------------------------------------------------------------ streamer-cron

def test_cron_wrapper_backs_up_and_logs(regions: RegionsEnv, bucket: str, tmp_path: Path) -> None:
    write_config(tmp_path, regions, bucket)
    env = cron_env(tmp_path)
    code, out, err = run_cron(["HOURLY"], env)
    assert code == 0, (out, err)
    assert out == "" and err == ""  # cron mails any output: a good run is silent
    found = manifests(regions, bucket)
    assert all(len(m) == 1 and m[0].startswith("cron-site/hourly/") for m in found), found
    log = (tmp_path / "log" / "streamer.log").read_text()
    assert "start: " in log and "backup HOURLY cron-site" in log
    assert "committed cron-site/hourly/" in log  # streamer's own output
    assert "end: exit 0" in log
    assert all(STAMP_RE.match(line) for line in log.splitlines()), log
    assert "\x1b" not in log and "\r" not in log

    # A second run appends; BUILD_IDENTIFIER from the environment wins over the file.
    code, out, err = run_cron(["daily"], {**env, "BUILD_IDENTIFIER": "other-site"})
    assert code == 0, (out, err)
    log2 = (tmp_path / "log" / "streamer.log").read_text()
    assert log2.startswith(log) and "committed other-site/daily/" in log2
    assert any(k.startswith("other-site/daily/") for k in manifests(regions, bucket)[0])


def test_cron_wrapper_passes_exit_codes_through(regions: RegionsEnv, bucket: str,
                                                tmp_path: Path) -> None:
    write_config(tmp_path, regions, bucket, STREAMER_MEMORY_BUDGET="lots")
    # The log falls back to $HOME when STREAMER_LOG cannot be written.
    env = cron_env(tmp_path, STREAMER_LOG="/proc/no-such-dir/streamer.log")
    code, _, err = run_cron(["WEEKLY"], env)
    assert code == 2
    assert "exit 2" in err and str(tmp_path / "streamer.log") in err  # one line for cron's mail
    log = (tmp_path / "streamer.log").read_text()
    assert "/proc/no-such-dir/streamer.log is not writable" in log
    assert "STREAMER_MEMORY_BUDGET" in log and "end: exit 2" in log
    assert manifests(regions, bucket) == [[], [], []]

    # No BUILD_IDENTIFIER anywhere, and an unknown periodicity: usage errors too.
    (tmp_path / "streamer.toml").write_text('STREAMER_BUCKET = "x"\n')
    code, _, err = run_cron(["HOURLY"], env)
    assert code == 2 and "no BUILD_IDENTIFIER" in err
    code, _, err = run_cron(["YEARLY"], {**env, "BUILD_IDENTIFIER": "b"})
    assert code == 2 and "unknown periodicity" in err
    code, _, err = run_cron(["HOURLY"], {**env, "BUILD_IDENTIFIER": "b", "STREAMER_BIN": "/nope"})
    assert code == 2 and "streamer not found" in err


def test_cron_wrapper_refuses_to_overlap(regions: RegionsEnv, bucket: str, tmp_path: Path) -> None:
    write_config(tmp_path, regions, bucket)
    log = tmp_path / "log" / "streamer.log"
    # The first copy takes the lock, then sleeps in its start jitter (1-3 s).
    first = start_cron(["HOURLY"], cron_env(tmp_path, STREAMER_JITTER="3"))
    try:
        wait_for(log, "random start delay")
        code, out, err = run_cron(["HOURLY"], cron_env(tmp_path))
        assert code == 4, (out, err)
        assert err == ""  # skipped is not a failure: nothing for cron to mail
        assert "already running" in log.read_text()
        # Another periodicity has its own lock and may run meanwhile.
        code, out, err = run_cron(["DAILY"], cron_env(tmp_path))
        assert code == 0, (out, err)
    finally:
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, (out, err)
    hourly = [k for k in manifests(regions, bucket)[0] if "/hourly/" in k]
    assert len(hourly) == 1  # the second copy uploaded nothing


def test_cron_wrapper_lock_held_by_another_process(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    lock = state / "streamer-cron.held-site.monthly.lock"
    # flock(1) holds the lock while `cat` runs; closing its stdin ends both.
    holder = subprocess.Popen(["flock", str(lock), "cat"], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, start_new_session=True)
    assert holder.stdin is not None
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["flock", "-n", str(lock), "true"]).returncode == 0:
            assert time.monotonic() < deadline, "flock holder did not take the lock"
            time.sleep(0.05)
        code, out, err = run_cron(["MONTHLY"], cron_env(tmp_path, BUILD_IDENTIFIER="held-site"))
        assert code == 4, (out, err)
        assert "already running" in (tmp_path / "log" / "streamer.log").read_text()
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    # Once released, the lock is free again (the next run would proceed).
    assert subprocess.run(["flock", "-n", str(lock), "true"]).returncode == 0


def test_cron_wrapper_sigterm_during_jitter(tmp_path: Path) -> None:
    env = cron_env(tmp_path, BUILD_IDENTIFIER="sig-site", STREAMER_JITTER="1000")
    proc = start_cron(["HOURLY"], env)
    log = tmp_path / "log" / "streamer.log"
    wait_for(log, "random start delay")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "before streamer started" in log.read_text()
    # The lock is released and the jitter sleep is gone with the wrapper.
    lock = tmp_path / "state" / "streamer-cron.sig-site.hourly.lock"
    assert subprocess.run(["flock", "-n", str(lock), "true"]).returncode == 0


FAKE_STREAMER = """#!/bin/sh
# Stands in for streamer: shows its argv and fds, then waits to be signalled.
trap 'echo "got TERM"; kill $!; exit 130' TERM
echo "argv: $*"
ls -l /proc/$$/fd
sleep 30 &
echo ready
wait
"""


def test_cron_wrapper_passes_arguments_and_forwards_sigterm(tmp_path: Path) -> None:
    fake = tmp_path / "fake-streamer"
    fake.write_text(FAKE_STREAMER)
    fake.chmod(0o755)
    env = cron_env(tmp_path, BUILD_IDENTIFIER="sig-site", STREAMER_BIN=str(fake))
    proc = start_cron(["daily", "--metrics-file", "/x/streamer.prom"], env)
    log = tmp_path / "log" / "streamer.log"
    wait_for(log, "ready")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    text = log.read_text()
    assert proc.returncode == 130, (text, err)
    assert "argv: backup daily sig-site --metrics-file /x/streamer.prom" in text
    assert "received SIGTERM, passing it to streamer" in text and "got TERM" in text
    assert "end: exit 130" in text and "exit 130" in err
    # streamer (and so its hooks) never holds the wrapper's lock or log pipe.
    fds = dict(re.findall(r" (\d+) -> (.*)$", text, re.M))
    assert fds["0"] == "/dev/null" and fds["1"].startswith("pipe:") and fds["2"] == fds["1"], fds
    assert set(fds) <= {"0", "1", "2", "10"}, fds  # dash keeps its script open as fd 10


# ------------------------------------------------------------------ install-cron

FAKE_CRONTAB = """#!/bin/sh
# A stand-in for crontab(1): the table lives in $FAKE_CRONTAB_FILE.
f=${FAKE_CRONTAB_FILE:?}
case "$1" in
  -l) if [ -f "$f" ]; then cat "$f"; else echo "no crontab for $(id -un)" >&2; exit 1; fi ;;
  -r) rm -f "$f" ;;
  -) cat > "$f" ;;
  *) echo "fake crontab: unsupported $*" >&2; exit 2 ;;
esac
"""
OTHER_LINES = "MAILTO=ops@example.com\n# my own job\n0 0 * * * /usr/local/bin/rotate-things\n"
SCHEDULES = {
    "HOURLY": "2 * * * *",
    "DAILY": "30 2 * * *",
    "WEEKLY": "30 3 * * 7",
    "MONTHLY": "30 4 1 * *",
    "BIMONTHLY": "30 5 1 Jan,Mar,May,Jul,Sep,Nov *",
}


def fake_crontab(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    cmd = tmp_path / "fake-crontab"
    cmd.write_text(FAKE_CRONTAB)
    cmd.chmod(0o755)
    table = tmp_path / "crontab.txt"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "FAKE_CRONTAB_FILE": str(table),
           "STREAMER_CRONTAB": str(cmd)}
    return table, env


def install(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(INSTALL), *args], env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def test_install_cron_is_idempotent_and_removable(tmp_path: Path) -> None:
    table, env = fake_crontab(tmp_path)
    table.write_text(OTHER_LINES)
    for _ in range(2):
        run = install([], env)
        assert run.returncode == 0, run.stderr
    text = table.read_text()
    assert text.count("# BEGIN streamer") == 1 and text.count("# END streamer") == 1
    assert text.startswith(OTHER_LINES)
    block = text[text.index("# BEGIN streamer"):].splitlines()[1:-1]
    assert len(block) == 5
    for line, (period, schedule) in zip(block, SCHEDULES.items(), strict=True):
        assert line.startswith(schedule + " STREAMER_JITTER=60 ")
        assert line.endswith(f"{CRON} {period}")

    # --print shows the block without touching the table; --jitter changes it.
    printed = install(["--print", "--jitter", "30"], env)
    assert printed.returncode == 0 and "STREAMER_JITTER=30" in printed.stdout
    assert table.read_text() == text

    # Lines added by the user after the block survive a re-install.
    table.write_text(text + "15 * * * * /usr/bin/true\n")
    assert install(["--crontab-cmd", env["STREAMER_CRONTAB"]], {**env, "STREAMER_CRONTAB": "x"}
                   ).returncode == 0
    text = table.read_text()
    assert text.count("# BEGIN streamer") == 1 and "15 * * * * /usr/bin/true" in text

    run = install(["--remove"], env)
    assert run.returncode == 0, run.stderr
    assert table.read_text() == OTHER_LINES + "15 * * * * /usr/bin/true\n"

    # From no crontab at all.
    table.unlink()
    assert install([], env).returncode == 0
    assert table.read_text().startswith("# BEGIN streamer")
    assert install(["--remove"], env).returncode == 0
    assert table.read_text() == ""


def test_install_cron_without_crontab_says_so(tmp_path: Path) -> None:
    _, env = fake_crontab(tmp_path)
    run = install(["--crontab-cmd", str(tmp_path / "no-such-crontab")], env)
    assert run.returncode == 2
    assert "no crontab command" in run.stderr and "apt-get install cron" in run.stderr
    assert "--systemd" in run.stderr


def cron_times(expr: str, start: datetime, count: int) -> list[datetime]:
    """The next ``count`` times a five-field cron expression fires (enough of cron for ADT's)."""
    months = {m: i for i, m in enumerate(
        "jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)}

    def field(text: str, lo: int, hi: int) -> set[int]:
        if text == "*":
            return set(range(lo, hi + 1))
        return {int(months.get(v.lower(), v)) for v in text.split(",")}

    minute, hour, dom, month, dow = expr.split()
    mins, hours, doms, mons = field(minute, 0, 59), field(hour, 0, 23), field(dom, 1, 31), \
        field(month, 1, 12)
    dows = {d % 7 for d in field(dow, 0, 7)}  # cron: 0 and 7 are Sunday
    out: list[datetime] = []
    t = start
    while len(out) < count:
        if (t.month in mons and t.day in doms and (t.isoweekday() % 7) in dows
                and t.hour in hours and t.minute in mins):
            out.append(t)
        t += timedelta(minutes=1)
    return out


def systemd_times(spec: str, start: datetime, count: int) -> list[datetime]:
    run = subprocess.run(["systemd-analyze", "calendar", f"--iterations={count}",
                          f"--base-time={start:%Y-%m-%d %H:%M:%S} UTC", spec],
                         capture_output=True, text=True, env={**os.environ, "TZ": "UTC"}, timeout=30)
    assert run.returncode == 0, run.stderr
    return [datetime.strptime(m, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC) for m in
            re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC",
                       run.stdout)]


def test_install_systemd_units(tmp_path: Path) -> None:
    _, env = fake_crontab(tmp_path)
    units = tmp_path / "units"
    run = install(["--systemd", str(units)], env)
    assert run.returncode == 0, run.stderr
    service = (units / "streamer-backup@.service").read_text()
    for line in ("Type=oneshot", f"ExecStart={CRON} %i", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "ReadWritePaths=-/var/lib/streamer -/var/log/streamer"):
        assert line in service.splitlines(), line
    timers = sorted(p.name for p in units.glob("*.timer"))
    assert timers == [f"streamer-backup-{p.lower()}.timer" for p in sorted(SCHEDULES)]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    have_analyze = shutil.which("systemd-analyze") is not None
    for period, schedule in SCHEDULES.items():
        timer = (units / f"streamer-backup-{period.lower()}.timer").read_text()
        assert f"Unit=streamer-backup@{period}.service" in timer
        assert "RandomizedDelaySec=60" in timer
        [spec] = re.findall(r"^OnCalendar=(.*)$", timer, re.M)
        if have_analyze:  # the OnCalendar= fires exactly when the cron line does
            count = 6 if period in ("MONTHLY", "BIMONTHLY") else 10
            assert systemd_times(spec, start, count) == cron_times(schedule, start, count), period
    if have_analyze:
        assert "checked with systemd-analyze" in run.stderr
        verify = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", *sorted(str(p) for p in units.glob("*.timer")),
             str(units / "streamer-backup@HOURLY.service")],
            capture_output=True, text=True, timeout=60, cwd=units)
        assert verify.returncode == 0, verify.stderr
        assert "ignoring" not in verify.stderr and "Unknown" not in verify.stderr, verify.stderr
    else:
        assert "not checked" in run.stderr
