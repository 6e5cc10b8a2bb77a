"""A stream of unknown length stored as the one member of a gzip'd tar (pure).

The ADT layout stores the database dump as ADT's ``Backup.sh`` does: a
``.tar.gz`` whose single member is the dump file (docs/ARCHITECTURE.md,
"A tar member of unknown size").  A tar header carries the member's size
before its data, and the dump's size is known only when it ends, so the
stored object is two things glued together:

    [gzip member A: the 512-byte tar header]   <- written last (``head``)
    [gzip member B: prefix + dump + suffix + tar padding and end of archive]

gzip allows concatenated members and every gunzip (GNU tar's ``z``, Python's
gzip module) reads them as one stream, so ``tar xzf`` sees one archive.  The
pipeline keeps the first part of the upload back until the dump ends, then
puts the header's gzip member in front of it (pipeline/produce.py).

``TarMember`` says what surrounds the source's bytes inside the member;
``header`` and ``trailer`` are the archive's framing; nothing here does I/O.
"""

from __future__ import annotations

import tarfile
import zlib
from dataclasses import dataclass

BLOCK = 512
RECORD = 20 * BLOCK  # GNU tar's default record: archives end on a multiple of it
HEAD_RESERVE = 1024  # bytes kept free at the front of the first part for ``head``


@dataclass(frozen=True)
class TarMember:
    """The one member of the archive: its name, and the bytes the layout puts
    before and after the source's own (ADT's marker-table statements)."""

    name: str
    prefix: bytes = b""
    suffix: bytes = b""
    mtime: int = 0

    def size(self, source_bytes: int) -> int:
        """The member's size once the source gave ``source_bytes``."""
        return len(self.prefix) + source_bytes + len(self.suffix)


def header(member: TarMember, size: int) -> bytes:
    """The member's tar header block (GNU format: sizes above 8 GiB in base-256),
    owned by root with mode 0644, as ADT's ``tar cvfz`` run by root writes it."""
    info = tarfile.TarInfo(member.name)
    info.size = size
    info.mtime = member.mtime
    info.mode = 0o644
    info.uname = info.gname = "root"
    block = info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    assert len(block) == BLOCK, "a short member name needs one header block"
    return block


def trailer(size: int) -> bytes:
    """What follows a member of ``size`` bytes: zeros to its block boundary, the
    two zero blocks that end an archive, and zeros to the record boundary."""
    padded = -size % BLOCK
    archive = BLOCK + size + padded + 2 * BLOCK
    return bytes(padded + 2 * BLOCK + (-archive % RECORD))


def gzip_member(data: bytes, level: int) -> bytes:
    """``data`` as one complete gzip member (the head of the stored object)."""
    z = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return z.compress(data) + z.flush()


def head(member: TarMember, size: int, level: int) -> bytes:
    """The gzip member that goes first in the stored object, once ``size`` is known."""
    out = gzip_member(header(member, size), level)
    assert len(out) <= HEAD_RESERVE
    return out
