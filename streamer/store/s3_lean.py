"""Whole small objects read and written with a signed request each and
nothing else: the assets copy's hot path (docs/ARCHITECTURE.md, "The assets
buckets").

A small object's GetObject or PutObject costs aiobotocore about 2.6 ms of
CPU (request serialisation, endpoint rules, user agent, event hooks,
response parsing) and the same request signed and sent here about 0.5 ms;
copying many small objects is bound by exactly that.  What stays the same as
the region's ``S3Store``: its credentials and botocore's own SigV4 signer
(S3's rules for the canonical request), its endpoint with path addressing,
botocore's TLS trust (the region's CA bundle, else ``AWS_CA_BUNDLE``, else
botocore's bundle), its retries and timeouts (``S3Store._call``), and its
failures (``StoreFailure`` with the HTTP status and S3 error code).
Everything else -- listings, HEADs, multipart -- stays on aiobotocore.
"""

from __future__ import annotations

import contextlib
import re
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.httpsession import get_cert_path
from yarl import URL

from streamer.errors import StoreFailure
from streamer.store.base import PartBody
from streamer.store.s3 import S3Store
from streamer.store.s3_client import shared_session, tls_verify
from streamer.store.s3_errors import http_failure

_META = "x-amz-meta-"


def _ssl(store: S3Store) -> ssl.SSLContext | bool:
    """botocore's trust for the region (s3_client.tls_verify): none over plain http."""
    verify = tls_verify(store.region)
    if verify is False:
        return False
    cafile = verify or shared_session().get_config_variable("ca_bundle") or get_cert_path(True)
    return ssl.create_default_context(cafile=cafile if isinstance(cafile, str) else None)


def _proxy(endpoint: str) -> str | None:
    """The proxy botocore would use for the endpoint (HTTP(S)_PROXY, NO_PROXY),
    found once: aiohttp's ``trust_env`` would read the environment (and
    ~/.netrc) again for every request."""
    parts = urlsplit(endpoint)
    if proxy_bypass(parts.hostname or ""):
        return None
    return getproxies().get(parts.scheme)


def _error(store: S3Store, operation: str, status: int, text: str) -> StoreFailure:
    code = re.search(r"<Code>([^<]*)</Code>", text)
    message = re.search(r"<Message>([^<]*)</Message>", text)
    return http_failure(store.label, operation, status, code.group(1) if code else "",
                        message.group(1) if message else "")


@dataclass
class LeanObjects:
    """One region's bucket, whole objects only; make with ``lean_objects``."""

    store: S3Store
    session: aiohttp.ClientSession
    signer: S3SigV4Auth
    proxy: str | None = None

    def _signed(self, method: str, key: str, headers: dict[str, str],
                body: bytes = b"") -> tuple[URL, dict[str, str]]:
        url = f"{self.store.endpoint.rstrip('/')}/{self.store.bucket}/{quote(key, safe='/~')}"
        request = AWSRequest(method=method, url=url, headers=headers, data=body)
        # The client's own configuration: with Content-MD5, an unsigned payload (s3_client.py).
        request.context["client_config"] = self.store.client.meta.config
        self.signer.add_auth(request)
        return URL(url, encoded=True), dict(request.headers.items())

    async def get(self, key: str, if_match: str) -> tuple[PartBody, str, str, dict[str, str]]:
        """A whole object pinned to ``if_match`` (412 if it changed): its bytes,
        ETag, content type and user metadata."""
        url, headers = self._signed("GET", key, {"If-Match": f'"{if_match}"'})
        async with self.session.get(url, headers=headers, proxy=self.proxy) as r:
            data = await r.read()
            if r.status != 200:
                raise _error(self.store, "GetObject", r.status, data.decode(errors="replace"))
            meta = {k[len(_META):]: v for k, v in r.headers.items() if k.lower().startswith(_META)}
            return (PartBody(data), r.headers.get("ETag", "").strip('"'),
                    r.headers.get("Content-Type") or "binary/octet-stream", meta)

    async def put(self, key: str, body: PartBody, content_type: str,
                  metadata: Mapping[str, str]) -> str:
        """One PutObject with Content-MD5 (``body.md5_b64``, which the server
        checks) and user metadata; the new ETag."""
        headers = {"Content-Type": content_type, **{_META + k: v for k, v in metadata.items()}}
        if body.md5_b64:
            headers["Content-MD5"] = body.md5_b64
        url, signed = self._signed("PUT", key, headers, bytes(body))
        async with self.session.put(url, headers=signed, data=bytes(body),
                                    proxy=self.proxy) as r:
            text = (await r.read()).decode(errors="replace")
            if r.status != 200:
                raise _error(self.store, "PutObject", r.status, text)
            return r.headers.get("ETag", "").strip('"')


def ascii_only(metadata: Mapping[str, Any]) -> bool:
    """Whether user metadata can travel as plain header values (else aiobotocore's path)."""
    return all(str(k).isascii() and str(v).isascii() for k, v in metadata.items())


@contextlib.asynccontextmanager
async def lean_objects(store: S3Store, pool: int) -> AsyncIterator[LeanObjects]:
    region = store.region
    connector = aiohttp.TCPConnector(limit=pool, ssl=_ssl(store))
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        credentials = Credentials(str(region.access_key), str(region.secret_key))
        yield LeanObjects(store, session, S3SigV4Auth(credentials, "s3", region.location),
                          _proxy(store.endpoint))
