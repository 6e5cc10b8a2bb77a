"""What a restore reads through: the stored bytes, decrypted when the run is
encrypted, then decompressed (docs/ARCHITECTURE.md, "Encryption").

The identity is checked before anything is downloaded (``require_identity``):
an encrypted run restored without ``STREAMER_AGE_IDENTITY``, or with an
identity that is none of the run's recipients, is a configuration error (exit
2), one line.  Decryption happens after every part's digest matched, so a
payload that does not authenticate means the backup was written wrongly,
not damaged in one region.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from streamer.age.header import HeaderError, NoMatchingIdentity
from streamer.age.keys import Identity
from streamer.age.stream import DecryptingReader, PayloadError, Readable
from streamer.codec import decompressed
from streamer.errors import ConfigError, IntegrityError

NO_IDENTITY_HINT = "set STREAMER_AGE_IDENTITY to the age identity file of one of its recipients"


def require_identity(what: str, recipients: Sequence[str],
                     identities: Sequence[Identity] | None) -> tuple[Identity, ...]:
    """The identities to open an encrypted run with, or ConfigError (pure)."""
    if not identities:
        raise ConfigError(f"{what} is encrypted (age) and no identity is set", NO_IDENTITY_HINT)
    mine = [str(i.recipient) for i in identities]
    if recipients and not set(mine) & set(recipients):
        raise ConfigError(f"{what} is encrypted to {', '.join(recipients)}; STREAMER_AGE_IDENTITY "
                          f"is {', '.join(mine)}, not one of them (wrong identity)",
                          "point STREAMER_AGE_IDENTITY at the identity file of one of those recipients")
    return tuple(identities)


class _Decrypted:
    """A DecryptingReader whose failures are the project's own errors."""

    def __init__(self, raw: Readable, identities: Sequence[Identity], where: str) -> None:
        self._where = where
        try:
            self._reader = DecryptingReader(raw, identities)
        except NoMatchingIdentity:
            raise ConfigError(f"{where}: no identity in STREAMER_AGE_IDENTITY opens it "
                              "(wrong identity)", NO_IDENTITY_HINT) from None
        except (HeaderError, PayloadError) as e:
            raise IntegrityError(f"{where}: not a readable age file: {e}",
                                 "the backup was written damaged; try another --at stamp") from None

    def read(self, size: int = -1, /) -> bytes:
        try:
            return self._reader.read(size)
        except PayloadError as e:
            raise IntegrityError(f"{self._where}: {e}",
                                 "the backup was written damaged; try another --at stamp") from None


@dataclass(frozen=True)
class Decoding:
    """How an artifact's stored bytes become its plaintext stream."""

    compression: str
    identities: tuple[Identity, ...] | None = None  # set: the stored bytes are an age file

    def plaintext(self, raw: Readable, where: str) -> Readable:
        if self.identities is not None:
            raw = _Decrypted(raw, self.identities, where)
        return decompressed(raw, self.compression)


HEADER_PROBE = 16 * 1024  # bytes read to open an age header: ~100 per recipient, then the nonce


def check_opens(head: bytes, identities: Sequence[Identity], where: str) -> None:
    """The identities open the age header at the start of ``head`` (its MAC
    checked): ConfigError if none is a recipient, IntegrityError if it is not
    an age header.  ``verify`` runs this so that a run encrypted to a
    mistyped recipient is found before the day it must be restored."""
    _Decrypted(io.BytesIO(head), identities, where)
