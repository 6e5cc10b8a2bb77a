"""What every object store speaks: the values it returns (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: key, size in bytes, last modification (UTC, if known)."""

    key: str
    size: int
    modified: datetime | None = None


@dataclass(frozen=True)
class UploadInfo:
    """One unfinished multipart upload and when it was initiated (UTC, if known)."""

    key: str
    upload_id: str
    initiated: datetime | None = None


class PartBody(bytearray):
    """A part's bytes.  botocore passes a bytearray through untouched, so the
    signer (store/s3.py) can read the precomputed ``sha256_hex`` instead of
    hashing the body again for every region."""

    sha256_hex: str = ""
    md5_b64: str = ""
