"""How long one S3 request may take, by what it carries (I/O-free).

A black hole must be noticed quickly, so a small control request (create or
abort an upload, head, list, a manifest or lock object) gets a short timeout
of its own.  A request carrying data (a part, a ranged GET) gets that plus the
time its bytes need at the slowest rate still worth waiting for, so a big part
on a slow link is not cut off and retried for ever, while a small one on a hung
connection is retried soon.  Completing a multipart upload is short for the
client but the server assembles the object there (AWS documents that this can
take minutes for a large one): it gets the control timeout plus a little per
part.  A server-side copy (the ADT layout keeps the previous copies) moves up
to 5 GiB inside the server.  Retrying a complete cut off too early could meet
``NoSuchUpload`` from a server that did finish it, so it is given room.

Every phase keeps its own bound as well: the stall timeout per region
(pipeline/commit.py, pipeline/run.py) and the lock's own limits.  See
docs/RELIABILITY.md.
"""

from __future__ import annotations

from dataclasses import dataclass

COMPLETE_SECONDS_PER_PART = 0.1  # the server's assembly time per part, at worst
COPY_SECONDS = 300.0  # a server-side copy of up to 5 GiB
LARGEST_PART = 5 * 1024**3  # S3's limit for one part


@dataclass(frozen=True)
class RequestTimeouts:
    """``control``: seconds for a small request (STREAMER_REQUEST_TIMEOUT);
    ``min_rate``: bytes per second a data request must at least average
    (STREAMER_MIN_PART_RATE)."""

    control: float = 30.0
    min_rate: float = 128 * 1024

    def data(self, size: int) -> float:
        """A request carrying ``size`` bytes (a part, a ranged GET)."""
        return self.control + max(0, size) / self.min_rate

    def complete(self, parts: int) -> float:
        """CompleteMultipartUpload of ``parts`` parts."""
        return self.control + max(0, parts) * COMPLETE_SECONDS_PER_PART

    def copy(self) -> float:
        """A server-side CopyObject."""
        return self.control + COPY_SECONDS

    def socket_read(self) -> float:
        """The HTTP client's own read timeout: never shorter than any request's
        above, so that only they decide."""
        return max(self.data(LARGEST_PART), self.complete(10_000), self.copy())
