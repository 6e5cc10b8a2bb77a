#!/usr/bin/env python3
"""The null S3 sink: S3 on 127.0.0.1 that accepts uploads and keeps no large bytes.

Usage: bench/nullsink.py up|down|status|env|stats|serve

  up      render bench/nullsink/nginx.conf.in into bench/work/nginx/, start the
          answerer and nginx there (own prefix, pid files, logs), listening on
          127.0.0.1 ports BASE+1..BASE+N (BENCH_SINK_PORT_BASE, default 18440;
          N = BENCH_SINK_REGIONS, default 3); idempotent
  down    stop both (SIGQUIT/SIGTERM, wait, SIGKILL); idempotent
  status  exit 0 if both run and every port accepts connections
  env     print `export` lines (S3_HOST_BASE, keys), like `scripts/regions env`
  stats   requests and bytes received per port, from the access log
  serve   run the answerer in the foreground (what `up` starts)

Two halves:
  * nginx (the data plane) reads every request body completely, in memory, and
    drops bodies of 1 MB or more; see the comments in nginx.conf.in for why the
    body is read before the answer goes out.
  * the answerer (the control plane, this file, one thread per connection on a
    unix socket) gets each request's line and headers - and the body only when
    it is small - and answers like S3: multipart bookkeeping, object sizes,
    HEAD, listings, small objects kept in memory (lock objects, manifests),
    If-None-Match: *, deletes. rclone needs this: after a streamed upload it
    HEADs the object and compares its size with what it sent.

Any access key and secret are accepted: no signature is checked. Every bucket
exists. GET of a large object is answered 501 (its bytes were never kept).
Ports 18341-18343 (suggested at first) are SeaweedFS masters in
scripts/regions, hence the default base 18440.
"""

from __future__ import annotations

import datetime
import hashlib
import http.server
import itertools
import json
import os
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

HERE = Path(__file__).resolve().parent
PREFIX = Path(os.environ.get("BENCH_SINK_PREFIX", HERE / "work" / "nginx"))
TEMPLATE = HERE / "nullsink" / "nginx.conf.in"
HOST = "127.0.0.1"
ACCESS_KEY = "nullsink"
SECRET_KEY = "nullsink-any-secret-is-accepted"
NS = "http://s3.amazonaws.com/doc/2006-03-01/"


def port_base() -> int:
    return int(os.environ.get("BENCH_SINK_PORT_BASE", "18440"))


def ports() -> list[int]:
    n = int(os.environ.get("BENCH_SINK_REGIONS", "3"))
    return [port_base() + i for i in range(1, n + 1)]


def endpoints() -> list[str]:
    return [f"http://{HOST}:{p}" for p in ports()]


def seed_integrity_cache(cache_home: Path) -> None:
    """streamer's checksum negotiation cache (``$XDG_CACHE_HOME/streamer/integrity.json``,
    docs/ARCHITECTURE.md "Integrity") seeded as if every sink port verified CRC32C.
    The sink checks nothing, so STREAMER_CHECKSUM=auto would fall back to
    Content-MD5 against it; the servers it stands in for (SeaweedFS, AWS) verify
    CRC32C, and a bench should measure the work streamer does against them."""
    path = cache_home / "streamer" / "integrity.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC).isoformat()
    path.write_text(json.dumps({e: {"verified": ["crc32c"], "probed": now} for e in endpoints()}))


def nginx_bin() -> str:
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(exe):
        sys.exit("nullsink: nginx is not installed (apt-get install nginx-light)")
    return exe


def conf_path() -> Path:
    return PREFIX / "nginx.conf"


def pid_path() -> Path:
    return PREFIX / "nginx.pid"


def answerer_pid_path() -> Path:
    return PREFIX / "answerer.pid"


def answer_sock() -> Path:
    return PREFIX / "answer.sock"


def access_log() -> Path:
    return PREFIX / "access.log"


