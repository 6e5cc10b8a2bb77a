"""Bookkeeping of one multipart upload in one region, free of I/O.

The consumer tells this object what happened (created, part acknowledged,
part failed, source finished) and asks it what to do next: retry a part after
a delay, give up on the region, or whether the upload may be completed.  The
complete-or-abort decision for the whole run (the quorum) is made above it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from streamer.store.retry import RetryPolicy


class Decision(Enum):
    WAIT = "wait"  # parts outstanding or source still running
    READY = "ready"  # source succeeded and every part is acknowledged: may complete
    ABORT = "abort"  # the region failed or the source failed


@dataclass
class UploadState:
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    upload_id: str | None = None
    etags: dict[int, str] = field(default_factory=dict)
    sizes: dict[int, int] = field(default_factory=dict)
    attempts: dict[int, int] = field(default_factory=dict)
    retries: int = 0
    source_ok: bool | None = None  # None: still running
    failure: str | None = None
    completed: bool = False
    abort_tried: bool = False  # aborted once (or tried): a dead region is not waited on twice

    def created(self, upload_id: str) -> None:
        if self.upload_id is not None:
            raise RuntimeError("upload created twice")
        self.upload_id = upload_id

    def part_queued(self, number: int, size: int) -> None:
        if number in self.sizes:
            raise RuntimeError(f"part {number} queued twice")
        self.sizes[number] = size
        self.attempts[number] = 0

    def part_started(self, number: int) -> None:
        self.attempts[number] += 1

    def part_acked(self, number: int, etag: str) -> None:
        if number not in self.sizes:
            raise RuntimeError(f"part {number} acknowledged but never queued")
        self.etags[number] = etag

    def part_failed(self, number: int, error: str) -> float | None:
        """Seconds to wait before retrying, or None when the region must be dropped."""
        attempt = self.attempts[number]
        if attempt >= self.policy.max_attempts:
            self.fail(f"part {number} failed {attempt} times: {error}")
            return None
        self.retries += 1
        return self.policy.delay(attempt)

    def fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason

    def source_finished(self, ok: bool) -> None:
        self.source_ok = ok

    @property
    def outstanding(self) -> int:
        return len(self.sizes) - len(self.etags)

    @property
    def acked_bytes(self) -> int:
        return sum(self.sizes[n] for n in self.etags)

    def decision(self) -> Decision:
        if self.failure is not None or self.source_ok is False:
            return Decision.ABORT
        if self.source_ok and self.upload_id is not None and self.outstanding == 0:
            return Decision.READY
        return Decision.WAIT

    def completion_parts(self) -> list[dict[str, object]]:
        if self.decision() is not Decision.READY:
            raise RuntimeError("upload is not ready to complete")
        return [{"PartNumber": n, "ETag": self.etags[n]} for n in sorted(self.etags)]
