"""Fixed buffers between two threads: one fills them, the other empties them.

    stream (HashingReader -> [age] -> zstd) --readinto--> a free buffer --> full queue
        --> next_block() in the other thread --> free again at its next call

The restore's consumer thread decompresses into the buffers while a second
thread parses and writes the tar members out of them (extract.py), so that
zstd and SHA-256 (which release the GIL) run beside the extractor's Python
(docs/ARCHITECTURE.md, "A byte's way back").  ``count`` buffers of ``size``
bytes are allocated once and reused, so memory is ``count x size`` whatever
the stream, and no block is allocated (and page-faulted in) per read.

Either side may stop the other: the filler passes its exception on (the
extractor's ``next_block`` raises ``FillerFailed``, and ``fill`` re-raises
the original), and the extractor calls ``stop`` when it ends, for whatever
reason, which ends ``fill`` at its next buffer.
"""

from __future__ import annotations

import queue
from typing import Protocol

MiB = 1024 * 1024


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class FillerFailed(Exception):
    """The filling side raised; it re-raises the error itself."""


_FAILED: tuple[bytearray, int] = (bytearray(), -1)  # in the full queue: the filler raised
_STOP = None  # in the free queue: the extractor ended


def _copy_into(source: Readable, buf: bytearray) -> int:
    data = source.read(len(buf))
    buf[:len(data)] = data
    return len(data)


class BlockPipe:
    """``count`` buffers of ``size`` bytes, passed from ``fill`` to ``next_block``."""

    def __init__(self, count: int = 4, size: int = MiB) -> None:
        self._free: queue.SimpleQueue[bytearray | None] = queue.SimpleQueue()
        for _ in range(count):
            self._free.put(bytearray(size))
        self._full: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
        self._held: bytearray | None = None
        self._ended = False
        self._stopped = False

    # ---------------------------------------------------------------- filling side

    def fill(self, source: Readable) -> None:
        """Read ``source`` into the free buffers until it ends or the other side stops."""
        readinto = getattr(source, "readinto", None)
        try:
            while True:
                buf = self._free.get()
                if buf is _STOP or self._stopped:
                    return
                n = readinto(buf) if readinto is not None else _copy_into(source, buf)
                if not n:
                    self._full.put(None)
                    return
                self._full.put((buf, n))
        except BaseException:
            self._full.put(_FAILED)
            raise

    # ---------------------------------------------------------------- emptying side

    def next_block(self) -> memoryview | None:
        """The next bytes of the stream (None at its end); the view is valid
        until the next call, which hands its buffer back."""
        if self._held is not None:
            self._free.put(self._held)
            self._held = None
        if self._ended:
            return None
        item = self._full.get()
        if item is None:
            self._ended = True
            return None
        if item is _FAILED:
            self._ended = True
            raise FillerFailed()
        buf, n = item
        self._held = buf
        return memoryview(buf)[:n]

    def stop(self) -> None:
        """The emptying side is done (or failed): ``fill`` returns at its next buffer."""
        self._stopped = True
        self._free.put(_STOP)
