"""Tar members read from a stream of blocks, their data never copied (pure).

The extractor (extract.py) needs each member's header before any of its
bytes (``safety.ArchiveGuard`` judges it first), then the member's data in
as few, large pieces as it can write with one system call each.  Python's
``tarfile`` in stream mode (``r|``) costs the restore most of its time
(docs/ARCHITECTURE.md, "A byte's way back"): every 128 KiB of data is read,
joined and sliced in Python (three copies), a file is read a block at a
time, every header's checksum is two 504-element ``struct`` tuples (13-37 us
of the 19-46 us ``TarInfo.frombuf`` takes), and every member's ``TarInfo``
is kept until the end (memory grows with the number of files).

``TarCursor`` reads the blocks a ``BlockPipe`` hands over (blocks.py) and
gives out each member's data as memoryviews of the blocks it lies in.
Headers: the plain ustar/GNU header of a file, directory, link or fifo with
octal numbers -- nearly every member of a webroot -- is read by
``parse_header`` (6 us); everything else (pax extended and global headers,
GNU long names and long link names, sparse files, base-256 numbers, a
checksum only the signed sum matches) goes to the library,
``tarfile.TarInfo.fromtarfile``, reading through the cursor as its
``TarFile``: no part of those formats is written again here.  Tests check
that both give the same member for every header ``tarfile`` writes.

Stricter than ``tarfile`` in one way: a header with a bad checksum after the
first member ends the archive silently there; here it is an error.
"""

from __future__ import annotations

import tarfile
import zlib
from collections.abc import Callable
from typing import NamedTuple, cast

from streamer.readback.safety import Kind

BLOCKSIZE = tarfile.BLOCKSIZE
ZERO_BLOCK = bytes(BLOCKSIZE)
ENCODING = tarfile.ENCODING
ERRORS = "surrogateescape"  # undecodable name bytes survive into os.open and back

# typeflag -> kind, for the headers parse_header reads itself (the rest: tarfile)
FAST_KINDS = {b"0": Kind.FILE, b"\x00": Kind.FILE, b"7": Kind.FILE, b"5": Kind.DIR,
              b"2": Kind.SYMLINK, b"1": Kind.HARDLINK, b"6": Kind.FIFO,
              b"3": Kind.DEVICE, b"4": Kind.DEVICE}
CHKSUM = slice(148, 156)

NextBlock = Callable[[], "memoryview | None"]


class ArchiveError(Exception):
    """The stream is not a readable tar archive (extract.py: IntegrityError)."""


class Member(NamedTuple):
    """One archive member, as the extractor needs it (a tuple: made 50,000
    times a second, a frozen dataclass's ``__init__`` is measurable)."""

    name: str
    kind: Kind
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    linkname: str = ""
    size: int = 0  # bytes of data stored after the header (a sparse file: its segments)
    sparse: tuple[tuple[int, int], ...] | None = None  # (offset, length) of each stored segment
    real_size: int = 0  # the file's length (a sparse file's, holes included)


def _nts(field: bytes) -> str:
    end = field.find(b"\x00")
    return (field if end < 0 else field[:end]).decode(ENCODING, ERRORS)


def _octal(field: bytes) -> int:
    """An octal field: digits, padded with spaces and NULs (the checksum ends
    in NUL and space); anything else (an empty field too) is ValueError, and
    left to tarfile."""
    return int(field.rstrip(b"\x00 "), 8)


def _checksum_matches(buf: bytes) -> bool:
    """The header's unsigned checksum, exactly, without a Python loop over its
    512 bytes: the byte sum S is known modulo 65521 (Adler-32's first half)
    and modulo 255 (256 = 1 mod 255), and S < 65521 x 255."""
    stored = _octal(buf[CHKSUM])
    total = stored + sum(buf[CHKSUM]) - 256  # S, if the stored checksum is right
    if not 0 <= total <= 255 * BLOCKSIZE:
        return False
    return ((total + 1) % 65521 == zlib.adler32(buf) & 0xFFFF
            and total % 255 == int.from_bytes(buf, "big") % 255)


def parse_header(buf: bytes) -> Member | None:
    """A plain header read as ``tarfile.TarInfo.frombuf`` reads it, or None when
    it is one for the library (an extension, a base-256 number, a checksum
    only the signed sum matches, or no valid header at all)."""
    kind = FAST_KINDS.get(buf[156:157])
    if kind is None or (buf[100] | buf[108] | buf[116] | buf[124] | buf[136]) & 0x80:
        return None
    try:
        if not _checksum_matches(buf):
            return None
        mode, uid, gid = _octal(buf[100:108]), _octal(buf[108:116]), _octal(buf[116:124])
        size, mtime = _octal(buf[124:136]), _octal(buf[136:148])
    except ValueError:
        return None
    name = _nts(buf[0:100])
    if buf[156:157] == b"\x00" and name.endswith("/"):
        kind = Kind.DIR  # the old V7 format's directory
    if kind is Kind.DIR:
        name = name.rstrip("/")
    if buf[345]:
        name = _nts(buf[345:500]) + "/" + name  # ustar's prefix
    size = size if kind is Kind.FILE else 0
    return Member(name, kind, mode, uid, gid, mtime * 1_000_000_000, _nts(buf[157:257]), size,
                  None, size)


