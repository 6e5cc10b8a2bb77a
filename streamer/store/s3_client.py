"""How an ``S3Store``'s botocore client is made and what its calls carry:
the client configuration, the one shared session, the TLS trust of each
region (``STREAMER_CA_BUNDLE``, else ``AWS_CA_BUNDLE``, else the system's
CAs: README, docs/SECURITY.md), and the request parameters for digests and
Object Lock retention (see store/s3.py).

Checksums: botocore >= 1.36 adds CRC32 checksum headers (and aws-chunked
trailers) to uploads by default, which several S3-compatible providers reject.
streamer asks botocore for checksums only "when_required" and proves each
part's integrity itself (``Config.checksum``), with a digest the chunk
producer computed once and every region and retry reuses:

* ``md5`` (default): ``Content-MD5`` per part, which AWS and SeaweedFS
  verify (moto does not: tests/store/test_conformance.py records what each
  server verifies), and an unsigned payload (no second hash for SigV4).
* ``sha256``: the part's SHA-256 is the signed ``x-amz-content-sha256``
  payload hash; the store signs its parts with ``PrecomputedPayloadAuth``,
  which uses it instead of hashing the body again.  AWS verifies it;
  SeaweedFS does not.
* ``crc32``: botocore's own flexible checksums (AWS S3 only, per region).
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.loaders import Loader
from botocore.utils import parse_timestamp

from streamer.errors import ConfigError
from streamer.settings.config import ChecksumMode, Region
from streamer.store.base import Checksums, Retention
from streamer.store.timeouts import RequestTimeouts

# botocore parameter of each digest a caller may attach (see store/base.py).
_CHECKSUM_PARAMS = {"md5": "ContentMD5", "crc32": "ChecksumCRC32", "crc32c": "ChecksumCRC32C",
                    "crc64nvme": "ChecksumCRC64NVME", "sha1": "ChecksumSHA1",
                    "sha256": "ChecksumSHA256"}


def with_checksums(kwargs: dict[str, Any], checksums: Checksums | None) -> dict[str, Any]:
    for name, value in (checksums or {}).items():
        kwargs[_CHECKSUM_PARAMS[name]] = value
    return kwargs


def md5_b64(data: bytes) -> str:
    """The Content-MD5 of a small body (S3 requires a digest with Object Lock headers)."""
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def with_retention(kwargs: dict[str, Any], retention: Retention | None) -> dict[str, Any]:
    """The Object Lock headers of a PutObject or CreateMultipartUpload."""
    if retention is not None:
        kwargs["ObjectLockMode"] = retention.mode
        kwargs["ObjectLockRetainUntilDate"] = retention.until
    return kwargs


def tls_verify(region: Region) -> bool | str | None:
    """botocore's ``verify`` for a region: nothing to check over plain http;
    the region's own CA bundle if it has one (a file that is not there is a
    configuration error, exit 2); else None (AWS_CA_BUNDLE or the system's)."""
    if region.endpoint.startswith("http://"):
        return False
    if not region.ca_bundle:
        return None
    if not Path(region.ca_bundle).is_file():
        raise ConfigError(f"STREAMER_CA_BUNDLE for region {region.index}: {region.ca_bundle} "
                          "is not a readable file", "give a PEM file of the CAs that sign "
                          "the region's certificate")
    return region.ca_bundle


def client_config(checksum: ChecksumMode, timeouts: RequestTimeouts, pool: int) -> AioConfig:
    return AioConfig(
        signature_version="s3v4",
        connect_timeout=min(10.0, timeouts.control),
        read_timeout=timeouts.socket_read(),  # each request's own timeout decides (_once)
        # One attempt per call (streamer retries: store/retry.py); "max_attempts" counts retries.
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=pool,
        request_checksum_calculation="when_supported" if checksum == "crc32" else "when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path",
            **({"payload_signing_enabled": False} if checksum == "md5" else {})},
        tcp_keepalive=True,
    )


_SESSION: list[Any] = []


def fast_timestamp(value: Any) -> datetime:
    """botocore's timestamp parser for what S3 sends (ISO 8601 in listings,
    RFC 1123 in headers) without dateutil's general parser, a tenth of the
    CPU of a small object's request (docs/ARCHITECTURE.md, "The assets
    buckets"); anything else goes to botocore's own."""
    if isinstance(value, str):
        try:
            return (email.utils.parsedate_to_datetime(value) if value[-3:] == "GMT"
                    else datetime.fromisoformat(value))
        except (TypeError, ValueError, IndexError):
            pass
    return parse_timestamp(value)  # type: ignore[no-any-return]


class S3Loader(Loader):  # type: ignore[misc]
    """botocore's data loader for the one service streamer's clients use.

    Before it loads a service model, botocore's loader lists every service it
    knows, to say whether the one asked for exists: a scan of its ~400 data
    directories, once for the model and once for the endpoint rules (28 ms of
    a backup's start-up; docs/ARCHITECTURE.md, "Start-up and tear-down").
    Everything else (search paths, ``AWS_DATA_PATH``, caching) is botocore's."""

    def list_available_services(self, type_name: str) -> list[str]:
        return ["s3"]


def shared_session() -> Any:
    """One botocore session for every region: the S3 service model and the
    endpoint data (megabytes of JSON) are then loaded once, not once per
    region, by a loader that knows only S3 (``S3Loader``)."""
    if not _SESSION:
        session = get_session()
        paths = session.get_config_variable("data_path")
        session.register_component("data_loader", S3Loader(
            extra_search_paths=[os.path.expanduser(os.path.expandvars(p))
                                for p in paths.split(os.pathsep)] if paths else None))
        session.get_component("response_parser_factory").set_parser_defaults(
            timestamp_parser=fast_timestamp)
        _SESSION.append(session)
    return _SESSION[0]
