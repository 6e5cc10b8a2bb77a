"""The manifest: the commit marker of a run, written last in each region (pure).

Secrets never go in it: it records what was stored and how, not where from.
An encrypted run's manifest keeps in the clear only what list, verify and
heal need (keys, sizes, digests of the stored -- encrypted -- bytes, the
recipients' public keys); what reveals the data's content (file and table
names, row counts, excludes, the webroot's path, the warnings) is moved into
``encryption.sealed``, an age file (base64) for the same recipients
(docs/ARCHITECTURE.md, "Encryption").
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streamer.age import SCHEME
from streamer.age.keys import Identity, Recipient
from streamer.age.stream import seal, unseal
from streamer.digests import CRCS, HEX_WIDTH, PART_ALGORITHMS, Hash, PartsHash, composite

FORMAT_VERSION = 1
CONTENT_KEYS = ("webroot", "database", "warnings")  # sealed in an encrypted run's manifest
PART_DIGESTS = PART_ALGORITHMS  # algorithms a manifest's per-part digests may use


@dataclass(frozen=True)
class PartDigests:
    """Each part's size and digest, in part order: a reader checks every range
    as it arrives and can resume elsewhere from the last good part
    (docs/ARCHITECTURE.md, "Restore").  Manifests before these were recorded
    have none; they still restore, checked only end to end."""

    algorithm: str  # "md5" | "sha256" | "crc32c" (STREAMER_CHECKSUM=auto)
    sizes: tuple[int, ...]
    digests: tuple[str, ...]  # hex

    def to_json(self) -> dict[str, Any]:
        return {"algorithm": self.algorithm, "sizes": list(self.sizes),
                "digests": list(self.digests)}

    def composite(self) -> str:
        """The SHA-256 over every part's size and digest (digests.composite)."""
        return composite(self.algorithm, self.sizes, self.digests)

    def spans(self) -> list[tuple[int, int, str]]:
        """(offset, size, hex digest) of every part, in order."""
        out, offset = [], 0
        for size, digest in zip(self.sizes, self.digests, strict=True):
            out.append((offset, size, digest))
            offset += size
        return out


def parse_part_digests(value: Any, stored_size: int) -> PartDigests | None:
    """The per-part digests of a manifest's artifact (None if it has none);
    ValueError if they are malformed or do not add up to the stored size."""
    if value is None:
        return None
    algorithm = str(value["algorithm"])
    if algorithm not in PART_DIGESTS:
        raise ValueError(f"unknown part digest {algorithm!r}")
    sizes = tuple(int(n) for n in value["sizes"])
    digests = tuple(str(d) for d in value["digests"])
    width = HEX_WIDTH[algorithm]
    if len(sizes) != len(digests) or any(n < 0 for n in sizes) or sum(sizes) != stored_size:
        raise ValueError("part sizes do not add up to the stored size")
    if any(len(d) != width or d.strip("0123456789abcdef") for d in digests):
        raise ValueError("bad part digest")
    return PartDigests(algorithm, sizes, digests)


@dataclass(frozen=True)
class ArtifactRecord:
    name: str  # "webroot" | "database"
    key: str
    stored_size: int
    sha256: str
    compression: str
    compression_level: int
    part_size: int  # the largest part
    part_count: int
    source_bytes: int  # bytes of the uncompressed stream
    parts: PartDigests | None = None
    encryption: str = ""  # "age": the stored bytes are an age file of the compressed stream
    # Set for an artifact stored as the one member of a gzip'd tar (the ADT
    # layout's database, docs/ARCHITECTURE.md "A tar member of unknown size"):
    # the member's name; ``head``, the stored size and SHA-256 of the leading
    # gzip member holding its tar header, written last -- ``sha256`` then
    # covers the stored bytes after it.
    member: str | None = None
    head: tuple[int, str] | None = None
    bucket: str | None = None  # another bucket than the manifest's
    # STREAMER_COMPRESSION_LEVEL=auto: the levels its zstd frames used
    # ({"min", "max", "final", "frames"}); compression_level is then the final one.
    compression_auto: Mapping[str, int] | None = None

    def to_json(self) -> dict[str, Any]:
        """With ``sha256`` empty (STREAMER_CHECKSUM=auto), the end-to-end value
        is ``parts_sha256``, the composite of the CRC part digests."""
        if not self.sha256 and (self.parts is None or self.parts.algorithm not in CRCS):
            raise ValueError(f"{self.name}: neither a SHA-256 nor CRC part digests to record")
        out: dict[str, Any] = {
            "key": self.key,
            "stored_size": self.stored_size,
            **({"sha256": self.sha256} if self.sha256 else
               {"parts_sha256": self.parts.composite() if self.parts else ""}),
            "compression": self.compression,
            "compression_level": self.compression_level,
            "part_size": self.part_size,
            "part_count": self.part_count,
            "source_bytes": self.source_bytes,
        }
        if self.parts is not None:
            out["parts"] = self.parts.to_json()
        if self.encryption:
            out["encryption"] = self.encryption
        if self.member is not None:
            out["member"] = self.member
        if self.head is not None:
            out["head"] = {"size": self.head[0], "sha256": self.head[1]}
        if self.bucket is not None:
            out["bucket"] = self.bucket
        if self.compression_auto is not None:
            out["compression_auto"] = dict(self.compression_auto)
        return out


