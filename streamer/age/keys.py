"""age X25519 keys: recipients (``age1...``) and identities (``AGE-SECRET-KEY-1...``).

Both are Bech32 strings (BIP 173, without its length limit), as the age format
specifies (age-encryption.org/v1, docs/ARCHITECTURE.md "Encryption").  Bech32 is
an encoding, not a cryptographic primitive; the X25519 arithmetic is
``cryptography``'s.  ``parse_recipients`` is pure; ``load_identities`` reads the
identity file and refuses one that group or others may read.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from streamer.errors import ConfigError

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
RECIPIENT_HRP = "age"
IDENTITY_HRP = "age-secret-key-"


def _polymod(values: list[int]) -> int:
    check = 1
    for value in values:
        top = check >> 25
        check = (check & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            if (top >> i) & 1:
                check ^= _GENERATOR[i]
    return check


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _regroup(data: list[int] | bytes, src: int, dst: int, pad: bool) -> list[int] | None:
    acc, bits, out, top = 0, 0, [], (1 << dst) - 1
    for value in data:
        acc = (acc << src) | value
        bits += src
        while bits >= dst:
            bits -= dst
            out.append((acc >> bits) & top)
    if pad and bits:
        out.append((acc << (dst - bits)) & top)
    elif not pad and (bits >= src or (acc << (dst - bits)) & top):
        return None
    return out


def bech32_encode(hrp: str, data: bytes) -> str:
    values = _regroup(data, 8, 5, True)
    assert values is not None
    poly = _polymod(_hrp_expand(hrp) + values + [0] * 6) ^ 1
    checksum = [(poly >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[v] for v in values + checksum)


def bech32_decode(text: str) -> tuple[str, bytes] | None:
    """(human-readable part, data) of a valid Bech32 string, else None."""
    if text.lower() != text and text.upper() != text:
        return None
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text) or any(c not in _CHARSET for c in text[pos + 1:]):
        return None
    hrp, values = text[:pos], [_CHARSET.index(c) for c in text[pos + 1:]]
    if any(not 33 <= ord(c) <= 126 for c in hrp) or _polymod(_hrp_expand(hrp) + values) != 1:
        return None
    data = _regroup(values[:-6], 5, 8, False)
    return None if data is None else (hrp, bytes(data))


@dataclass(frozen=True)
class Recipient:
    """An X25519 public key: what a backup host needs to encrypt."""

    public: bytes  # 32 bytes

    def __str__(self) -> str:
        return bech32_encode(RECIPIENT_HRP, self.public)


def parse_recipient(text: str) -> Recipient | None:
    decoded = bech32_decode(text.strip())
    if decoded is None or decoded[0] != RECIPIENT_HRP or len(decoded[1]) != 32:
        return None
    return Recipient(decoded[1])


def parse_recipients(text: str, where: str) -> tuple[Recipient, ...]:
    """Public keys separated by whitespace, commas or lines; ``#`` starts a
    comment (an ``age-keygen`` file's own comments pass).  ConfigError names
    the first bad one by position, never echoing more than its start."""
    found: list[Recipient] = []
    words = [w for line in text.splitlines() for w in line.split("#", 1)[0].replace(",", " ").split()]
    for n, word in enumerate(words, 1):
        recipient = parse_recipient(word)
        if recipient is None:
            raise ConfigError(f"{where}: entry {n} ({word[:8]}...) is not an age X25519 public key",
                              "use age1... keys as `age-keygen -y` prints them")
        if recipient not in found:
            found.append(recipient)
    if not found:
        raise ConfigError(f"{where} holds no age public key", "give one or more age1... keys")
    return tuple(found)


@dataclass(frozen=True)
class Identity:
    """An X25519 private key.  Its repr never shows the key."""

    private: X25519PrivateKey = field(repr=False)

    @property
    def recipient(self) -> Recipient:
        return Recipient(self.private.public_key().public_bytes_raw())


def parse_identities(text: str, where: str) -> tuple[Identity, ...]:
    """The AGE-SECRET-KEY-1... lines of an identity file (pure); ConfigError
    names the line, never its content."""
    found: list[Identity] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        decoded = bech32_decode(line)
        if decoded is None or decoded[0] != IDENTITY_HRP or len(decoded[1]) != 32:
            raise ConfigError(f"{where}: line {n} is not an age X25519 identity",
                              "use a file written by age-keygen (AGE-SECRET-KEY-1...)")
        found.append(Identity(X25519PrivateKey.from_private_bytes(decoded[1])))
    if not found:
        raise ConfigError(f"{where} holds no age identity", "use a file written by age-keygen")
    return tuple(found)


def load_identities(path: Path) -> tuple[Identity, ...]:
    """Read ``STREAMER_AGE_IDENTITY``; refuse a file group or others may read
    (or write: any of the bits 077, as ssh refuses a private key)."""
    where = f"STREAMER_AGE_IDENTITY {path}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise ConfigError(f"{where} cannot be read: {e.strerror}",
                          "point it at the age identity file (age-keygen -o FILE)") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError(f"{where} is not a regular file", "point it at the age identity file")
        if mode & 0o077:
            raise ConfigError(f"{where} is readable by group or others (mode {mode & 0o777:o}); "
                              "it holds the key to every backup",
                              f"chmod 600 {path}")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(1 << 20)
    finally:
        os.close(fd)
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ConfigError(f"{where} is not an age identity file", "use a file written by age-keygen") \
            from None
    return parse_identities(text, where)


def generate_identity() -> Identity:
    """A fresh identity (tests, and whoever wants a key without age-keygen)."""
    return Identity(X25519PrivateKey.generate())


def identity_text(identity: Identity) -> str:
    """The AGE-SECRET-KEY-1... line of an identity, as age-keygen writes it."""
    raw = identity.private.private_bytes_raw()
    return bech32_encode(IDENTITY_HRP, raw).upper()
