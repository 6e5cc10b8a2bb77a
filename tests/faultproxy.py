"""A seeded fault-injecting HTTP/1.1 proxy in front of one S3 region (the fault tests of docs/RELIABILITY.md).

    with FaultProxy(upstream="http://127.0.0.1:19131", seed=7) as proxy:
        env["S3_HOST_BASE"] = f"{proxy.endpoint}|..."          # instead of the region's own endpoint
        proxy.add(Fault(op="UploadPart", action="status", status=503, code="SlowDown", probability=0.1))

It listens on 127.0.0.1 on a free port, in its own thread with its own event
loop, so it serves in-process async clients and ``streamer`` subprocesses
alike.  It speaks just enough HTTP/1.1 to find request and response boundaries
(Content-Length and chunked bodies, keep-alive, ``Expect: 100-continue``,
which it answers itself), recognises the S3 operation from the method, path
and query (path-style addressing), and forwards bytes.

Faults apply in the order added; the first that matches a request wins:

* ``status``: answer ``status`` with an S3 XML error ``code`` (the body is read);
* ``blackhole``: read the request, never answer (the connection stays open);
* ``reset``: read part of the request body, then close with a TCP RST;
* ``throttle``: ``rate`` bytes/s, both directions, shared by every connection
  the fault applies to;
* ``cut``: the response body stops at object offset ``at`` and the connection
  closes; ``flip``: the byte at object offset ``at`` is inverted.  The object
  offset is the body offset for a whole-object GET; a ranged GET's body starts
  at its Content-Range start.

A fault matches when ``op`` is the request's operation or ``"*"``, ``path`` (if
set) is part of the request path, at least ``after`` such requests passed since
the fault was added, it fired fewer than ``times`` times (if set), and a draw
from the seeded RNG is below ``probability``.  ``seen`` counts the requests of
each operation (``"<op> probe"``: those of the checksum probe, whose keys
hold ``streamer-probe``), ``fired`` the faults injected by action.
"""

from __future__ import annotations

import asyncio
import http
import random
import re
import socket
import ssl
import struct
import threading
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

ACTIONS = frozenset({"status", "blackhole", "reset", "throttle", "cut", "flip"})
CHUNK = 64 * 1024
HEAD_LIMIT = 1 << 20


@dataclass(frozen=True)
class Fault:
    op: str = "*"
    action: str = "status"
    status: int = 503
    code: str = "SlowDown"
    probability: float = 1.0
    after: int = 0
    rate: int = 0
    at: int = 0
    times: int | None = None
    path: str = ""

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r} (one of {sorted(ACTIONS)})")
        if self.action == "throttle" and self.rate <= 0:
            raise ValueError("a throttle needs rate > 0 (bytes/s)")


@dataclass
class _Armed:
    fault: Fault
    matched: int = 0
    fired: int = 0
    free_at: float = 0.0  # throttle: when the shared allowance is next free (loop time)

    async def throttle(self, n: int) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.free_at = max(now, self.free_at) + n / self.fault.rate
        if self.free_at > now:
            await asyncio.sleep(self.free_at - now)


@dataclass
class _Message:
    """A request or response head: its first line split, its headers, the raw bytes."""
    first: list[str]
    headers: dict[str, str]
    raw: bytes

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


def parse_head(raw: bytes) -> _Message:
    lines = raw.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return _Message(lines[0].split(" ", 2), headers, raw)


def classify(method: str, target: str, headers: dict[str, str]) -> str:
    """The S3 operation of a path-style request (pure)."""
    url = urlsplit(target)
    query = parse_qs(url.query, keep_blank_values=True)
    bucket, _, key = url.path.lstrip("/").partition("/")
    if not bucket:
        return "ListBuckets" if method == "GET" else f"{method}Service"
    if not key:
        return _bucket_op(method, query)
    copy = "x-amz-copy-source" in headers
    if "uploadId" in query:
        return {"PUT": "UploadPartCopy" if copy else "UploadPart", "POST": "CompleteMultipartUpload",
                "DELETE": "AbortMultipartUpload", "GET": "ListParts"}.get(method, f"{method}Upload")
    if "uploads" in query and method == "POST":
        return "CreateMultipartUpload"
    return {"PUT": "CopyObject" if copy else "PutObject", "GET": "GetObject", "HEAD": "HeadObject",
            "DELETE": "DeleteObject"}.get(method, f"{method}Object")


