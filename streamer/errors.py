"""The one errors module: every user-facing failure is a StreamerError.

Each error carries the exit code documented in the README ("Exit codes") and a
one-line message saying what failed, where, and what to do.  Exceptions from
aiobotocore, asyncpg and aiomysql are translated into these at the boundary;
nothing else reaches the CLI, which prints ``str(error)`` on one line.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_LOCKED = 4
EXIT_INTERRUPTED = 130


class StreamerError(Exception):
    """A failure the operator can act on; ``exit_code`` is what the CLI returns."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: str = "") -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)


class ConfigError(StreamerError):
    """Bad flag, environment variable or config file value (exit 2)."""

    exit_code = EXIT_USAGE


class PreflightError(StreamerError):
    """A problem found before any upload started: unreachable DB, too few tables (exit 2)."""

    exit_code = EXIT_USAGE


class SourceError(StreamerError):
    """tar or the database dump failed or was killed (exit 1)."""


class RegionError(StreamerError):
    """One region failed; the run may still meet its quorum."""


class BackupFailed(StreamerError):
    """Too few regions committed: nothing new is committed anywhere (exit 1)."""


class LockHeld(StreamerError):
    """Another host holds the backup lock for this build and periodicity (exit 4)."""

    exit_code = EXIT_LOCKED


class NotFound(StreamerError):
    """No committed backup matches the request."""


class IntegrityError(StreamerError):
    """Stored bytes do not match the manifest's hash."""


class StoreFailure(StreamerError):
    """One object-store request failed, after the retries its policy allows.

    Raised by every ``ObjectStore`` (the S3 store translates aiobotocore's and
    aiohttp's exceptions into it at its boundary, store/s3.py).  ``region`` is
    the region's label, never a key; ``transient`` says whether trying again
    may help; ``status`` and ``code`` are the HTTP status and S3 error code
    when the server answered."""

    def __init__(self, region: str, operation: str, detail: str, transient: bool,
                 status: int = 0, code: str = "") -> None:
        self.region = region
        self.operation = operation
        self.detail = detail
        self.transient = transient
        self.status = status
        self.code = code
        super().__init__(f"{region}: {operation} failed: {detail}")


def first_leaf(error: BaseException) -> BaseException:
    """The first real exception inside (nested) exception groups: a task
    group wraps its children's failures, the caller wants the failure."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


class ListingOrderError(StreamerError):
    """A listing (or an index) is not in the key order being merged (exit 1):
    S3 servers list in byte order, some (SeaweedFS) directory by directory."""

    def __init__(self, where: str, key: str) -> None:
        super().__init__(f"{where} lists {key!r} out of order", "the copy is tried in another order")
        self.where = where
