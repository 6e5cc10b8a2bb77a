"""Which checksums a server verifies: ``probe_checksums`` measures it.

S3-compatible servers differ: some verify every ``x-amz-checksum-*`` header,
some ignore them all; ``Content-MD5`` is the oldest and most widely verified.
The probe sends a tiny PutObject and UploadPart first with each algorithm's
correct value, then with a deliberately wrong one, and records per operation
and algorithm whether the server verified it (right accepted, wrong rejected
with 400), ignored it (both accepted) or refused the header (right rejected).
A caller chooses the cheapest verified checksum from ``Capabilities``.

The CRC-32C and CRC-64/NVME functions are table-driven pure Python: fine for
the probe's few bytes, not meant for parts.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import uuid
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import anyio

from streamer.errors import StoreFailure
from streamer.store.base import CHECKSUM_ALGORITHMS, ObjectStore, PartBody


def _table(poly: int) -> list[int]:
    out = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        out.append(c)
    return out


_CRC32C = _table(0x82F63B78)
_CRC64NVME = _table(0x9A6C9329AC4BC9B5)


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def crc64nvme(data: bytes) -> int:
    mask = 0xFFFFFFFFFFFFFFFF
    c = mask
    for b in data:
        c = _CRC64NVME[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ mask


DIGESTS: dict[str, Callable[[bytes], bytes]] = {
    "md5": lambda d: hashlib.md5(d).digest(),
    "crc32": lambda d: zlib.crc32(d).to_bytes(4, "big"),
    "crc32c": lambda d: crc32c(d).to_bytes(4, "big"),
    "crc64nvme": lambda d: crc64nvme(d).to_bytes(8, "big"),
    "sha1": lambda d: hashlib.sha1(d).digest(),
    "sha256": lambda d: hashlib.sha256(d).digest(),
}


def checksum(algorithm: str, data: bytes) -> str:
    """``data``'s digest as the algorithm's S3 header carries it (base64)."""
    return base64.b64encode(DIGESTS[algorithm](data)).decode("ascii")


def wrong_checksum(algorithm: str, data: bytes) -> str:
    """A well-formed value of the right length that is not ``data``'s digest."""
    digest = bytearray(DIGESTS[algorithm](data))
    digest[0] ^= 0xFF
    return base64.b64encode(bytes(digest)).decode("ascii")


class Verdict(enum.Enum):
    VERIFIED = "verified"  # right value accepted, wrong value rejected
    IGNORED = "ignored"  # both accepted: the header proves nothing
    REFUSED = "refused"  # even the right value rejected: not supported


@dataclass(frozen=True)
class Capabilities:
    """Per (operation, algorithm): the server's verdict.  Operations:
    ``PutObject`` and ``UploadPart``."""

    verdicts: Mapping[tuple[str, str], Verdict]

    def verified(self, operation: str = "UploadPart") -> frozenset[str]:
        return frozenset(a for (op, a), v in self.verdicts.items()
                         if op == operation and v is Verdict.VERIFIED)

    def table(self) -> dict[str, dict[str, str]]:
        """{algorithm: {operation: verdict}}, for reports and tests."""
        out: dict[str, dict[str, str]] = {}
        for (op, algorithm), verdict in sorted(self.verdicts.items()):
            out.setdefault(algorithm, {})[op] = verdict.value
        return out


PROBE_BODY = b"streamer integrity probe\n" * 4


Send = Callable[[Mapping[str, str]], Awaitable[None]]


async def _accepted(send: Send, checksums: Mapping[str, str]) -> bool:
    try:
        await send(checksums)
    except StoreFailure as f:
        if f.transient or f.status != 400:
            raise
        return False
    return True


async def probe_checksums(store: ObjectStore, prefix: str = "streamer-probe/",
                          operations: Sequence[str] = ("PutObject", "UploadPart"),
                          algorithms: Sequence[str] = CHECKSUM_ALGORITHMS) -> Capabilities:
    """Measure which checksum headers ``store`` verifies (it writes and then
    removes one small object and one unfinished upload under ``prefix``);
    ``operations`` and ``algorithms`` narrow it (store/negotiate.py probes
    only UploadPart, so no object is ever written)."""
    key = f"{prefix}{uuid.uuid4().hex}"
    upload_id = await store.create_multipart(key, "application/octet-stream")
    verdicts: dict[tuple[str, str], Verdict] = {}

    async def put(checksums: Mapping[str, str]) -> None:
        await store.put_object(key, PROBE_BODY, "application/octet-stream",
                               policy=store.policy.tries(1), checksums=checksums)

    async def part(checksums: Mapping[str, str]) -> None:
        await store.upload_part(key, upload_id, 1, PartBody(PROBE_BODY), checksums)

    try:
        sends: tuple[tuple[str, Send], ...] = (("PutObject", put), ("UploadPart", part))
        for operation, send in sends:
            if operation not in operations:
                continue
            for algorithm in algorithms:
                right = await _accepted(send, {algorithm: checksum(algorithm, PROBE_BODY)})
                wrong = await _accepted(send, {algorithm: wrong_checksum(algorithm, PROBE_BODY)})
                verdicts[operation, algorithm] = (Verdict.REFUSED if not right else
                                                  Verdict.IGNORED if wrong else Verdict.VERIFIED)
    finally:  # also when cancelled (SIGTERM mid-probe): nothing is left behind
        with anyio.CancelScope(shield=True), anyio.move_on_after(2 * store.request_timeout):
            await store.abort_multipart(key, upload_id)
            if "PutObject" in operations:
                await store.delete_object(key)
    return Capabilities(verdicts)