def end_to_end(parts: PartDigests | None, composite: bool) -> Hash:
    """The hash a reader feeds every stored byte to, in order, and compares with
    the manifest's end-to-end value: the stream's SHA-256, or (``composite``:
    an auto-mode manifest's ``parts_sha256``) the composite of the part digests
    taken as the bytes pass (docs/SECURITY.md, "Integrity")."""
    if composite and parts is not None:
        return PartsHash(parts.algorithm, parts.sizes)
    return hashlib.sha256()


def end_to_end_value(artifact: Mapping[str, Any], parts: PartDigests | None) -> tuple[str, bool]:
    """A manifest artifact's end-to-end value and whether it is a composite;
    ValueError if it has none or it disagrees with its part digests."""
    if "sha256" in artifact:
        value, is_composite = str(artifact["sha256"]), False
    elif parts is not None and parts.algorithm in CRCS:
        value, is_composite = str(artifact["parts_sha256"]), True
        if value != parts.composite():
            raise ValueError("parts_sha256 does not match the part digests")
    else:
        raise ValueError("no sha256")
    if len(value) != 64 or value.strip("0123456789abcdef"):
        raise ValueError("bad sha256")
    return value, is_composite


def build_manifest(*, build: str, periodicity: str, stamp: str, started: str, ended: str,
                   host: str, version: str, artifacts: Sequence[ArtifactRecord],
                   webroot: Mapping[str, Any], database: Mapping[str, Any] | None,
                   warnings: Sequence[str]) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "tool": "streamer",
        "streamer_version": version,
        "build_identifier": build,
        "periodicity": periodicity,
        "stamp": stamp,
        "started": started,
        "ended": ended,
        "host": host,
        "artifacts": {a.name: a.to_json() for a in artifacts},
        "webroot": dict(webroot),
        "database": dict(database) if database is not None else None,
        "warnings": list(warnings),
    }


def seal_content(manifest: Mapping[str, Any], recipients: Sequence[Recipient]) -> dict[str, Any]:
    """The manifest with its content section age-encrypted to ``recipients``."""
    content = {k: manifest[k] for k in CONTENT_KEYS}
    out = {k: v for k, v in manifest.items() if k not in CONTENT_KEYS}
    sealed = seal(json.dumps(content, sort_keys=True).encode(), recipients)
    out["encryption"] = {"scheme": SCHEME, "recipients": [str(r) for r in recipients],
                         "sealed": base64.b64encode(sealed).decode()}
    return out


def unseal_content(manifest: Mapping[str, Any], identities: Sequence[Identity]) -> dict[str, Any]:
    """The manifest with its sealed content section opened (raises what
    ``age.stream.unseal`` raises: HeaderError, NoMatchingIdentity, PayloadError)."""
    section = manifest.get("encryption")
    if not section:
        return dict(manifest)
    content = json.loads(unseal(base64.b64decode(section["sealed"]), identities))
    return {**{k: v for k, v in manifest.items() if k != "encryption"}, **content}


def encode(manifest: Mapping[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def decode(data: bytes) -> dict[str, Any]:
    value = json.loads(data)
    if not isinstance(value, dict) or value.get("format") != FORMAT_VERSION:
        raise ValueError("not a streamer manifest of a known format")
    return value
