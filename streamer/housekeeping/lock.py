"""The backup lock: one host per build and periodicity at a time -- to save work.

ADT runs the backup cron job on every webserver, so several hosts start the same
backup at the same minute.  The lock is an object (``Layout.lock_key``) holding
a JSON ``Holder`` and lives in **every** region.  It exists to save duplicate
work, never to stop a backup the quorum allows: two runs can never corrupt
each other (each has its own stamp), so availability comes first.

* A run holds the lock when it holds the object in a majority of the
  configured regions (n // 2 + 1), or in every region that answered: regions
  that are down or failing do not count against it (with three regions and
  two down, the survivor is backed up to).
* A run that sees another run's live copy in any region it can reach, and
  has no majority itself, skips (exit 4).  Two runs that took a majority each
  cannot exist; runs that split the regions give their copies back and retry.
* Under a partition where two hosts share no reachable region, both may back
  up: at worst a duplicate run, never a corrupt or lost one.

Per region the object is created with ``If-None-Match: *`` (412 if it exists).
An existing lock is taken over only when it is *stale* -- its lease expired, or
its holder ran on this very machine (same host name and boot id) and that
process is gone -- by a conditional overwrite with ``If-Match`` on the ETag
that was read, so of two takers exactly one wins.  The lease (default 15 min)
is renewed every lease/3 with ``If-Match``; a run whose copies were taken
over by another run in every region it held has lost the lock and cancels
itself (its uploads are aborted, nothing is committed); regions that merely
stop answering take nothing away.  On exit the copies are
deleted with ``If-Match``, so a lock taken over meanwhile is left alone.
Keys without the delete right (``STREAMER_PRUNE=off``, docs/SECURITY.md)
release it instead by overwriting their copy, with ``If-Match``, with a
holder whose lease ends where it began (``Holder.released``): the next run
takes it over at once, and does not report it as a takeover.  If
the runs split the regions so that neither has a majority, both give their
copies back and retry after a random delay.

Staleness compares the holder's ``expires`` (written with the holder's clock)
with ours: the lease must be much longer than the clock skew between hosts.

``judge``, ``tally``, ``still_held`` and ``Holder`` are pure (lease.py);
``BackupLock`` does the I/O.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import anyio

from streamer.errors import BackupFailed, LockHeld, StoreFailure
from streamer.housekeeping.lease import (
    Claim,
    ClaimState,
    Holder,
    LocalHost,
    Outcome,
    Verdict,
    judge,
    local_host,
    still_held,
    tally,
    utcnow,
)
from streamer.store.base import ObjectStore
from streamer.store.retry import RetryPolicy

# Per request: the lock must not wait long on a dead region.
LOCK_POLICY = RetryPolicy(max_attempts=2, base_delay=0.25, max_delay=4.0)
CLAIM_TIMEOUT = 30.0  # seconds for one region's whole claim
SPLIT_RETRIES = 3  # rounds when neither contender reached a majority


@dataclass(eq=False)
class BackupLock:
    """Our lock on one build and periodicity, across every region."""

    clients: list[ObjectStore]
    key: str
    what: str  # "site-1/hourly", for messages
    lease: float
    holder: Holder
    here: LocalHost = field(default_factory=local_host)
    etags: dict[int, str] = field(default_factory=dict)  # region index -> our copy's ETag
    confirmed_until: dict[int, datetime] = field(default_factory=dict)
    taken_over: list[Holder] = field(default_factory=list)
    unanswered: dict[int, str] = field(default_factory=dict)  # region index -> why, when acquired
    lost: str | None = None
    settled: anyio.Event = field(default_factory=anyio.Event)  # acquire() has its answer

    async def acquire(self) -> None:
        """Hold a majority of the regions' lock objects, or raise LockHeld / BackupFailed."""
        try:
            await self._acquire()
        finally:
            self.settled.set()

    @property
    def by_index(self) -> dict[int, ObjectStore]:
        return {c.index: c for c in self.clients}

    # ------------------------------------------------------------ acquire

    async def _acquire(self) -> None:
        for round_ in range(SPLIT_RETRIES + 1):
            self.holder = replace(self.holder, expires=utcnow() + timedelta(seconds=self.lease))
            claims = await self._claim_all()
            outcome = tally(claims, len(self.clients))
            if outcome is Outcome.ACQUIRED:
                for c in claims:
                    if c.state is ClaimState.UNREACHABLE:
                        self.unanswered[c.index] = c.error or "no answer"
                    if c.state is ClaimState.ACQUIRED:
                        self.etags[c.index] = c.etag
                        self.confirmed_until[c.index] = self.holder.expires
                        if c.holder is not None and not c.holder.released:
                            self.taken_over.append(c.holder)
                return
            mine = [c for c in claims if c.state is ClaimState.ACQUIRED]
            await self._give_back(mine)
            if outcome is Outcome.SPLIT and round_ < SPLIT_RETRIES:
                await anyio.sleep(random.uniform(0.2, 1.5))
                continue
            others = [c.holder for c in claims if c.state is ClaimState.HELD and c.holder]
            if others:
                holder = max(others, key=lambda h: h.expires)
                who = ("another streamer process on this host" if holder.host == self.here.host
                       else "another host")
                raise LockHeld(f"{who} holds the backup lock for {self.what}: {holder.describe()}",
                               "this run is skipped; a lock whose lease expired is taken over")
            if outcome is Outcome.HELD:
                raise LockHeld(f"another run holds the backup lock for {self.what}",
                               "this run is skipped")
            errors = "; ".join(c.error for c in claims if c.error)
            raise BackupFailed(
                f"cannot take the backup lock for {self.what}: none of the "
                f"{len(self.clients)} regions answered: {errors}",
                "nothing was uploaded; check the regions")
        raise AssertionError("unreachable")

    async def _claim_all(self) -> list[Claim]:
        claims: list[Claim] = []

        async def one(client: ObjectStore) -> None:
            claim = Claim(client.index, ClaimState.UNREACHABLE, error=f"{client.label}: timed out")
            with anyio.move_on_after(CLAIM_TIMEOUT):
                claim = await self._claim(client)
            claims.append(claim)

        async with anyio.create_task_group() as tg:
            for client in self.clients:
                tg.start_soon(one, client)
        return sorted(claims, key=lambda c: c.index)

    async def _claim(self, client: ObjectStore) -> Claim:
        index = client.index
        body = self.holder.encode()
        seen: Holder | None = None
        try:
            for _ in range(3):  # create, or take over; again if someone raced us
                try:
                    etag = await client.put_object(self.key, body, if_none_match=True,
                                                   policy=LOCK_POLICY)
                    return Claim(index, ClaimState.ACQUIRED, etag)
                except StoreFailure as f:
                    if f.status != 412:
                        raise
                found = await client.get_with_etag(self.key, policy=LOCK_POLICY)
                if found is None:
                    continue  # released meanwhile: create it
                data, etag = found
                seen = Holder.decode(data)
                if seen is not None and seen.token == self.holder.token:
                    return Claim(index, ClaimState.ACQUIRED, etag)  # our retried create landed
                if judge(seen, utcnow(), self.here) is Verdict.HELD:
                    return Claim(index, ClaimState.HELD, holder=seen)
                try:
                    etag = await client.put_object(self.key, body, if_match=etag,
                                                   policy=LOCK_POLICY)
                    return Claim(index, ClaimState.ACQUIRED, etag, holder=seen)
                except StoreFailure as f:
                    if f.status not in (404, 412):
                        raise
                    # changed under us (another taker, or our own retried write): look again
                    found = await client.get_with_etag(self.key, policy=LOCK_POLICY)
                    if found is not None and (h := Holder.decode(found[0])) is not None \
                            and h.token == self.holder.token:
                        return Claim(index, ClaimState.ACQUIRED, found[1], holder=seen)
        except StoreFailure as f:
            return Claim(index, ClaimState.UNREACHABLE, error=str(f))
        return Claim(index, ClaimState.HELD, holder=seen)

    async def _give_back(self, claims: Sequence[Claim]) -> None:
        by_index = self.by_index

        expired = replace(self.holder, expires=self.holder.acquired).encode()  # Holder.released

        async def one(claim: Claim) -> None:
            client = by_index[claim.index]
            with anyio.move_on_after(CLAIM_TIMEOUT), contextlib.suppress(StoreFailure):
                try:
                    await client.delete_object(self.key, if_match=claim.etag, policy=LOCK_POLICY)
                except StoreFailure as f:
                    if f.status != 403:
                        raise
                    await client.put_object(self.key, expired, if_match=claim.etag,
                                            policy=LOCK_POLICY)

        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for claim in claims:
                    tg.start_soon(one, claim)

    # ------------------------------------------------------------ renew

    async def renew(self) -> None:
        """Extend the lease in every region we hold; set ``lost`` if every copy
        was taken over by another run (regions that do not answer keep theirs)."""
        now = utcnow()
        self.holder = replace(self.holder, expires=now + timedelta(seconds=self.lease))
        body = self.holder.encode()
        by_index = self.by_index
        taken: list[int] = []

        async def one(index: int, etag: str) -> None:
            client = by_index[index]
            with anyio.move_on_after(CLAIM_TIMEOUT):
                try:
                    self.etags[index] = await client.put_object(self.key, body, if_match=etag,
                                                                policy=LOCK_POLICY)
                    self.confirmed_until[index] = self.holder.expires
                except StoreFailure as f:
                    if f.status not in (404, 412):
                        return  # unknown: the old expiry still counts until it passes
                    found = await client.get_with_etag(self.key, policy=LOCK_POLICY)
                    mine = found is not None and (h := Holder.decode(found[0])) is not None \
                        and h.token == self.holder.token
                    if found is not None and mine:
                        self.etags[index] = found[1]
                        self.confirmed_until[index] = self.holder.expires
                    elif found is not None:
                        self.etags.pop(index, None)
                        self.confirmed_until.pop(index, None)  # taken over: gone for good
                        taken.append(index)

        with contextlib.suppress(StoreFailure):
            async with anyio.create_task_group() as tg:
                for index, etag in list(self.etags.items()):
                    tg.start_soon(one, index, etag)
        if not still_held(len(self.etags), len(taken)):
            self.lost = (f"lost the backup lock for {self.what}: another run took it over in "
                         f"every region")

    async def keep_renewed(self, on_lost: Callable[[], Any]) -> None:
        while True:
            await anyio.sleep(self.lease / 3)
            await self.renew()
            if self.lost:
                on_lost()
                return

    # ------------------------------------------------------------ release

    async def release(self) -> None:
        """Delete our copies (only where they are still ours), best effort."""
        claims = [Claim(i, ClaimState.ACQUIRED, etag) for i, etag in self.etags.items()]
        await self._give_back(claims)
        self.etags.clear()
        self.confirmed_until.clear()