# --------------------------------------------------------------------------
# the answerer: S3 control plane that keeps sizes, not bytes


@dataclass
class Obj:
    size: int
    etag: str
    mtime: float
    body: bytes | None = None


@dataclass
class Upload:
    region: str
    bucket: str
    key: str
    started: float
    parts: dict[int, int] = field(default_factory=dict)


class Store:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        # keyed by (region port, bucket, key): each port is a separate region
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.uploads: dict[str, Upload] = {}


STORE = Store()
_ids = itertools.count(1)


def _fake_etag(*parts: object) -> str:
    h = hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()
    # a dash marks it as not-an-MD5 (like a multipart ETag): s3cmd then skips
    # its check of the ETag against the MD5 of what it sent
    return f'"{h}-1"'


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(t))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nullsink"
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def address_string(self) -> str:
        return "unix"

    # -- helpers -------------------------------------------------------------
    def _parse(self) -> tuple[str, str, dict[str, list[str]]]:
        self.region = self.headers.get("X-Sink-Port", "")
        u = urlsplit(self.path)
        path = unquote(u.path)
        bucket, _, key = path.lstrip("/").partition("/")
        return bucket, key, parse_qs(u.query, keep_blank_values=True)

    def _body(self) -> bytes | None:
        """The body if nginx passed it, else None (it was dropped)."""
        if self.headers.get("X-Sink-Body") != "passed":
            return None
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _size(self, body: bytes | None) -> int:
        dec = self.headers.get("x-amz-decoded-content-length")
        if dec:
            return int(dec)
        if body is not None:
            return len(body)
        return int(self.headers.get("X-Sink-Length") or 0)

    def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None,
              ctype: str = "application/xml", length: int | None = None) -> None:
        self.send_response(code)
        self.send_header("x-amz-request-id", uuid.uuid4().hex[:16])
        self.send_header("Date", formatdate(usegmt=True))
        if body or code not in (204, 304):
            self.send_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if code != 204:
            self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _xml(self, code: int, inner: str, headers: dict[str, str] | None = None) -> None:
        text = '<?xml version="1.0" encoding="UTF-8"?>\n' + inner
        self._send(code, text.encode(), headers)

    def _error(self, code: int, s3code: str, msg: str, key: str = "") -> None:
        self._xml(code, f"<Error><Code>{s3code}</Code><Message>{escape(msg)}</Message>"
                        f"<Key>{escape(key)}</Key></Error>")

    # -- dispatch ------------------------------------------------------------
    def do_PUT(self) -> None:
        bucket, key, q = self._parse()
        body = self._body()
        if not key:
            return self._send(200, headers={"Location": f"/{bucket}"})
        if "partNumber" in q and "uploadId" in q:
            uid, n = q["uploadId"][0], int(q["partNumber"][0])
            size = self._size(body)
            with STORE.lock:
                up = STORE.uploads.get(uid)
                if up is None:
                    return self._error(404, "NoSuchUpload", "no such upload", key)
                up.parts[n] = size
            return self._send(200, headers={"ETag": _fake_etag(uid, n)})
        src = self.headers.get("x-amz-copy-source")
        if src:
            sb, _, sk = unquote(src.split("?")[0]).lstrip("/").partition("/")
            with STORE.lock:
                o = STORE.objects.get((self.region, sb, sk))
                if o is None:
                    return self._error(404, "NoSuchKey", "copy source missing", sk)
                STORE.objects[(self.region, bucket, key)] = Obj(o.size, o.etag, time.time(), o.body)
            return self._xml(200, f'<CopyObjectResult xmlns="{NS}"><ETag>{escape(o.etag)}'
                                  f"</ETag><LastModified>{_iso(time.time())}</LastModified>"
                                  "</CopyObjectResult>")
        size = self._size(body)
        etag = f'"{hashlib.md5(body).hexdigest()}"' if body is not None else _fake_etag(
            bucket, key, next(_ids))
        with STORE.lock:
            ok = (self.region, bucket, key)
            if self.headers.get("If-None-Match", "").strip() == "*" and ok in STORE.objects:
                return self._error(412, "PreconditionFailed", "object exists", key)
            inm = self.headers.get("If-Match")
            if inm and (ok not in STORE.objects or STORE.objects[ok].etag != inm.strip()):
                return self._error(412, "PreconditionFailed", "ETag does not match", key)
            STORE.objects[ok] = Obj(size, etag, time.time(), body)
        return self._send(200, headers={"ETag": etag})

    def do_POST(self) -> None:
        bucket, key, q = self._parse()
        body = self._body()
        if "uploads" in q and key:
            uid = "nullsink-" + uuid.uuid4().hex
            with STORE.lock:
                STORE.uploads[uid] = Upload(self.region, bucket, key, time.time())
            return self._xml(200, f'<InitiateMultipartUploadResult xmlns="{NS}"><Bucket>'
                                  f"{escape(bucket)}</Bucket><Key>{escape(key)}</Key><UploadId>"
                                  f"{uid}</UploadId></InitiateMultipartUploadResult>")
        if "uploadId" in q and key:
            uid = q["uploadId"][0]
            wanted: list[int] | None = None
            if body:
                try:
                    root = ET.fromstring(body)
                    wanted = [int(e.text or 0) for e in root.iter() if e.tag.endswith("PartNumber")]
                except ET.ParseError:
                    wanted = None
            with STORE.lock:
                up = STORE.uploads.pop(uid, None)
                if up is None:
                    return self._error(404, "NoSuchUpload", "no such upload", key)
                nums = wanted if wanted else sorted(up.parts)
                missing = [n for n in nums if n not in up.parts]
                if missing:
                    STORE.uploads[uid] = up
                    return self._error(400, "InvalidPart", f"parts {missing} not uploaded", key)
                size = sum(up.parts[n] for n in nums)
                etag = f'"{hashlib.md5(uid.encode()).hexdigest()}-{len(nums)}"'
                STORE.objects[(self.region, bucket, key)] = Obj(size, etag, time.time(), None)
            return self._xml(200, f'<CompleteMultipartUploadResult xmlns="{NS}"><Location>'
                                  f"http://{escape(self.headers.get('Host', ''))}/{escape(bucket)}/"
                                  f"{escape(key)}</Location><Bucket>{escape(bucket)}</Bucket><Key>"
                                  f"{escape(key)}</Key><ETag>{escape(etag)}</ETag>"
                                  "</CompleteMultipartUploadResult>", {"ETag": etag})
        if "delete" in q and not key:
            keys: list[str] = []
            quiet = False
            if body:
                root = ET.fromstring(body)
                keys = [e.text or "" for e in root.iter() if e.tag.endswith("Key")]
                quiet = any((e.text or "").lower() == "true"
                            for e in root.iter() if e.tag.endswith("Quiet"))
            with STORE.lock:
                for k in keys:
                    STORE.objects.pop((self.region, bucket, k), None)
            inner = "" if quiet else "".join(f"<Deleted><Key>{escape(k)}</Key></Deleted>"
                                             for k in keys)
            return self._xml(200, f'<DeleteResult xmlns="{NS}">{inner}</DeleteResult>')
        return self._error(501, "NotImplemented", "the null sink does not do this POST", key)

    def do_HEAD(self) -> None:
        bucket, key, _q = self._parse()
        if not key:
            return self._send(200, headers={"x-amz-bucket-region": "us-east-1"})
        with STORE.lock:
            o = STORE.objects.get((self.region, bucket, key))
        if o is None:
            return self._send(404)
        return self._send(200, headers={"ETag": o.etag,
                                        "Last-Modified": formatdate(o.mtime, usegmt=True)},
                          ctype="application/octet-stream", length=o.size)

    def do_GET(self) -> None:
        bucket, key, q = self._parse()
        if not bucket:
            return self._xml(200, f'<ListAllMyBucketsResult xmlns="{NS}"><Owner><ID>nullsink</ID>'
                                  "<DisplayName>nullsink</DisplayName></Owner><Buckets><Bucket>"
                                  "<Name>bench</Name><CreationDate>2024-01-01T00:00:00.000Z"
                                  "</CreationDate></Bucket></Buckets></ListAllMyBucketsResult>")
        if not key:
            if "location" in q:
                return self._xml(200, f'<LocationConstraint xmlns="{NS}"></LocationConstraint>')
            if "uploads" in q:
                return self._list_uploads(bucket, q)
            if any(k in q for k in ("versioning", "acl", "policy", "lifecycle", "cors",
                                    "tagging", "encryption", "object-lock")):
                return self._error(404, "NoSuchConfiguration", "none", "")
            return self._list_objects(bucket, q)
        if "uploadId" in q:
            uid = q["uploadId"][0]
            with STORE.lock:
                up = STORE.uploads.get(uid)
                parts = dict(up.parts) if up else None
            if parts is None:
                return self._error(404, "NoSuchUpload", "no such upload", key)
            inner = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{escape(_fake_etag(uid, n))}"
                            f"</ETag><Size>{s}</Size></Part>" for n, s in sorted(parts.items()))
            return self._xml(200, f'<ListPartsResult xmlns="{NS}"><Bucket>{escape(bucket)}</Bucket>'
                                  f"<Key>{escape(key)}</Key><UploadId>{uid}</UploadId>"
                                  f"<IsTruncated>false</IsTruncated>{inner}</ListPartsResult>")
        with STORE.lock:
            o = STORE.objects.get((self.region, bucket, key))
        if o is None:
            return self._error(404, "NoSuchKey", "The specified key does not exist.", key)
        if o.body is None:
            return self._error(501, "NotImplemented",
                               "the null sink kept only the size of this object", key)
        body = o.body
        code, extra = 200, {}
        m = re.match(r"bytes=(\d*)-(\d*)$", self.headers.get("Range", ""))
        if m and body:
            a, b = m.groups()
            start = int(a) if a else max(0, len(body) - int(b))
            end = min(len(body) - 1, int(b)) if a and b else len(body) - 1
            extra["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
            body, code = body[start:end + 1], 206
        return self._send(code, body, {"ETag": o.etag,
                                       "Last-Modified": formatdate(o.mtime, usegmt=True)},
                          ctype="application/octet-stream")

    def do_DELETE(self) -> None:
        bucket, key, q = self._parse()
        with STORE.lock:
            if "uploadId" in q:
                if STORE.uploads.pop(q["uploadId"][0], None) is None:
                    return self._error(404, "NoSuchUpload", "no such upload", key)
            elif key:
                STORE.objects.pop((self.region, bucket, key), None)
        return self._send(204)

    # -- listings --------------------------------------------------------------
    def _list_objects(self, bucket: str, q: dict[str, list[str]]) -> None:
        prefix = q.get("prefix", [""])[0]
        delim = q.get("delimiter", [""])[0]
        v2 = q.get("list-type", [""])[0] == "2"
        maxk = int(q.get("max-keys", ["1000"])[0] or 1000)
        after = (q.get("continuation-token") or q.get("start-after") or q.get("marker")
                 or [""])[0]
        with STORE.lock:
            items = sorted((k, o) for (r, b, k), o in STORE.objects.items()
                           if r == self.region and b == bucket and k.startswith(prefix)
                           and k > after)
        contents, prefixes, last, truncated = [], [], "", False
        for k, o in items:
            if delim:
                i = k.find(delim, len(prefix))
                if i >= 0:
                    p = k[: i + len(delim)]
                    if p not in prefixes:
                        if len(contents) + len(prefixes) >= maxk:
                            truncated = True
                            break
                        prefixes.append(p)
                    last = k
                    continue
            if len(contents) + len(prefixes) >= maxk:
                truncated = True
                break
            contents.append(f"<Contents><Key>{escape(k)}</Key><LastModified>{_iso(o.mtime)}"
                            f"</LastModified><ETag>{escape(o.etag)}</ETag><Size>{o.size}</Size>"
                            "<StorageClass>STANDARD</StorageClass></Contents>")
            last = k
        cps = "".join(f"<CommonPrefixes><Prefix>{escape(p)}</Prefix></CommonPrefixes>"
                      for p in prefixes)
        if v2:
            tail = (f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount>"
                    + (f"<NextContinuationToken>{escape(last)}</NextContinuationToken>"
                       if truncated else ""))
        else:
            tail = f"<Marker>{escape(after)}</Marker>" + (
                f"<NextMarker>{escape(last)}</NextMarker>" if truncated else "")
        self._xml(200, f'<ListBucketResult xmlns="{NS}"><Name>{escape(bucket)}</Name><Prefix>'
                       f"{escape(prefix)}</Prefix>{tail}<MaxKeys>{maxk}</MaxKeys>"
                       + (f"<Delimiter>{escape(delim)}</Delimiter>" if delim else "")
                       + f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"
                       f"{''.join(contents)}{cps}</ListBucketResult>")

    def _list_uploads(self, bucket: str, q: dict[str, list[str]]) -> None:
        prefix = q.get("prefix", [""])[0]
        with STORE.lock:
            ups = sorted((u.key, uid, u.started) for uid, u in STORE.uploads.items()
                         if u.region == self.region and u.bucket == bucket
                         and u.key.startswith(prefix))
        inner = "".join(f"<Upload><Key>{escape(k)}</Key><UploadId>{uid}</UploadId><Initiated>"
                        f"{_iso(t)}</Initiated><StorageClass>STANDARD</StorageClass></Upload>"
                        for k, uid, t in ups)
        self._xml(200, f'<ListMultipartUploadsResult xmlns="{NS}"><Bucket>{escape(bucket)}'
                       f"</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>"
                       f"<Prefix>{escape(prefix)}</Prefix><MaxUploads>1000</MaxUploads>"
                       f"<IsTruncated>false</IsTruncated>{inner}</ListMultipartUploadsResult>")


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def serve() -> int:
    PREFIX.mkdir(parents=True, exist_ok=True)
    sock = answer_sock()
    sock.unlink(missing_ok=True)
    srv = UnixServer(str(sock), Handler)
    os.chmod(sock, 0o666)  # nginx workers run as nobody
    answerer_pid_path().write_text(f"{os.getpid()}\n")

    def stop(*_a: object) -> None:
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        srv.serve_forever(poll_interval=0.2)
    finally:
        sock.unlink(missing_ok=True)
        answerer_pid_path().unlink(missing_ok=True)
    return 0


# --------------------------------------------------------------------------
# process management


def render() -> None:
    PREFIX.mkdir(parents=True, exist_ok=True)
    for d in ("client_body_temp", "proxy_temp", "fastcgi_temp", "uwsgi_temp", "scgi_temp"):
        (PREFIX / d).mkdir(exist_ok=True)
    listen = "\n        ".join(f"listen {HOST}:{p};" for p in ports())
    text = (TEMPLATE.read_text().replace("@PREFIX@", str(PREFIX)).replace("@LISTEN@", listen)
            .replace("@PORTS@", ",".join(map(str, ports()))))
    conf_path().write_text(text)


def _pid_from(path: Path, needle: str) -> int | None:
    try:
        pid = int(path.read_text().strip())
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return None
    return pid if needle in cmd and state not in ("Z", "X") else None


def running_pid() -> int | None:
    return _pid_from(pid_path(), "nginx")


def answerer_pid() -> int | None:
    return _pid_from(answerer_pid_path(), "nullsink.py")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait(cond: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def up() -> int:
    if running_pid() and answerer_pid() and all(port_open(p) for p in ports()):
        print(f"nullsink: already up on {', '.join(endpoints())}", file=sys.stderr)
        return 0
    down(quiet=True)
    busy = [p for p in ports() if port_open(p)]
    if busy:
        print(f"nullsink: port(s) {busy} already in use by another process; "
              "set BENCH_SINK_PORT_BASE", file=sys.stderr)
        return 1
    render()
    access_log().unlink(missing_ok=True)  # a fresh log per start: the bench reads offsets
    log = open(PREFIX / "answerer.log", "ab")
    subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "serve"],
                     stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                     close_fds=True)
    if not _wait(lambda: answerer_pid() and answer_sock().exists(), 10):
        print("nullsink: the answerer did not start; see " + str(PREFIX / "answerer.log"),
              file=sys.stderr)
        return 1
    base = [nginx_bin(), "-p", str(PREFIX) + "/", "-c", str(conf_path()),
            "-e", str(PREFIX / "error.log")]
    t = subprocess.run([*base, "-t", "-q"], capture_output=True, text=True)
    if t.returncode != 0:
        print(f"nullsink: bad nginx config:\n{t.stderr}", file=sys.stderr)
        down(quiet=True)
        return 1
    subprocess.run(base, check=True, stdin=subprocess.DEVNULL)
    if not _wait(lambda: running_pid() and all(port_open(p) for p in ports()), 10):
        print("nullsink: nginx did not come up; see " + str(PREFIX / "error.log"), file=sys.stderr)
        return 1
    print(f"nullsink: up on {', '.join(endpoints())} (nginx pid {running_pid()}, "
          f"answerer pid {answerer_pid()})", file=sys.stderr)
    return 0


