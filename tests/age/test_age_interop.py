"""The stock age tool (Debian package ``age``) and streamer read each other's files."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

from streamer.age.keys import load_identities, parse_recipients
from streamer.age.stream import CHUNK, DecryptingReader, seal


def keygen(tmp_path: Path) -> tuple[Path, str]:
    key = tmp_path / "key.txt"
    subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    key.chmod(0o600)
    public = subprocess.run(["age-keygen", "-y", str(key)], check=True, capture_output=True,
                            text=True).stdout.strip()
    return key, public


def test_age_decrypts_what_streamer_encrypts(tmp_path: Path) -> None:
    key, public = keygen(tmp_path)
    for size in (0, 1, CHUNK, 3 * CHUNK + 5):
        data = os.urandom(size)
        sealed = seal(data, parse_recipients(public, "test"))
        out = subprocess.run(["age", "-d", "-i", str(key)], input=sealed, capture_output=True,
                             check=True)
        assert out.stdout == data


def test_streamer_decrypts_what_age_encrypts(tmp_path: Path) -> None:
    key, public = keygen(tmp_path)
    identities = load_identities(key)
    assert str(identities[0].recipient) == public
    for size in (0, CHUNK, 2 * CHUNK + 1):
        data = os.urandom(size)
        sealed = subprocess.run(["age", "-r", public], input=data, capture_output=True,
                                check=True).stdout
        reader = DecryptingReader(io.BytesIO(sealed), identities)
        blocks = []
        while block := reader.read(10_000):
            blocks.append(block)
        assert b"".join(blocks) == data
