"""The chunk producer: compressed bytes cut into parts, each hashed once.

``ChunkFiller.fill`` runs in a worker thread (every call in it -- the pipe
read, zstd, hashlib -- releases the GIL).  zstd compresses the source's stdout
straight into a (pooled) part buffer: no copy between compressor and part.
With ``STREAMER_AGE_RECIPIENTS`` the compressed stream is age-encrypted on its
way into the buffer (age/stream.py, 64 KiB at a time), once for every region.
Each part's digests (the CRCs its regions verify, or its Content-MD5, or the
signed SigV4 payload hash) are computed once by ``Part.seal`` and reused by
every region and every retry.  Only in the md5, sha256 and crc32 modes is the
whole stream's SHA-256 (for the manifest) also taken over each filled part; an
auto-mode manifest's end-to-end value is the composite of the part digests
(docs/SECURITY.md, "Integrity").
"""

from __future__ import annotations

import base64
import hashlib
import sys
import weakref
from collections.abc import Callable, Collection, Iterable

from streamer import digests
from streamer.age.keys import Recipient
from streamer.age.stream import EncryptingReader
from streamer.codec import (
    AdaptiveZstdReader,
    Compression,
    CountingSource,
    LevelDial,
    Levels,
    Reader,
    compressing_reader,
)
from streamer.settings.config import ChecksumMode
from streamer.store.base import PartBody
from streamer.tarframe import TarMember, trailer


class PartReleased(Exception):
    """A holder asked for the bytes of a part it no longer holds (a bug)."""


PRODUCER = 0  # the holder that seals and queues a part; regions count from 1


class Part:
    """One part of one artifact, held once and shared by every region.

    Who holds a part is decided when it is created: the producer (until the
    part is sealed and queued) and every region live at that moment.  Each
    holder lets go exactly once, with ``release``: a region after its upload of
    the part is acknowledged, or when it is dropped and no longer sending it;
    the producer once the part is sealed and queued.  Only when the last
    holder lets go is the buffer handed to ``on_free`` for reuse -- or None if
    something else (a request still writing it) still references it.  After
    that the part has no bytes at all: ``body_for`` raises, so a freed buffer
    (refilled with a later part) can never be hashed or sent under this
    part's number.  The part's digests are computed into its own buffer by
    ``seal``; no shared placeholder ever carries one."""

    def __init__(self, number: int, body: PartBody, holders: Iterable[int],
                 on_free: Callable[[Part, PartBody | None], None]) -> None:
        self.number = number
        self.size = len(body)
        self.holders: set[int] = {PRODUCER, *holders}
        self._body: PartBody | None = body
        self._ref = weakref.ref(body)  # to tell when the buffer itself is gone
        self._on_free = on_free
        self.digest = ("", "")  # (algorithm, hex), set by seal: recorded in the manifest

    def __len__(self) -> int:
        return self.size

    @property
    def freed(self) -> bool:
        return self._body is None

    @property
    def lingering(self) -> bool:
        """Freed, but its buffer is still alive (referenced from elsewhere)."""
        return self._body is None and self._ref() is not None

    def holds(self, holder: int) -> bool:
        return holder in self.holders

    def body_for(self, holder: int) -> PartBody:
        """The bytes, for a holder that has not let go yet."""
        if holder not in self.holders or self._body is None:
            raise PartReleased(f"part {self.number} is no longer held by {holder}")
        return self._body

    def seal(self, checksum: ChecksumMode, needed: Collection[str] = ()) -> None:
        """Compute the part's digests once (in a worker thread, by the producer):
        the ones its requests carry (the CRC or Content-MD5 of each region's
        ``part_checksum``, given as ``needed``; SigV4's SHA-256), and the one
        the manifest records for it (auto: CRC32C; MD5 in crc32 mode)."""
        body = self.body_for(PRODUCER)
        if checksum == "auto":
            got = digests.part_digests(body, (digests.MANIFEST_CRC, *needed))
            body.crcs = {a: digests.b64(d) for a, d in got.items() if a in digests.CRCS}
            if "md5" in got:
                body.md5_b64 = digests.b64(got["md5"])
            self.digest = (digests.MANIFEST_CRC, got[digests.MANIFEST_CRC].hex())
            return
        if checksum == "sha256":
            body.sha256_hex = hashlib.sha256(body).hexdigest()
            self.digest = ("sha256", body.sha256_hex)
            return
        md5 = hashlib.md5(body).digest()
        if checksum == "md5":
            body.md5_b64 = base64.b64encode(md5).decode()
        self.digest = ("md5", md5.hex())

    def release(self, holder: int) -> None:
        """``holder`` is done with this part (idempotent)."""
        if holder not in self.holders:
            return
        self.holders.discard(holder)
        if self.holders or self._body is None:
            return
        body, self._body = self._body, None
        # Only this variable and getrefcount's argument: no request,
        # payload or memoryview still holds the bytes, so they may be reused.
        self._on_free(self, body if sys.getrefcount(body) <= 2 else None)


