#!/usr/bin/env python3
"""A bandwidth cap outside streamer: a TCP forwarder per port, one rate per port.

    bench/throttle.py --rate 5000000 LISTEN:UPSTREAM [LISTEN:UPSTREAM ...]

Listens on 127.0.0.1:LISTEN and forwards every connection to
127.0.0.1:UPSTREAM.  The bytes towards the upstream (the uploads) of all the
connections of one port share one allowance of ``--rate`` bytes per second
(a pacing clock: each chunk of at most 64 KiB waits until the clock allows
it); the answers come back unthrottled.  Like a slow link, what the cap holds
back waits in the kernel's socket buffers.  Runs until SIGTERM.  Used by
bench/adaptive.py in front of the null sink's ports.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

CHUNK = 64 * 1024


class Pace:
    """One port's allowance: when its next byte may leave (loop time)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.free_at = 0.0

    async def wait(self, n: int) -> None:
        now = asyncio.get_running_loop().time()
        self.free_at = max(now, self.free_at) + n / self.rate
        if self.free_at - n / self.rate > now:
            await asyncio.sleep(self.free_at - n / self.rate - now)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pace: Pace | None) -> None:
    try:
        while data := await reader.read(CHUNK):
            if pace is not None:
                await pace.wait(len(data))
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def serve(listen: int, upstream: int, rate: int) -> asyncio.Server:
    pace = Pace(rate)

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_w, pace), pipe(up_r, writer, None))

    return await asyncio.start_server(connection, "127.0.0.1", listen)


async def main(rate: int, pairs: list[tuple[int, int]]) -> None:
    servers = [await serve(listen, upstream, rate) for listen, upstream in pairs]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("throttle: ready", flush=True)
    await stop.wait()
    for s in servers:
        s.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=int, required=True, help="bytes per second per port")
    ap.add_argument("pairs", nargs="+", help="LISTEN:UPSTREAM port pairs")
    a = ap.parse_args()
    asyncio.run(main(a.rate, [(int(p.split(":")[0]), int(p.split(":")[1])) for p in a.pairs]))