def _stop(pid: int | None, sig: int, still: object, what: str, quiet: bool) -> None:
    if pid is None:
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    if not _wait(lambda: not still(), 10):  # type: ignore[operator]
        os.kill(pid, signal.SIGKILL)
        _wait(lambda: not still(), 5)  # type: ignore[operator]
    if not quiet:
        print(f"nullsink: stopped {what} (pid {pid})", file=sys.stderr)


def down(quiet: bool = False) -> int:
    n, a = running_pid(), answerer_pid()
    if n is None and a is None and not quiet:
        print("nullsink: not running", file=sys.stderr)
    _stop(n, signal.SIGQUIT, running_pid, "nginx", quiet)
    _stop(a, signal.SIGTERM, answerer_pid, "answerer", quiet)
    for p in (pid_path(), answerer_pid_path()):
        p.unlink(missing_ok=True)
    return 0


def status() -> int:
    n, a = running_pid(), answerer_pid()
    ok = n is not None and a is not None and all(port_open(p) for p in ports())
    print(f"nullsink: {'up' if ok else 'down'} {' '.join(endpoints())}"
          + (f" nginx pid {n}" if n else "") + (f" answerer pid {a}" if a else ""))
    return 0 if ok else 1


LOG_RE = re.compile(r'^(\d+) (\S+) (\d+) (\d+) (\d+) "([^"]*)"')


@dataclass
class LogEntry:
    port: int
    method: str
    status: int
    request_length: int
    request_uri: str


def read_log(offset: int = 0) -> tuple[list[LogEntry], int]:
    """Parse access-log lines from byte offset; return (entries, new offset)."""
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
            out.append(LogEntry(int(m[1]), m[2], int(m[3]), int(m[4]), m[6]))
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
    for e in entries:
        total[e.port] += e.request_length
        count[e.port] += 1
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
    cmds = {"up": up, "down": down, "status": status, "stats": stats, "env": env,
            "serve": serve}
    if len(argv) != 1 or argv[0] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    return cmds[argv[0]]()  # type: ignore[operator]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
