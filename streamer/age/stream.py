"""The age v1 payload, streamed: an encrypting reader for the producer and a
decrypting reader for restore (age-encryption.org/v1, "Payload").

    payload key = HKDF-SHA-256(file key, salt = 16-byte nonce, info "payload")
    chunk i     = ChaCha20-Poly1305(payload key, nonce = i (11 bytes BE) || last,
                                    64 KiB of plaintext)  (the last chunk shorter)

``EncryptingReader`` sits between the compressor and the part buffers
(pipeline/chunker.py): the chunk producer fills each part with ciphertext
straight from it, once per byte, whatever the number of regions.  It holds one
64 KiB plaintext chunk and one ciphertext chunk (128 KiB), so the memory
budget is unchanged in practice; nothing touches disk.  ``DecryptingReader``
is a ``read(size)`` view of the plaintext of a stored stream, the shape the
decompressor reads through (codec.decompressed).  Composed from
``cryptography``'s ChaCha20-Poly1305 and HKDF; docs/ARCHITECTURE.md
"Encryption" gives the measurements behind that choice.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from streamer.age.header import (
    FILE_KEY_SIZE,
    HeaderError,
    build_header,
    hkdf,
    open_header,
    parse_header,
)
from streamer.age.keys import Identity, Recipient

CHUNK = 64 * 1024
TAG = 16
SEALED_CHUNK = CHUNK + TAG
NONCE_SIZE = 16


class Reader(Protocol):
    def readinto(self, buffer: memoryview) -> int: ...


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class PayloadError(ValueError):
    """The payload does not authenticate, or ends early (damaged or truncated)."""


def _nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class EncryptingReader:
    """The age encryption of ``source`` for ``recipients``, read into the caller's buffer."""

    def __init__(self, source: Reader, recipients: Sequence[Recipient]) -> None:
        file_key, nonce = os.urandom(FILE_KEY_SIZE), os.urandom(NONCE_SIZE)
        self._source = source
        self._aead = ChaCha20Poly1305(hkdf(file_key, nonce, b"payload"))
        self._plain = bytearray(CHUNK + 1)  # one chunk and a byte: is there more?
        self._have = 0
        self._sealed = bytearray(SEALED_CHUNK)
        self._pending = memoryview(build_header(file_key, recipients) + nonce)
        self._counter = 0
        self._done = False

    def readinto(self, buffer: memoryview) -> int:
        """At least one byte unless the stream has ended; at most one chunk."""
        if not self._pending:
            if self._done:
                return 0
            plain, last = self._next_plain()
            if len(buffer) >= len(plain) + TAG:  # straight into the caller's part buffer
                n = self._seal_into(plain, last, buffer)
                self._advance(last)
                return n
            n = self._seal_into(plain, last, memoryview(self._sealed))
            self._advance(last)
            self._pending = memoryview(self._sealed)[:n]
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _next_plain(self) -> tuple[memoryview, bool]:
        """The next chunk's plaintext, and whether it is the last."""
        view = memoryview(self._plain)
        while self._have < CHUNK + 1:
            n = self._source.readinto(view[self._have:])
            if not n:
                return view[:self._have], True
            self._have += n
        return view[:CHUNK], False

    def _seal_into(self, plain: memoryview, last: bool, out: memoryview) -> int:
        n = len(plain) + TAG
        self._aead.encrypt_into(_nonce(self._counter, last), plain, None, out[:n])
        return n

    def _advance(self, last: bool) -> None:
        self._counter += 1
        if last:
            self._done = True
            self._have = 0
        else:
            self._plain[0] = self._plain[CHUNK]
            self._have = 1