def kind_of(ti: tarfile.TarInfo) -> Kind:
    if ti.isreg():
        return Kind.FILE
    if ti.isdir():
        return Kind.DIR
    if ti.issym():
        return Kind.SYMLINK
    if ti.islnk():
        return Kind.HARDLINK
    if ti.isfifo():
        return Kind.FIFO
    return Kind.DEVICE  # devices, and types tarfile does not know: refused by the guard


def from_tarinfo(ti: tarfile.TarInfo) -> Member:
    kind = kind_of(ti)
    segments = cast("list[tuple[int, int]] | None", ti.sparse)
    sparse = tuple((int(o), int(n)) for o, n in segments) if segments is not None else None
    real = ti.size if kind is Kind.FILE else 0
    size = sum(n for _, n in sparse) if sparse is not None else real
    return Member(ti.name, kind, ti.mode, ti.uid, ti.gid, round(float(ti.mtime) * 1_000_000_000),
                  ti.linkname, size, sparse, real)


def padded(size: int) -> int:
    return -(-size // BLOCKSIZE) * BLOCKSIZE


class TarCursor:
    """Reads a tar stream from ``next_block`` (memoryviews of the stream's
    consecutive bytes, None at its end; a view stays valid only until the
    next call).  Also the ``TarFile`` that ``TarInfo.fromtarfile`` reads
    through: ``fileobj``, ``offset``, ``pax_headers``, ``encoding``, ``errors``."""

    encoding = ENCODING
    errors = ERRORS

    def __init__(self, next_block: NextBlock) -> None:
        self._next_block = next_block
        self.fileobj = self
        self.pax_headers: dict[str, str] = {}  # pax global headers, applied by tarfile
        self.offset = 0  # where the next header starts
        self._block = memoryview(b"")
        self._pos = 0  # in the current block
        self._start = 0  # stream offset of the current block
        self._pushback = b""  # a header handed back for tarfile to read
        self._ended = False

    def tell(self) -> int:
        return self._start + self._pos - len(self._pushback)

    def _advance(self) -> bool:
        self._start += len(self._block)
        block = self._next_block()
        self._block, self._pos = (block, 0) if block is not None else (memoryview(b""), 0)
        return block is not None

    def read(self, size: int) -> bytes:
        """``size`` bytes (fewer at the end of the stream), copied: headers only."""
        if self._pushback:
            out, self._pushback = self._pushback[:size], self._pushback[size:]
            return out + self.read(size - len(out)) if len(out) < size else out
        end = self._pos + size
        if end <= len(self._block):
            self._pos = end
            return bytes(self._block[end - size:end])
        pieces = []
        while size > 0 and (self._pos < len(self._block) or self._advance()):
            take = min(size, len(self._block) - self._pos)
            pieces.append(bytes(self._block[self._pos:self._pos + take]))
            self._pos += take
            size -= take
        return b"".join(pieces)

    def take(self, size: int) -> memoryview:
        """Up to ``size`` bytes of member data, from the current block: valid
        until the next call.  ArchiveError if the stream ends first."""
        if self._pos == len(self._block) and not self._advance():
            raise ArchiveError("unexpected end of data inside a member")
        view = self._block[self._pos:self._pos + size]
        self._pos += len(view)
        return view

    def skip(self, size: int) -> None:
        while size > 0:
            size -= len(self.take(size))

    def next_member(self) -> Member | None:
        """The next member (its data follows: ``take`` exactly ``size`` bytes),
        None at the end of the archive."""
        if self._ended:
            return None
        here = self.tell()
        if here < self.offset:
            self.skip(self.offset - here)  # what the caller left of the last member, and padding
        start = self.offset
        buf = self.read(BLOCKSIZE)
        if buf == ZERO_BLOCK or (not buf and start > 0):
            self._ended = True  # the end-of-archive block (or a stream ending without one)
            return None
        member = parse_header(buf) if len(buf) == BLOCKSIZE and not self.pax_headers else None
        if member is not None:
            self.offset = start + BLOCKSIZE + padded(member.size)
            return member
        self._pushback = buf
        try:
            ti = tarfile.TarInfo.fromtarfile(self)  # type: ignore[arg-type]
        except tarfile.TarError as e:
            raise ArchiveError(f"bad header at byte {start}: {e}") from None
        return from_tarinfo(ti)
