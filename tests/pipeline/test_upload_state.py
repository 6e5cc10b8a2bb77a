"""Unit tests for the I/O-free multipart bookkeeping."""

from __future__ import annotations

import pytest

from streamer.pipeline.upload_state import Decision, UploadState
from streamer.store.retry import RetryPolicy


def test_ready_only_after_source_ok_and_every_part_acked() -> None:
    s = UploadState()
    assert s.decision() is Decision.WAIT
    s.created("u1")
    for n in (1, 2, 3):
        s.part_queued(n, 10)
    s.part_acked(2, '"e2"')
    s.part_acked(1, '"e1"')
    s.source_finished(True)
    assert s.decision() is Decision.WAIT and s.outstanding == 1
    with pytest.raises(RuntimeError):
        s.completion_parts()
    s.part_acked(3, '"e3"')
    assert s.decision() is Decision.READY
    assert s.completion_parts() == [{"PartNumber": 1, "ETag": '"e1"'},
                                    {"PartNumber": 2, "ETag": '"e2"'},
                                    {"PartNumber": 3, "ETag": '"e3"'}]
    assert s.acked_bytes == 30


def test_source_failure_aborts_even_when_all_parts_acked() -> None:
    s = UploadState()
    s.created("u")
    s.part_queued(1, 5)
    s.part_acked(1, "e")
    s.source_finished(False)
    assert s.decision() is Decision.ABORT


def test_retries_back_off_then_give_up() -> None:
    s = UploadState(policy=RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=1.5))
    s.created("u")
    s.part_queued(7, 5)
    delays = []
    for _ in range(3):
        s.part_started(7)
        delays.append(s.part_failed(7, "boom"))
    assert delays == [0.5, 1.0, None]
    assert s.retries == 2
    assert s.failure is not None and "part 7 failed 3 times" in s.failure
    assert s.decision() is Decision.ABORT


def test_misuse_is_detected() -> None:
    s = UploadState()
    s.created("u")
    with pytest.raises(RuntimeError):
        s.created("again")
    s.part_queued(1, 1)
    with pytest.raises(RuntimeError):
        s.part_queued(1, 1)
    with pytest.raises(RuntimeError):
        s.part_acked(2, "e")