def _bucket_op(method: str, query: dict[str, list[str]]) -> str:
    if method == "GET":
        if "uploads" in query:
            return "ListMultipartUploads"
        if "location" in query:
            return "GetBucketLocation"
        if "versions" in query:
            return "ListObjectVersions"
        return "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects"
    if method == "POST" and "delete" in query:
        return "DeleteObjects"
    return {"HEAD": "HeadBucket", "PUT": "CreateBucket" if not query else "PutBucketConfig",
            "DELETE": "DeleteBucket"}.get(method, f"{method}Bucket")


@dataclass
class _Shaper:
    """Applies a throttle, a cut and a flip to the bytes of one body, by object offset."""
    armed: _Armed | None = None
    offset: int = 0
    cut: int | None = None
    flip: int | None = None
    stopped: bool = False

    async def apply(self, data: bytes) -> bytes:
        start, end = self.offset, self.offset + len(data)
        if self.flip is not None and start <= self.flip < end:
            buf = bytearray(data)
            buf[self.flip - start] ^= 0xFF
            data = bytes(buf)
        if self.cut is not None and self.cut < end:
            data = data[:max(0, self.cut - start)]
            self.stopped = True
        self.offset = end
        if self.armed is not None and self.armed.fault.action == "throttle":
            await self.armed.throttle(len(data))
        return data


def _framing(msg: _Message, *, response_to: str | None = None) -> tuple[str, int]:
    """('length', n) | ('chunked', 0) | ('close', 0): how the body of ``msg`` ends."""
    if response_to is not None:
        status = int(msg.first[1])
        if response_to == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return ("length", 0)
    if "chunked" in msg.header("transfer-encoding").lower():
        return ("chunked", 0)
    if msg.header("content-length"):
        return ("length", int(msg.header("content-length")))
    return ("close", 0) if response_to is not None else ("length", 0)


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None,
                 framing: tuple[str, int], shaper: _Shaper) -> None:
    """Copy one body (``writer`` None: discard it); stops early when the shaper cuts it."""
    kind, left = framing
    while not shaper.stopped:
        if kind == "chunked":
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                trailer = line
                while (t := await reader.readuntil(b"\r\n")) != b"\r\n":
                    trailer += t
                if writer is not None:
                    writer.write(trailer + b"\r\n")
                return
            data = await shaper.apply(await reader.readexactly(size))
            await reader.readexactly(2)
            out = (b"%x\r\n" % len(data) + data + b"\r\n") if data else b""
        else:
            if kind == "length" and left == 0:
                return
            raw = await reader.read(min(left, CHUNK) if kind == "length" else CHUNK)
            if not raw:
                if kind == "length":
                    raise asyncio.IncompleteReadError(b"", left)
                return
            left -= len(raw)
            out = await shaper.apply(raw)
        if writer is not None and out:
            writer.write(out)
            await writer.drain()


def _error_response(fault: Fault, method: str, close: bool) -> bytes:
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{fault.code}</Code><Message>injected by faultproxy</Message>"
            "<RequestId>faultproxy</RequestId></Error>").encode()
    try:
        reason = http.HTTPStatus(fault.status).phrase
    except ValueError:
        reason = "Fault"
    head = (f"HTTP/1.1 {fault.status} {reason}\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\nx-amz-request-id: faultproxy\r\n"
            + ("Connection: close\r\n" if close else "") + "\r\n").encode()
    return head if method == "HEAD" else head + body


def _rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if e.partial.strip():
            raise
        return None


@dataclass
class _Upstream:
    host: str
    port: int
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.conn is not None and self.conn[0].at_eof():
            self.close()
        if self.conn is None:
            self.conn = await asyncio.open_connection(self.host, self.port, limit=HEAD_LIMIT)
        return self.conn

    def close(self) -> None:
        # abort, not close: a graceful close waits for a request body the
        # upstream may never read, and outlives the proxy's loop
        if self.conn is not None:
            self.conn[1].transport.abort()
            self.conn = None


_RANGE = re.compile(r"bytes (\d+)-")


