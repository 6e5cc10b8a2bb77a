"""The memory store's fault injection and the one retry loop (pure logic, no servers)."""

from __future__ import annotations

import pytest

from streamer.errors import StoreFailure
from streamer.store.base import ObjectStore, PartBody
from streamer.store.memory import MemoryStore
from streamer.store.retry import RetryPolicy, retrying

pytestmark = pytest.mark.anyio
NO_WAIT = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0)


def test_memory_store_is_an_object_store() -> None:
    store: ObjectStore = MemoryStore()
    assert store.label == "region 1 (memory)"


async def test_retrying_stops_at_success_at_a_permanent_failure_or_at_the_policy() -> None:
    calls: list[int] = []

    async def flaky(fail_times: int, transient: bool) -> str:
        calls.append(1)
        if len(calls) <= fail_times:
            raise StoreFailure("r", "Op", "boom", transient)
        return "ok"

    assert await retrying(NO_WAIT, lambda: flaky(2, True)) == "ok" and len(calls) == 3
    calls.clear()
    with pytest.raises(StoreFailure):
        await retrying(NO_WAIT, lambda: flaky(3, True))
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(StoreFailure):
        await retrying(NO_WAIT, lambda: flaky(1, False))
    assert len(calls) == 1
    assert NO_WAIT.tries(1).max_attempts == 1
    assert RetryPolicy(base_delay=0.5, max_delay=3.0).delay(4) == 3.0


async def test_fail_the_nth_request_transient_is_retried_permanent_is_raised() -> None:
    store = MemoryStore(policy=NO_WAIT)
    await store.ensure_bucket()
    store.fail("PutObject", nth=1)  # transient 503: retried by the store's policy
    await store.put_object("a", b"1")
    assert store.calls["PutObject"] == 2
    store.fail("PutObject", nth=2, transient=False, status=403)
    await store.put_object("b", b"2")
    with pytest.raises(StoreFailure) as info:
        await store.put_object("c", b"3")
    assert info.value.status == 403 and not info.value.transient
    assert sorted(store.objects) == ["a", "b"]
    # upload_part tries once: its caller owns the part's retries.
    upload = await store.create_multipart("m", "x/y")
    store.fail("UploadPart")
    with pytest.raises(StoreFailure) as info:
        await store.upload_part("m", upload, 1, PartBody(b"x"))
    assert info.value.transient and store.calls["UploadPart"] == 1


async def test_a_per_call_policy_overrides_the_stores() -> None:
    store = MemoryStore(policy=NO_WAIT)
    await store.ensure_bucket()
    for n in (1, 2):
        store.fail("GetObject", nth=n)
    with pytest.raises(StoreFailure):
        await store.get_with_etag("k", policy=NO_WAIT.tries(2))
    assert store.calls["GetObject"] == 2


async def test_hooks_see_every_request_and_may_fail_it() -> None:
    store = MemoryStore()
    await store.ensure_bucket()
    seen: list[str] = []

    async def hook(key: str) -> None:
        seen.append(key)
        if key == "forbidden":
            raise StoreFailure(store.label, "PutObject", "403: AccessDenied", False, 403, "AccessDenied")

    store.hooks["PutObject"] = hook
    await store.put_object("fine", b"")
    with pytest.raises(StoreFailure):
        await store.put_object("forbidden", b"")
    assert seen == ["fine", "forbidden"] and list(store.objects) == ["fine"]


async def test_a_missing_bucket_is_a_404() -> None:
    store = MemoryStore()
    with pytest.raises(StoreFailure) as info:
        await store.put_object("k", b"")
    assert info.value.status == 404