@contextlib.asynccontextmanager
async def hold_lock(lock: BackupLock,
                    beside: Callable[[], Coroutine[Any, Any, None]] | None = None
                    ) -> AsyncIterator[BackupLock]:
    """Acquire, keep renewed while the body runs, release.  If the lock is lost
    the body is cancelled and BackupFailed is raised here.  ``beside`` runs
    while the lock is claimed and is awaited before the body (the backup's
    cleanup listing: docs/ARCHITECTURE.md, "Start-up and tear-down"); it
    records its own failures and must not raise."""
    error: Exception | None = None
    try:
        await _acquire_beside(lock, beside)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lock.keep_renewed, tg.cancel_scope.cancel)
            try:
                yield lock
            except Exception as e:  # re-raised below, not wrapped in an ExceptionGroup
                error = e
            finally:
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await lock.release()  # nothing when nothing was acquired
    if error is not None:
        raise error
    if lock.lost:
        raise BackupFailed(lock.lost, "nothing was committed by this run; the new holder backs up")


async def _acquire_beside(lock: BackupLock,
                          beside: Callable[[], Coroutine[Any, Any, None]] | None) -> None:
    """``lock.acquire()``, with ``beside`` running at the same time; the lock's
    own error (LockHeld, BackupFailed) is raised as it is, and stops ``beside``."""
    if beside is None:
        await lock.acquire()
        return
    error: Exception | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(beside)
        try:
            await lock.acquire()
        except Exception as e:  # raised below, not wrapped in an ExceptionGroup
            error = e
            tg.cancel_scope.cancel()
    if error is not None:
        raise error
