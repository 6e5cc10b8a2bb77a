"""The part hooks of ``S3Store``: a part is signed with its precomputed SHA-256
and sent without a copy (through STREAMER_BWLIMIT's meter, if set), through one
client's own event system; and the client configuration they rely on.

botocore emits events per client (``client.meta.events``); registering there,
rather than replacing botocore's ``s3v4`` signer in ``AUTH_TYPE_MAPS`` or
adding a type to aiohttp's global payload registry, leaves every other
botocore client in the process signing and sending exactly as botocore would.
"""

from __future__ import annotations

import contextlib
from typing import Any

import aiohttp.payload
import botocore
import botocore.auth
from botocore.credentials import ReadOnlyCredentials

from streamer.settings.config import Region
from streamer.store.base import PartBody
from streamer.store.throttle import Meter


class PrecomputedPayloadAuth(botocore.auth.S3SigV4Auth):  # type: ignore[misc]
    """S3 SigV4 that trusts a body's precomputed ``sha256_hex`` (see store/base.PartBody)."""

    def payload(self, request: Any) -> str:
        digest = getattr(request.body, "sha256_hex", "")
        if digest:
            return str(digest)
        return str(super().payload(request))


class PartPayload(aiohttp.payload.Payload):
    """Sends a PartBody through a memoryview: aiohttp's BytesPayload slices a
    bytearray body (a full copy per request), which would put one extra part
    per request in flight outside the memory budget.  With a ``meter``
    (STREAMER_BWLIMIT) the body leaves a chunk at a time, each paid for from
    the run's shared bucket first (store/throttle.py)."""

    def __init__(self, value: PartBody, *args: Any, meter: Meter | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("content_type", "application/octet-stream")
        super().__init__(value, *args, **kwargs)
        self._size = len(value)
        self._meter = meter

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytes(self._value).decode(encoding, errors)

    async def as_bytes(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return bytes(self._value)

    async def write(self, writer: Any) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        # An empty write first flushes the buffered headers on their own:
        # otherwise aiohttp joins headers and body into one new bytes object
        # (on Python < 3.12.9), a copy of the whole part per request.
        await writer.write(b"")
        view = memoryview(self._value)
        body = view if content_length is None else view[:content_length]
        if self._meter is None:
            await writer.write(body)
        else:
            await self._meter.send(body, writer.write)


def install_part_hooks(events: Any, region: Region, sign_parts: bool,
                       meter: Meter | None = None) -> None:
    """Register the part hooks on one client's event system.

    * ``before-send.s3.UploadPart``: a PartBody leaves as a ``PartPayload``
      (aiohttp sends a ready Payload as it is, no registry consulted),
      through this region's ``meter`` of the bandwidth limit if there is one.
    * with ``sign_parts`` (the sha256 mode): ``choose-signer.s3.UploadPart``
      tells botocore not to sign the part, and ``before-sign.s3.UploadPart``
      signs it with ``PrecomputedPayloadAuth`` and this region's credentials,
      as botocore's s3v4 signer would, except that the payload hash is the
      part's precomputed one.  Bodies without a digest are hashed as usual."""
    credentials = ReadOnlyCredentials(str(region.access_key), str(region.secret_key), None)

    def as_payload(request: Any, **_: Any) -> None:
        if isinstance(request.body, PartBody):
            request.body = PartPayload(request.body, meter=meter)

    def no_botocore_signature(**_: Any) -> Any:
        return botocore.UNSIGNED

    def sign(request: Any, signing_name: str, region_name: str, **_: Any) -> None:
        signing = request.context.get("signing", {})
        auth = PrecomputedPayloadAuth(credentials, signing.get("signing_name", signing_name),
                                      signing.get("region", region_name))
        auth.add_auth(request)

    events.register("before-send.s3.UploadPart", as_payload)
    if sign_parts:
        events.register("choose-signer.s3.UploadPart", no_botocore_signature)
        events.register("before-sign.s3.UploadPart", sign)


def abort_connections(client: Any) -> int:
    """Abort (not close) every connection of one client, in use or idle; returns how many.

    A request cancelled mid-body is closed gracefully by aiohttp, and the
    transport keeps the unsent rest of the part -- a view of the part's own
    buffer -- until the peer reads it: from a region that is slow or a black
    hole, that is long or never, and the buffer's budget with it.  Aborting
    drops the unsent bytes at once, so a dropped region gives its buffers back
    (docs/RELIABILITY.md).  aiobotocore offers no public way to reach its
    connections: a library that changes them makes this a no-op, not an error."""
    sessions = getattr(getattr(getattr(client, "_endpoint", None), "http_session", None),
                       "_sessions", None)
    aborted = 0
    for session in list((sessions or {}).values()):
        connector = getattr(session, "connector", None)
        protocols = list(getattr(connector, "_acquired", ()))
        for idle in list(getattr(connector, "_conns", {}).values()):
            protocols.extend(proto for proto, _ in idle)
        for proto in protocols:
            with contextlib.suppress(Exception):
                proto.abort()
                aborted += 1
    return aborted

