"""The age v1 header: the file key wrapped for each X25519 recipient, and its MAC.

    age-encryption.org/v1
    -> X25519 <ephemeral share, base64>
    <file key wrapped with ChaCha20-Poly1305, base64>
    --- <HMAC-SHA-256 of the header so far, base64>

Composed from ``cryptography``'s X25519, HKDF-SHA-256, ChaCha20-Poly1305 and
HMAC exactly as age-encryption.org/v1 specifies; no primitive is written here
(docs/ARCHITECTURE.md, "Encryption").  Pure apart from the CSPRNG.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import constant_time, hashes, hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from streamer.age.keys import Identity, Recipient

VERSION_LINE = b"age-encryption.org/v1\n"
X25519_INFO = b"age-encryption.org/v1/X25519"
ZERO_NONCE = bytes(12)
FILE_KEY_SIZE = 16
MAX_HEADER = 64 * 1024  # a header longer than this is not one streamer would read


class HeaderError(ValueError):
    """The bytes are not an age v1 header (or one that was tampered with)."""


class NoMatchingIdentity(Exception):
    """No stanza of the header opens with any of the identities given."""


def hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=salt, info=info).derive(ikm)


def b64(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def unb64(text: bytes) -> bytes:
    """Canonical unpadded base64, as the spec demands, else HeaderError."""
    if b"=" in text:
        raise HeaderError("padded base64")
    try:
        data = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise HeaderError("bad base64") from None
    if b64(data) != text:
        raise HeaderError("non-canonical base64")
    return data


def _mac(file_key: bytes, header_upto_dashes: bytes) -> bytes:
    h = hmac.HMAC(hkdf(file_key, b"", b"header"), hashes.SHA256())
    h.update(header_upto_dashes)
    return h.finalize()


def _stanza(file_key: bytes, recipient: Recipient) -> bytes:
    ephemeral = X25519PrivateKey.generate()
    share = ephemeral.public_key().public_bytes_raw()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient.public))
    wrap = hkdf(shared, share + recipient.public, X25519_INFO)
    body = b64(ChaCha20Poly1305(wrap).encrypt(ZERO_NONCE, file_key, None))
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    if not lines or len(lines[-1]) == 64:
        lines.append(b"")
    return b"-> X25519 " + b64(share) + b"\n" + b"".join(line + b"\n" for line in lines)


def build_header(file_key: bytes, recipients: Sequence[Recipient]) -> bytes:
    """The header wrapping ``file_key`` for every recipient."""
    upto = VERSION_LINE + b"".join(_stanza(file_key, r) for r in recipients) + b"---"
    return upto + b" " + b64(_mac(file_key, upto)) + b"\n"


Stanza = tuple[list[bytes], bytes]  # arguments, body


def parse_header(readline: Callable[[], bytes]) -> tuple[list[Stanza], bytes, bytes]:
    """Read a header line by line: (stanzas, the bytes up to ``---``, the MAC)."""
    seen = bytearray()

    def line() -> bytes:
        text = readline()
        seen.extend(text)
        if not text.endswith(b"\n") or len(seen) > MAX_HEADER:
            raise HeaderError("truncated or oversized header")
        return text[:-1]

    if line() + b"\n" != VERSION_LINE:
        raise HeaderError("not an age v1 file")
    stanzas: list[Stanza] = []
    while True:
        text = line()
        if text.startswith(b"--- "):
            upto = bytes(seen[:len(seen) - len(text) - 1 + 3])
            return stanzas, upto, unb64(text[4:])
        if not text.startswith(b"-> "):
            raise HeaderError("malformed header line")
        args, body = text[3:].split(b" "), bytearray()
        while True:
            chunk = line()
            if len(chunk) > 64:
                raise HeaderError("stanza body line too long")
            body.extend(chunk)
            if len(chunk) < 64:
                break
        stanzas.append((args, unb64(bytes(body))))


def _unwrap(args: list[bytes], body: bytes, identity: Identity) -> bytes | None:
    if len(args) != 2:
        raise HeaderError("malformed X25519 stanza")
    share = unb64(args[1])
    if len(share) != 32 or len(body) != 32:
        raise HeaderError("malformed X25519 stanza")
    try:
        shared = identity.private.exchange(X25519PublicKey.from_public_bytes(share))
    except ValueError:  # an all-zero shared secret: the spec says abort
        raise HeaderError("X25519 stanza with a low-order share") from None
    wrap = hkdf(shared, share + identity.recipient.public, X25519_INFO)
    try:
        return ChaCha20Poly1305(wrap).decrypt(ZERO_NONCE, body, None)
    except InvalidTag:
        return None


def open_header(stanzas: list[Stanza], upto: bytes, mac: bytes,
                identities: Sequence[Identity]) -> bytes:
    """The file key, from the first stanza an identity opens; the MAC checked."""
    for args, body in stanzas:
        if not args or args[0] != b"X25519":
            continue  # another recipient type: not ours to read
        for identity in identities:
            file_key = _unwrap(args, body, identity)
            if file_key is None:
                continue
            if len(file_key) != FILE_KEY_SIZE:
                raise HeaderError("wrapped file key of the wrong size")
            if not constant_time.bytes_eq(_mac(file_key, upto), mac):
                raise HeaderError("header MAC does not match")
            return file_key
    raise NoMatchingIdentity()