class _Input:
    """Exact reads and line reads over a ``read(size)`` stream."""

    def __init__(self, raw: Readable) -> None:
        self._raw = raw
        self._buf = bytearray()
        self._eof = False

    def _more(self, size: int) -> bool:
        if self._eof:
            return False
        data = self._raw.read(size)
        if not data:
            self._eof = True
            return False
        self._buf.extend(data)
        return True

    def readline(self) -> bytes:
        while (end := self._buf.find(b"\n")) < 0 and len(self._buf) < 1 << 16:
            if not self._more(4096):
                break
        end = end + 1 if end >= 0 else len(self._buf)
        line = bytes(self._buf[:end])
        del self._buf[:end]
        return line

    def read_exact(self, size: int) -> bytes:
        if not self._buf and not self._eof:  # the common case: no copy
            data = self._raw.read(size)
            if len(data) == size:
                return data
            self._buf.extend(data)
            self._eof = not data
        while len(self._buf) < size and self._more(max(size - len(self._buf), SEALED_CHUNK)):
            pass
        out = bytes(self._buf[:size])
        del self._buf[:size]
        return out


class DecryptingReader:
    """The plaintext of an age stream; HeaderError/NoMatchingIdentity while
    opening, PayloadError while reading a damaged or truncated payload."""

    def __init__(self, raw: Readable, identities: Sequence[Identity]) -> None:
        self._in = _Input(raw)
        stanzas, upto, mac = parse_header(self._in.readline)
        file_key = open_header(stanzas, upto, mac, identities)
        nonce = self._in.read_exact(NONCE_SIZE)
        if len(nonce) != NONCE_SIZE:
            raise PayloadError("age payload truncated before its nonce")
        self._aead = ChaCha20Poly1305(hkdf(file_key, nonce, b"payload"))
        self._counter = 0
        self._opened = bytearray(CHUNK)
        self._next = self._in.read_exact(SEALED_CHUNK)
        self._plain = b""
        self._pos = 0  # bytes of _plain already read
        self._done = False

    def read(self, size: int = -1, /) -> bytes:
        """At most one chunk's plaintext (a whole chunk without a copy)."""
        while self._pos >= len(self._plain) and not self._done:
            self._plain, self._pos = self._open_next(), 0
        end = len(self._plain) if size < 0 else min(len(self._plain), self._pos + size)
        out = self._plain if self._pos == 0 and end == len(self._plain) else \
            self._plain[self._pos:end]
        self._pos = end
        return out

    def _open_next(self) -> bytes:
        sealed = self._next
        self._next = self._in.read_exact(SEALED_CHUNK) if len(sealed) == SEALED_CHUNK else b""
        last = not self._next
        if len(sealed) < TAG or (last and len(sealed) == TAG and self._counter):
            raise PayloadError(f"age payload truncated at chunk {self._counter}")
        out = memoryview(self._opened)[:len(sealed) - TAG]
        try:
            # decrypt_into a reused buffer, then one copy: measured 2.5x
            # cheaper than decrypt(), which returns a fresh object per chunk
            self._aead.decrypt_into(_nonce(self._counter, last), sealed, None, out)
        except InvalidTag:
            raise PayloadError(f"age payload chunk {self._counter} does not authenticate "
                               "(damaged, or truncated at a chunk boundary)") from None
        self._counter += 1
        self._done = last
        return bytes(out)


def seal(data: bytes, recipients: Sequence[Recipient]) -> bytes:
    """``data`` encrypted to ``recipients`` as one age file (the manifest's sealed section)."""
    reader = EncryptingReader(io.BytesIO(data), recipients)
    out = bytearray()
    block = bytearray(SEALED_CHUNK)
    while n := reader.readinto(memoryview(block)):
        out.extend(block[:n])
    return bytes(out)


def unseal(data: bytes, identities: Sequence[Identity]) -> bytes:
    """The plaintext of a whole age file held in memory."""
    reader = DecryptingReader(io.BytesIO(data), identities)
    out = bytearray()
    while block := reader.read(SEALED_CHUNK):
        out.extend(block)
    return bytes(out)


__all__ = ["DecryptingReader", "EncryptingReader", "HeaderError", "PayloadError", "seal", "unseal"]
