"""The S3 store's boundary: every aiobotocore, botocore and aiohttp exception
becomes a ``StoreFailure`` here, transient (worth retrying) or not.

A message names the region and the operation, the S3 error code or the
connection problem, and never a key or a secret.
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from streamer.errors import StoreFailure

_TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable",
                    "Throttling", "ThrottlingException", "RequestTimeTooSkewed"}


def translate(region: str, operation: str, exc: BaseException) -> StoreFailure:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        code = str(err.get("Code", ""))
        message = str(err.get("Message", "")) or code
        transient = status >= 500 or status in (408, 429) or code in _TRANSIENT_CODES
        return StoreFailure(region, operation, f"{code or status}: {message}", transient, status, code)
    if isinstance(exc, TimeoutError):
        return StoreFailure(region, operation, "timed out", True)
    if isinstance(exc, BotoCoreError | OSError):
        # Connection refused, DNS, read timeouts: the message names the endpoint, never a key.
        return StoreFailure(region, operation, type(exc).__name__ + ": " + str(exc), True)
    text = f"{type(exc).__name__}: {exc}"
    return StoreFailure(region, operation, text, True)
