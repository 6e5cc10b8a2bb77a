"""The S3 store's boundary: every aiobotocore, botocore and aiohttp exception
becomes a ``StoreFailure`` here, transient (worth retrying) or not.

A message names the region and the operation, the S3 error code or the
connection problem, and never a key or a secret.
"""

from __future__ import annotations

import socket
import ssl

from botocore.exceptions import BotoCoreError, ClientError

from streamer.errors import StoreFailure

_TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable",
                    "Throttling", "ThrottlingException", "RequestTimeTooSkewed"}


def http_failure(region: str, operation: str, status: int, code: str, message: str) -> StoreFailure:
    """A server's error answer: transient if trying again may help."""
    transient = status >= 500 or status in (408, 429) or code in _TRANSIENT_CODES
    return StoreFailure(region, operation, f"{code or status}: {message or code}", transient,
                        status, code)


def translate(region: str, operation: str, exc: BaseException) -> StoreFailure:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return http_failure(region, operation, status, str(err.get("Code", "")),
                            str(err.get("Message", "")))
    if isinstance(exc, TimeoutError):
        return StoreFailure(region, operation, "timed out", True)
    plain = _plain_cause(region, operation, exc)
    if plain is not None:
        return plain
    if isinstance(exc, BotoCoreError | OSError):
        # Connection refused, DNS, read timeouts: the message names the endpoint, never a key.
        return StoreFailure(region, operation, type(exc).__name__ + ": " + str(exc), True)
    text = f"{type(exc).__name__}: {exc}"
    return StoreFailure(region, operation, text, True)


def _plain_cause(region: str, operation: str, exc: BaseException) -> StoreFailure | None:
    """An untrusted certificate or a host name that does not resolve, said in
    plain words (docs/RELIABILITY.md); None for anything else.  Neither is
    retried: trying again cannot help."""
    seen: BaseException | None = exc
    for _ in range(8):  # botocore -> aiohttp -> ssl/socket
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError) and hasattr(seen, "verify_message"):
            return StoreFailure(region, operation,
                                f"TLS certificate not trusted ({seen.verify_message}); set "
                                "STREAMER_CA_BUNDLE (this region's, or |-separated per region) "
                                "or AWS_CA_BUNDLE to a CA bundle that trusts it", False)
        if isinstance(seen, socket.gaierror) and seen.errno == socket.EAI_NONAME:
            return StoreFailure(region, operation, f"host name does not resolve ({seen.strerror})", False)
        seen = seen.__cause__ or seen.__context__
    return None