@dataclass
class FaultProxy:
    upstream: str
    seed: int = 0
    ssl_context: ssl.SSLContext | None = None  # serve TLS with this (server-side) context
    seen: Counter[str] = field(default_factory=Counter)
    fired: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        url = urlsplit(self.upstream)
        if url.scheme != "http" or not url.hostname or not url.port:
            raise ValueError(f"upstream must be http://host:port, not {self.upstream!r}")
        self._host, self._port = url.hostname, url.port
        self._rng = random.Random(self.seed)
        self._armed: list[_Armed] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._clients: set[asyncio.StreamWriter] = set()
        self._error: BaseException | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._armed.append(_Armed(fault))

    def clear(self) -> None:
        with self._lock:
            self._armed = []

    def __enter__(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._run, name="faultproxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"fault proxy did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as e:  # reported by __enter__
            self._error = e
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._connection, "127.0.0.1", 0, ssl=self._ssl_or_none(),
                                            limit=HEAD_LIMIT)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in self._clients:  # still flushing to a client that went away
            client.transport.abort()
        for _ in range(3):  # let the transports' connection_lost callbacks run
            await asyncio.sleep(0)
        await server.wait_closed()

    def _ssl_or_none(self) -> ssl.SSLContext | None:
        return self.ssl_context

    def _pick(self, op: str, path: str) -> _Armed | None:
        with self._lock:
            self.seen[op] += 1
            if "streamer-probe" in path:  # the checksum probe (pipeline/run.probe_prefix)
                self.seen[f"{op} probe"] += 1
            for armed in self._armed:
                f = armed.fault
                if f.op not in ("*", op) or (f.path and f.path not in path):
                    continue
                armed.matched += 1
                if armed.matched <= f.after or (f.times is not None and armed.fired >= f.times):
                    continue
                if f.probability < 1.0 and self._rng.random() >= f.probability:
                    continue
                armed.fired += 1
                self.fired[f.action] += 1
                return armed
        return None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._clients.add(writer)
        upstream = _Upstream(self._host, self._port)
        try:
            while (raw := await _read_head(reader)) is not None:
                if not await self._exchange(parse_head(raw), reader, writer, upstream):
                    break
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ssl.SSLError, ValueError):
            pass  # a client or upstream went away mid-message: drop the connection
        finally:
            self._tasks.discard(task)
            upstream.close()
            writer.close()
            if not writer.transport.get_write_buffer_size():
                self._clients.discard(writer)

    async def _exchange(self, req: _Message, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        upstream: _Upstream) -> bool:
        """One request and its response; False when the client connection must close."""
        method, target = req.first[0], req.first[1]
        armed = self._pick(classify(method, target, req.headers), urlsplit(target).path)
        action = armed.fault.action if armed else None
        body = _framing(req)
        if action == "blackhole":
            while await reader.read(CHUNK):
                pass
            return False
        if req.header("expect").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        close = req.header("connection").lower() == "close"
        if action == "reset":
            if body[0] != "length" or body[1] > 0:
                await reader.read(max(1, min(body[1] // 2, 256 * 1024)) if body[0] == "length" else CHUNK)
            _rst(writer)
            return False
        if action == "status":
            assert armed is not None
            await _relay(reader, None, body, _Shaper())
            writer.write(_error_response(armed.fault, method, close))
            await writer.drain()
            return not close
        return await self._forward(req, reader, writer, upstream, armed) and not close

    async def _forward(self, req: _Message, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       upstream: _Upstream, armed: _Armed | None) -> bool:
        up_r, up_w = await upstream.get()
        head = b"\r\n".join(line for line in req.raw.split(b"\r\n")
                            if not line.lower().startswith(b"expect:"))
        up_w.write(head)
        await _relay(reader, up_w, _framing(req), _Shaper(armed))
        await up_w.drain()
        while True:
            raw = await _read_head(up_r)
            if raw is None:
                upstream.close()
                return False
            resp = parse_head(raw)
            if not 100 <= int(resp.first[1]) < 200:
                break
        writer.write(raw)
        shaper = _Shaper(armed)
        if armed is not None and armed.fault.action in ("cut", "flip"):
            m = _RANGE.match(resp.header("content-range"))
            shaper.offset = int(m.group(1)) if m else 0
            setattr(shaper, armed.fault.action, armed.fault.at)
        framing = _framing(resp, response_to=req.first[0])
        await _relay(up_r, writer, framing, shaper)
        await writer.drain()
        if shaper.stopped or framing[0] == "close" or resp.header("connection").lower() == "close":
            upstream.close()
            return False
        return True
