"""The manifest: the commit marker of a run, written last in each region (pure).

Secrets never go in it: it records what was stored and how, not where from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

FORMAT_VERSION = 1


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

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "stored_size": self.stored_size,
            "sha256": self.sha256,
            "compression": self.compression,
            "compression_level": self.compression_level,
            "part_size": self.part_size,
            "part_count": self.part_count,
            "source_bytes": self.source_bytes,
        }


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


def encode(manifest: Mapping[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def decode(data: bytes) -> dict[str, Any]:
    value = json.loads(data)
    if not isinstance(value, dict) or value.get("format") != FORMAT_VERSION:
        raise ValueError("not a streamer manifest of a known format")
    return value