class FramedSource:
    """The source's bytes as the body of one tar member (tarframe.py): the
    member's prefix, the source, its suffix, then the archive's trailer, which
    is known only at the source's EOF.  ``member_size`` is set then."""

    def __init__(self, source: CountingSource, member: TarMember) -> None:
        self._source = source
        self._member = member
        self._pending = member.prefix
        self._eof = False
        self.member_size: int | None = None

    def read(self, size: int = -1) -> bytes:
        while not self._pending:
            if self._eof:
                return b""
            data = self._source.read(size)
            if data:
                return data
            self._eof = True
            self.member_size = self._member.size(self._source.count)
            self._pending = self._member.suffix + trailer(self.member_size)
        n = len(self._pending) if size < 0 else size
        out, self._pending = self._pending[:n], self._pending[n:]
        return out

    def readinto(self, buffer: memoryview) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


class ChunkFiller:
    """Reads a source to EOF, yielding compressed (and, given ``recipients``,
    age-encrypted) parts of given sizes: encryption comes after compression,
    once per byte, and every region is sent the same ciphertext
    (docs/ARCHITECTURE.md, "Encryption").  With ``member`` the source is
    framed as that tar member (``FramedSource``); the tar header itself is put
    in front of the first part by the producer.  ``dial`` (zstd): the level
    adapts, frame by frame (codec.AdaptiveZstdReader)."""

    def __init__(self, fd: int, kind: Compression, level: int, threads: int = 0,
                 recipients: tuple[Recipient, ...] = (), member: TarMember | None = None,
                 dial: LevelDial | None = None, whole_sha256: bool = True) -> None:
        self.source = CountingSource(fd)
        self.framed = FramedSource(self.source, member) if member is not None else None
        self.compressor = compressing_reader(self.framed or self.source, kind, level, threads, dial)
        self.reader: Reader = self.compressor
        self._fixed = Levels(level, level, level, 1, False)
        if recipients:
            self.reader = EncryptingReader(self.reader, recipients)
        self.sha256 = hashlib.sha256() if whole_sha256 else None  # None: auto mode
        self.stored_bytes = 0
        self.exhausted = False

    @property
    def source_bytes(self) -> int:
        return self.source.count

    def levels(self) -> Levels:
        """The levels the stream was compressed at, so far."""
        if isinstance(self.compressor, AdaptiveZstdReader):
            return self.compressor.levels()
        return self._fixed

    def fill(self, body: PartBody, start: int = 0) -> int:
        """Fill ``body[start:]`` with the next stored bytes; returns how many.
        Only the last part is short; then ``exhausted`` is set.  Runs in a
        worker thread: the pipe read, zstd and hashlib release the GIL;
        encryption works one 64 KiB chunk per call."""
        view = memoryview(body)[start:]
        pos = 0
        try:
            while pos < len(view):
                n = self.reader.readinto(view[pos:])
                if not n:
                    self.exhausted = True
                    break
                pos += n
            if self.sha256 is not None:
                self.sha256.update(view[:pos])
        finally:
            view.release()
        self.stored_bytes += pos
        return pos
