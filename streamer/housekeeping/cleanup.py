"""Cleanup: what killed or failed runs left behind.

Two kinds of leftovers under a build and periodicity:

* **Unfinished multipart uploads** (a run SIGKILLed mid-upload; an abort that
  failed).  Aborting one is always *consistent*: its owner can no longer
  complete it, so it can never write a manifest for it.  It is only *unkind* to
  a run still in progress.  So: while holding the backup lock (at the start of
  every backup, and ``streamer cleanup`` when it can take the lock) every
  upload under the prefix is aborted -- no other run may be uploading -- and
  without the lock only uploads started more than the horizon ago.
* **Runs without a manifest** (a killed run whose uploads did complete, a
  half-deleted expired run).  Deleting completed objects is *not* safe against
  a run that is about to write its manifest -- a former lock holder that hung
  past its lease could commit a run whose artifacts are gone -- so these are
  removed only when both their stamp and every object are older than the
  horizon (default 24 h, ``STREAMER_CLEANUP_HORIZON``), lock or no lock.
  With ``STREAMER_PRUNE=off`` they are left to the bucket's lifecycle rules
  (docs/SECURITY.md: the keys may have no delete right at all).

A request the keys are not allowed (no abort or delete right) is reported, as
every failure here is; it never fails a backup.

Where to look is the layout's (``Layout.cleanup_prefixes``).  ``plan_cleanup``
is pure; ``cleanup_series`` does one region's I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from streamer import model
from streamer.errors import StoreFailure
from streamer.layout.base import CleanupPrefix
from streamer.layout.catalog import (
    CATALOG_READS,
    RunListing,
    group_runs,
    list_or_empty,
    no_bucket,
    split_run_key,
)
from streamer.store.base import ObjectStore, UploadInfo


@dataclass(frozen=True)
class CleanupPlan:
    abort: tuple[UploadInfo, ...]
    delete: tuple[str, ...]  # object keys of abandoned manifest-less runs
    runs: tuple[str, ...]  # their stamps


def upload_started(upload: UploadInfo) -> datetime | None:
    """When an upload began: the server's Initiated, else its run's stamp."""
    if upload.initiated is not None:
        return upload.initiated
    parts = split_run_key(upload.key)
    return model.parse_stamp(parts[2]) if parts else None


def plan_cleanup(uploads: Sequence[UploadInfo], runs: Sequence[RunListing], now: datetime,
                 horizon: timedelta, holding_lock: bool) -> CleanupPlan:
    """What to abort and delete (pure); see the module docstring for why."""
    cutoff = now - horizon
    abort = []
    for u in uploads:
        started = upload_started(u)
        if holding_lock or (started is not None and started < cutoff):
            abort.append(u)
    delete: list[str] = []
    stamps: list[str] = []
    for run in runs:
        if run.committed or run.when >= cutoff:
            continue
        if any(o.modified is None or o.modified >= cutoff for o in run.objects):
            continue
        delete.extend(run.keys)
        stamps.append(run.stamp)
    return CleanupPlan(tuple(abort), tuple(delete), tuple(stamps))


@dataclass(frozen=True)
class CleanupReport:
    region: str
    aborted: int
    deleted_runs: tuple[str, ...]
    errors: tuple[str, ...] = ()


async def cleanup_prefix(client: ObjectStore, prefix: str, now: datetime, horizon: timedelta,
                         holding_lock: bool, with_runs: bool = True) -> CleanupReport:
    """Clean one region under ``prefix`` (a series, or the ADT object names)."""
    try:
        uploads = await client.list_uploads(prefix, policy=CATALOG_READS)
    except StoreFailure as f:
        if no_bucket(f):
            return CleanupReport(client.label, 0, ())
        raise
    runs = group_runs(await list_or_empty(client, prefix)) if with_runs else []
    plan = plan_cleanup(uploads, runs, now, horizon, holding_lock)
    errors: list[str] = []
    aborted = 0
    for u in plan.abort:
        try:
            await client.abort_multipart(u.key, u.upload_id)
            aborted += 1
        except StoreFailure as e:
            errors.append(str(e))
    deleted = plan.runs
    if plan.delete:
        try:
            await client.delete_keys(list(plan.delete))
        except StoreFailure as e:
            errors.append(str(e))
            deleted = ()
    return CleanupReport(client.label, aborted, deleted, tuple(errors))


async def cleanup_series(client: ObjectStore, prefixes: Sequence[CleanupPrefix], now: datetime,
                         horizon: timedelta, holding_lock: bool,
                         delete_runs: bool = True) -> CleanupReport:
    """Clean one region under every prefix of a series (``Layout.cleanup_prefixes``);
    ``delete_runs`` False: abort uploads only."""
    aborted, runs, errors = 0, list[str](), list[str]()
    for p in prefixes:
        store = client.sibling(p.bucket) if p.bucket else client
        r = await cleanup_prefix(store, p.prefix, now, horizon, holding_lock,
                                 with_runs=p.with_runs and delete_runs)
        aborted += r.aborted
        runs.extend(r.deleted_runs)
        errors.extend(r.errors)
    return CleanupReport(client.label, aborted, tuple(runs), tuple(errors))
