#!/usr/bin/env python3
"""The null S3 sink: an nginx that answers the S3 multipart protocol and discards bodies.

Usage: bench/nullsink.py up|down|status|env|stats

  up      render bench/nullsink/nginx.conf.in into bench/work/nginx/ and start
          nginx (its own prefix, pid file and logs there) on 127.0.0.1, ports
          BASE+1..BASE+N (BENCH_SINK_PORT_BASE, default 18440; N =
          BENCH_SINK_REGIONS, default 3); idempotent
  down    stop it (SIGQUIT, wait, SIGKILL); idempotent
  status  exit 0 if it is running and every port accepts connections
  env     print `export` lines (S3_HOST_BASE, keys) like scripts/regions env
  stats   bytes received per port, from the access log

Any access key and secret are accepted: the sink checks no signature.
Ports 18341-18343 (suggested at first) are SeaweedFS masters in scripts/regions,
hence the default base 18440.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
PREFIX = Path(os.environ.get("BENCH_SINK_PREFIX", HERE / "work" / "nginx"))
TEMPLATE = HERE / "nullsink" / "nginx.conf.in"
HOST = "127.0.0.1"
ACCESS_KEY = "nullsink"
SECRET_KEY = "nullsink-any-secret-is-accepted"


def port_base() -> int:
    return int(os.environ.get("BENCH_SINK_PORT_BASE", "18440"))


def ports() -> list[int]:
    n = int(os.environ.get("BENCH_SINK_REGIONS", "3"))
    return [port_base() + i for i in range(1, n + 1)]


def endpoints() -> list[str]:
    return [f"http://{HOST}:{p}" for p in ports()]


def nginx_bin() -> str:
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(exe):
        sys.exit("nullsink: nginx is not installed (apt-get install nginx-light)")
    return exe


def conf_path() -> Path:
    return PREFIX / "nginx.conf"


def pid_path() -> Path:
    return PREFIX / "nginx.pid"


def access_log() -> Path:
    return PREFIX / "access.log"


def render() -> None:
    PREFIX.mkdir(parents=True, exist_ok=True)
    for d in ("client_body_temp", "proxy_temp", "fastcgi_temp", "uwsgi_temp", "scgi_temp"):
        (PREFIX / d).mkdir(exist_ok=True)
    listen = "\n        ".join(f"listen {HOST}:{p};" for p in ports())
    text = TEMPLATE.read_text().replace("@PREFIX@", str(PREFIX)).replace("@LISTEN@", listen)
    conf_path().write_text(text)


def running_pid() -> int | None:
    try:
        pid = int(pid_path().read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    return pid if "nginx" in cmd and str(PREFIX) in cmd else None


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def up() -> int:
    if running_pid() is not None:
        if all(port_open(p) for p in ports()):
            print(f"nullsink: already up on {', '.join(endpoints())}", file=sys.stderr)
            return 0
        down()
    busy = [p for p in ports() if port_open(p)]
    if busy:
        print(f"nullsink: port(s) {busy} already in use by another process; "
              "set BENCH_SINK_PORT_BASE", file=sys.stderr)
        return 1
    render()
    exe = nginx_bin()
    base = [exe, "-p", str(PREFIX) + "/", "-c", str(conf_path()), "-e", str(PREFIX / "error.log")]
    t = subprocess.run([*base, "-t", "-q"], capture_output=True, text=True)
    if t.returncode != 0:
        print(f"nullsink: bad nginx config:\n{t.stderr}", file=sys.stderr)
        return 1
    subprocess.run(base, check=True, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if running_pid() and all(port_open(p) for p in ports()):
            print(f"nullsink: up on {', '.join(endpoints())} (pid {running_pid()})",
                  file=sys.stderr)
            return 0
        time.sleep(0.05)
    print("nullsink: nginx did not come up; see " + str(PREFIX / "error.log"), file=sys.stderr)
    return 1


def down() -> int:
    pid = running_pid()
    if pid is None:
        print("nullsink: not running", file=sys.stderr)
        return 0
    os.kill(pid, signal.SIGQUIT)
    for _ in range(100):
        if running_pid() is None:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    try:
        pid_path().unlink()
    except OSError:
        pass
    print(f"nullsink: stopped (pid {pid})", file=sys.stderr)
    return 0


def status() -> int:
    pid = running_pid()
    ok = pid is not None and all(port_open(p) for p in ports())
    print(f"nullsink: {'up' if ok else 'down'} {' '.join(endpoints())}"
          + (f" pid {pid}" if pid else ""))
    return 0 if ok else 1


LOG_RE = re.compile(r'^(\d+) (\S+) (\d+) (\d+) (\d+) "([^"]*)" "([^"]*)"$')


def read_log(offset: int = 0) -> tuple[list[tuple[int, str, int, int, str, str]], int]:
    """Parse access-log lines from byte offset; return (entries, new offset).

    Each entry: (port, method, status, request_length, uri, args).
    """
    try:
        with open(access_log(), "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return [], offset
    end = data.rfind(b"\n") + 1
    out = []
    for line in data[:end].decode(errors="replace").splitlines():
        m = LOG_RE.match(line)
        if m:
            out.append((int(m[1]), m[2], int(m[3]), int(m[4]), m[6], m[7]))
    return out, offset + end


def log_size() -> int:
    try:
        return access_log().stat().st_size
    except OSError:
        return 0


def stats() -> int:
    entries, _ = read_log(0)
    total: dict[int, int] = defaultdict(int)
    count: dict[int, int] = defaultdict(int)
    for port, _m, _s, length, _u, _a in entries:
        total[port] += length
        count[port] += 1
    for p in sorted(total):
        print(f"{p}: {count[p]} requests, {total[p]} bytes received")
    return 0


def env() -> int:
    print(f"export S3_HOST_BASE='{'|'.join(endpoints())}'")
    print(f"export S3_ACCESS_KEY='{ACCESS_KEY}'")
    print(f"export S3_SECRET_KEY='{SECRET_KEY}'")
    print("export S3_LOCATION='us-east-1'")
    return 0


def main(argv: list[str]) -> int:
    cmds = {"up": up, "down": down, "status": status, "stats": stats, "env": env}
    if len(argv) != 1 or argv[0] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    return cmds[argv[0]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
