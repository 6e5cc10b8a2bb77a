"""The floor on a backup's wall time on this machine (bench/README.md, "The floor").

Any uploader of a webroot to three regions does at least: the producer's work
(tar and zstd -3, measured as the producer alone's CPU seconds), one checksum
pass over the stored stream (the cheapest the end-to-end check can be built
from: a CRC), and the copy of the stored stream into three TCP sockets, whose
other ends (the null sink) run on the same cores. Work W on N cores takes at
least W / N seconds, and no uploader finishes before its producer does:

    floor = max(producer wall, (producer CPU + stored GB x (checksum + send x3)) / N)

The per-GB costs are measured here, in this process, on the machine and at
the moment of the bench: a CRC32C (or zlib's CRC-32 where no CRC32C library is
installed) over 64 MiB, and 3 x 256 MiB sent through loopback TCP to three
reader threads (process CPU time counts both ends and the kernel's work).
"""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

SAMPLE = 64 << 20
SEND_PER_SOCKET = 256 << 20


def _crc() -> tuple[str, Callable[[bytes], object]]:
    try:
        import google_crc32c  # type: ignore[import-not-found]

        return "crc32c (google-crc32c)", google_crc32c.value
    except ImportError:
        pass
    try:
        from awscrt import checksums  # type: ignore[import-not-found]

        return "crc32c (awscrt)", checksums.crc32c
    except ImportError:
        return "crc32 (zlib)", zlib.crc32


def _cpu_of(fn: Callable[[], None]) -> float:
    c0 = time.process_time()
    fn()
    return time.process_time() - c0


def _checksum_cpu_per_gb(data: bytes) -> tuple[str, float]:
    name, crc = _crc()
    view = memoryview(data)
    step = 8 << 20

    def once() -> None:
        for i in range(0, len(view), step):
            crc(view[i:i + step])

    return name, min(_cpu_of(once) for _ in range(3)) / (len(data) / 1e9)


def _send3_cpu_per_gb(data: bytes) -> float:
    """CPU seconds per GB of stream sent to each of three loopback sockets."""
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def drain(conn: socket.socket) -> None:
        buf = bytearray(1 << 20)
        with conn:
            while conn.recv_into(buf):
                pass

    def send() -> None:
        with socket.create_connection(("127.0.0.1", port)) as s:
            view, left = memoryview(data), SEND_PER_SOCKET
            while left > 0:
                n = min(left, len(view))
                s.sendall(view[:n])
                left -= n

    def once() -> None:
        senders = [threading.Thread(target=send) for _ in range(3)]
        for th in senders:
            th.start()
        readers = []
        for _ in range(3):
            conn, _addr = srv.accept()
            readers.append(threading.Thread(target=drain, args=(conn,)))
            readers[-1].start()
        for th in senders + readers:
            th.join()

    with srv:
        cpu = min(_cpu_of(once) for _ in range(2))
    return cpu / (SEND_PER_SOCKET / 1e9)


def measure() -> dict[str, Any]:
    data = os.urandom(SAMPLE)
    name, crc = _checksum_cpu_per_gb(data)
    return {"cores": len(os.sched_getaffinity(0)), "checksum": name,
            "checksum_cpu_s_per_gb": round(crc, 4),
            "send3_cpu_s_per_gb": round(_send3_cpu_per_gb(data), 4)}


def floor_of(floor: dict[str, Any], producer_cpu: float, producer_wall: float,
             stored_bytes: int) -> float:
    per_gb = floor["checksum_cpu_s_per_gb"] + floor["send3_cpu_s_per_gb"]
    return max(producer_wall, (producer_cpu + stored_bytes / 1e9 * per_gb) / floor["cores"])


def floor_wall(floor: dict[str, Any], tree: Any, runs: list[dict[str, Any]],
               kind: str) -> float | None:
    """The floor of one tree kind, from the producer's runs on it."""
    mine = [r for r in runs if r.get("ok") and r.get("part") == "trees"
            and r.get("tree_kind") == kind and r["contender"] == "producer"]
    if not mine:
        return None
    return floor_of(floor, statistics.median(r["cpu"] for r in mine),
                    statistics.median(r["wall"] for r in mine), tree.zstd_bytes)


def table(floor: dict[str, Any]) -> list[str]:
    return ["#### The floor's per-GB costs (this process, this machine, now)\n",
            "| cores | checksum | checksum CPU s/GB | send to 3 loopback sockets CPU s/GB |",
            "|---|---|---|---|",
            f"| {floor['cores']} | {floor['checksum']} | {floor['checksum_cpu_s_per_gb']:.3f} | "
            f"{floor['send3_cpu_s_per_gb']:.3f} |", ""]
