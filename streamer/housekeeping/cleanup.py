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
is pure; ``survey_series`` lists one region (the uploads and the runs at once)
and ``cleanup_series`` acts on that listing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio

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
from streamer.store.base import ObjectInfo, ObjectStore, UploadInfo


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


@dataclass(frozen=True)
class Survey:
    """What one prefix holds in one region: the cleanup's listing, taken before
    anything is aborted or deleted (a backup takes it while its lock is claimed)."""

    prefix: str
    uploads: tuple[UploadInfo, ...]
    runs: tuple[RunListing, ...]
    bucket: str | None = None  # CleanupPrefix.bucket: another bucket of the region


async def survey_prefix(client: ObjectStore, prefix: str, with_runs: bool = True,
                        bucket: str | None = None) -> Survey:
    """List the unfinished uploads and (``with_runs``) the runs under ``prefix``
    (in ``bucket`` of the region, default the client's own), both at once; a
    region without the bucket holds nothing."""
    client = client.sibling(bucket) if bucket else client
    uploads: list[UploadInfo] = []
    objects: list[ObjectInfo] = []
    failures: list[StoreFailure] = []

    async def list_uploads() -> None:
        try:
            uploads.extend(await client.list_uploads(prefix, policy=CATALOG_READS))
        except StoreFailure as f:
            if not no_bucket(f):
                failures.append(f)

    async def list_runs() -> None:
        try:
            objects.extend(await list_or_empty(client, prefix))
        except StoreFailure as f:
            failures.append(f)

    async with anyio.create_task_group() as tg:
        tg.start_soon(list_uploads)
        if with_runs:
            tg.start_soon(list_runs)
    if failures:
        raise failures[0]
    return Survey(prefix, tuple(uploads), tuple(group_runs(objects)), bucket)


async def survey_series(client: ObjectStore, prefixes: Sequence[CleanupPrefix],
                        delete_runs: bool = True) -> list[Survey]:
    """``survey_prefix`` for every prefix of a series (``Layout.cleanup_prefixes``);
    ``delete_runs`` False: the uploads only."""
    return [await survey_prefix(client, p.prefix, p.with_runs and delete_runs, p.bucket)
            for p in prefixes]


async def clean_surveyed(client: ObjectStore, survey: Survey, now: datetime, horizon: timedelta,
                         holding_lock: bool) -> CleanupReport:
    """Abort and delete what ``plan_cleanup`` says of one prefix's survey."""
    plan = plan_cleanup(survey.uploads, survey.runs, now, horizon, holding_lock)
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
                         horizon: timedelta, holding_lock: bool, delete_runs: bool = True,
                         surveys: Sequence[Survey] | None = None) -> CleanupReport:
    """Clean one region under every prefix of a series (``Layout.cleanup_prefixes``);
    ``delete_runs`` False: abort uploads only.  ``surveys``: the listing
    already taken (``survey_series``), else it is taken here."""
    if surveys is None:
        surveys = await survey_series(client, prefixes, delete_runs)
    aborted, runs, errors = 0, list[str](), list[str]()
    for survey in surveys:
        store = client.sibling(survey.bucket) if survey.bucket else client
        r = await clean_surveyed(store, survey, now, horizon, holding_lock)
        aborted += r.aborted
        runs.extend(r.deleted_runs)
        errors.extend(r.errors)
    return CleanupReport(client.label, aborted, tuple(runs), tuple(errors))
