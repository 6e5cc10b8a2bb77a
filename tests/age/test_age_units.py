"""The age format, composed from cryptography's primitives (no network, no disk
but the identity file): keys, header, payload chunking, tampering."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from streamer.age.header import HeaderError, NoMatchingIdentity
from streamer.age.keys import (
    bech32_decode,
    generate_identity,
    identity_text,
    load_identities,
    parse_identities,
    parse_recipients,
)
from streamer.age.stream import (
    CHUNK,
    SEALED_CHUNK,
    DecryptingReader,
    EncryptingReader,
    PayloadError,
    seal,
    unseal,
)
from streamer.errors import ConfigError

# The example pair in the age specification (age-encryption.org/v1, "The X25519 recipient type").
SPEC_IDENTITY = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"
SPEC_RECIPIENT = "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"


def test_the_specification_identity_yields_its_recipient() -> None:
    (identity,) = parse_identities(f"# created: today\n{SPEC_IDENTITY}\n", "test")
    assert str(identity.recipient) == SPEC_RECIPIENT
    assert identity_text(identity) == SPEC_IDENTITY
    assert SPEC_IDENTITY not in repr(identity)


def test_bech32_rejects_a_changed_character_and_mixed_case() -> None:
    assert bech32_decode(SPEC_RECIPIENT) is not None
    assert bech32_decode(SPEC_RECIPIENT[:-1] + ("q" if SPEC_RECIPIENT[-1] != "q" else "p")) is None
    assert bech32_decode(SPEC_RECIPIENT[:10] + SPEC_RECIPIENT[10:].upper()) is None


def test_recipients_parse_from_lines_commas_and_comments() -> None:
    other = str(generate_identity().recipient)
    found = parse_recipients(f"# backups\n{SPEC_RECIPIENT}, {other}\n{other}  # again\n", "X")
    assert [str(r) for r in found] == [SPEC_RECIPIENT, other]
    with pytest.raises(ConfigError, match="entry 2"):
        parse_recipients(f"{SPEC_RECIPIENT} age1notakey", "X")
    with pytest.raises(ConfigError, match="no age public key"):
        parse_recipients("# nothing\n", "X")


def test_an_identity_line_that_is_not_a_key_is_named_without_its_content() -> None:
    with pytest.raises(ConfigError, match="line 2") as e:
        parse_identities(f"{SPEC_IDENTITY}\nAGE-SECRET-KEY-1NOTAKEY\n", "F")
    assert "NOTAKEY" not in str(e.value)


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 17])
def test_round_trip_at_every_chunk_boundary(size: int) -> None:
    identity = generate_identity()
    data = os.urandom(size)
    sealed = seal(data, [identity.recipient])
    assert sealed.startswith(b"age-encryption.org/v1\n-> X25519 ")
    chunks = max(1, -(-size // CHUNK))
    assert len(sealed) - sealed.index(b"\n---") == size + 16 * chunks + 49 + 16  # "\n--- MAC\n", nonce
    assert unseal(sealed, [identity]) == data


def test_every_recipient_can_open_and_a_stranger_cannot() -> None:
    a, b, stranger = generate_identity(), generate_identity(), generate_identity()
    sealed = seal(b"hello", [a.recipient, b.recipient])
    assert unseal(sealed, [a]) == unseal(sealed, [b]) == b"hello"
    with pytest.raises(NoMatchingIdentity):
        unseal(sealed, [stranger])


def test_a_tampered_header_or_payload_is_refused() -> None:
    identity = generate_identity()
    sealed = bytearray(seal(os.urandom(3 * CHUNK), [identity.recipient]))
    header_end = sealed.index(b"\n---")
    wrong_mac = bytes(sealed[:header_end + 5]) + (b"A" if sealed[header_end + 5] != 65 else b"B") + \
        bytes(sealed[header_end + 6:])
    with pytest.raises(HeaderError):
        unseal(wrong_mac, [identity])
    flipped = bytearray(sealed)
    flipped[-100] ^= 1
    with pytest.raises(PayloadError, match="chunk 2"):
        unseal(bytes(flipped), [identity])


def test_a_payload_cut_at_a_chunk_boundary_is_refused() -> None:
    identity = generate_identity()
    sealed = seal(os.urandom(2 * CHUNK + 5), [identity.recipient])
    cut = sealed[:len(sealed) - (5 + 16)]  # the final chunk dropped: the one before is not final
    with pytest.raises(PayloadError):
        unseal(cut, [identity])


def test_the_encrypting_reader_fills_small_and_large_buffers_alike() -> None:
    identity = generate_identity()
    data = os.urandom(5 * CHUNK + 3)
    out = bytearray()
    reader = EncryptingReader(io.BytesIO(data), [identity.recipient])
    sizes = [7, SEALED_CHUNK * 2, 1000, SEALED_CHUNK]
    i = 0
    while True:
        buf = bytearray(sizes[i % len(sizes)])
        n = reader.readinto(memoryview(buf))
        if not n:
            break
        out.extend(buf[:n])
        i += 1
    plain = DecryptingReader(io.BytesIO(bytes(out)), [identity])
    assert b"".join(iter(lambda: plain.read(4096), b"")) == data


def test_an_identity_file_open_to_group_or_others_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "key.txt"
    key.write_text(SPEC_IDENTITY + "\n")
    key.chmod(0o640)
    with pytest.raises(ConfigError, match="readable by group or others") as e:
        load_identities(key)
    assert e.value.exit_code == 2 and SPEC_IDENTITY not in str(e.value)
    key.chmod(0o600)
    assert str(load_identities(key)[0].recipient) == SPEC_RECIPIENT
    with pytest.raises(ConfigError, match="cannot be read"):
        load_identities(tmp_path / "missing")
