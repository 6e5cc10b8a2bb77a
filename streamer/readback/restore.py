"""``streamer restore``: a committed backup streamed back.

    pick the run   newest committed stamp among the regions that answer (or --at)
    per artifact   read from the regions holding that run in order (or only --region N):
                   HEAD (size, ETag) -> ranged GETs -> each part's digest ->
                   SHA-256 of the whole -> decompress ->
                   webroot: safe tar extraction into a temporary directory inside
                            the target, moved into place only once the hash matched
                   database: the engine's client (database.restore_client); the
                            ADT layout's copy is read out of its one tar member
                            (extract.tar_member), from the bucket its manifest names
                   a region that fails mid-read (unreachable, reset, timed out, a
                   part that does not match) is reported, and the read resumes in
                   the next region from the first part not yet handed downstream
                   (readback/resume.py); tar or the client never restart.  A
                   manifest without per-part digests (older backups) is read
                   from one region at a time, from byte zero in the next.

The database: PostgreSQL is restored by ``psql --single-transaction``, and the
hash is checked *before* psql sees the end of its input -- on a mismatch psql
is killed and its transaction never commits.  MariaDB/MySQL dumps are not one
transaction (DDL commits implicitly), so their stored copy is first verified
with a hash-only pass, then streamed again into the client (each pass pinned
to its regions' ETags).  The target database must exist; it should be empty (a
PostgreSQL restore into a database holding the same tables fails and rolls
back; a MariaDB dump drops and recreates the tables it contains).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol, TypeVar

import anyio

from streamer.age.keys import Identity, load_identities
from streamer.codec import DECOMPRESS_ERRORS
from streamer.db import restore_client
from streamer.errors import ConfigError, IntegrityError, StreamerError
from streamer.layout.base import Layout
from streamer.layout.catalog import StoredArtifact
from streamer.manifest import PartDigests
from streamer.model import Series
from streamer.process import Child
from streamer.readback.download import HashingReader, stream_object
from streamer.readback.extract import (
    BLOCK,
    TEMP_PREFIX,
    ExtractStats,
    apply_dir_attrs,
    extract_tar,
    is_empty_dir,
    promote,
    remove_tree,
    same_owner_default,
    tar_member,
)
from streamer.readback.plaintext import Decoding, require_identity
from streamer.readback.resume import REGION_FAILURES, Source, Stop, Tally, stream_parts
from streamer.readback.sources import (
    Download,
    Holders,
    Located,
    choose_regions,
    locate,
    validate_stamp,
)
from streamer.settings.config import Config, DatabaseConfig
from streamer.store.base import ObjectStore

T = TypeVar("T")


class Read(Protocol):
    """Stream one artifact into ``consume`` (a worker thread), checked; again on a
    second call (MariaDB's two passes)."""

    async def __call__(self, consume: Callable[[HashingReader], T]) -> T: ...


@dataclass
class OneRegion:
    """A copy without per-part digests: read from one region, checked end to end."""

    source: Source
    dl: Download
    tally: Tally

    async def __call__(self, consume: Callable[[HashingReader], T]) -> T:
        self.tally.regions.append(self.source.label)
        return await stream_object(self.source.client, self.source.ref, consume,
                                   range_size=self.dl.range_size, in_flight=self.dl.in_flight,
                                   counted=self.tally.count)


@dataclass
class Resuming:
    """A copy with per-part digests: every part checked, resumed in the next region."""

    source: Source
    holders: Holders
    parts: PartDigests
    dl: Download
    tally: Tally
    on_stop: Callable[[Stop], None]

    async def __call__(self, consume: Callable[[HashingReader], T]) -> T:
        return await stream_parts(self.source, self._next, self.parts, consume,
                                  range_size=self.dl.range_size, in_flight=self.dl.in_flight,
                                  tally=self.tally, on_stop=self.on_stop)

    async def _next(self) -> Source | None:
        following = await self.holders.next()
        if following is not None:
            self.source = following  # a second pass starts where the first ended
        return following


@dataclass(frozen=True)
class RestoreRequest:
    series: Series
    at: str | None = None  # a stamp; None: the newest committed run
    webroot: Path | None = None  # where to restore the webroot; None: not at all
    database: bool = False
    region: int | None = None  # only this region (1-based)
    force: bool = False  # restore into a non-empty directory (merging, like tar -x)



def prepare_target(target: Path, force: bool) -> bool:
    """Create the target if missing (True), or check it is an empty directory."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ConfigError(f"restore target {target} is not a directory", "choose a directory")
    if not target.exists():
        target.mkdir(parents=True, mode=0o755)
        return True
    if not force and not is_empty_dir(target):
        raise ConfigError(f"restore target {target} is not empty",
                          "restore into an empty directory, or add --force to restore over it")
    return False



# ---------------------------------------------------------------- webroot


async def restore_tree(read: Read, decoding: Decoding, target: Path,
                       same_owner: bool) -> ExtractStats:
    """Extract into a temporary directory inside ``target``; move into place once verified.

    The extraction runs in a worker thread of this process, beside the download
    (a child process fed through a pipe was measured too: on two cores shared
    with the S3 server it was 7% slower and used 20% more CPU)."""
    temp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=target))
    try:
        def consume(reader: HashingReader) -> ExtractStats:
            return extract_tar(decoding.plaintext(reader, f"{reader.where}: {reader.ref.key}"),
                               temp, same_owner)

        stats = await read(consume)
        # The stream's SHA-256 matched the manifest (HashingReader.finish): make it real.
        await anyio.to_thread.run_sync(promote, temp, target)
        await anyio.to_thread.run_sync(_remove_if_exists, temp)  # before: it touches target
        await anyio.to_thread.run_sync(apply_dir_attrs, target, stats.dir_attrs, same_owner)
        return stats
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_remove_if_exists, temp)


def _remove_if_exists(path: Path) -> None:
    if os.path.lexists(path):
        remove_tree(str(path))


# ---------------------------------------------------------------- database

READ_ERRORS: tuple[type[BaseException], ...] = (*DECOMPRESS_ERRORS, tarfile.TarError)

def _feed(reader: HashingReader, decoding: Decoding, stdin: IO[bytes],
          member: str | None) -> None:
    """Decompressed SQL (or, with ``member``, that tar member's bytes) into the
    client; the hash is checked before its input ends."""
    try:
        where = f"{reader.where}: {reader.ref.key}"
        source = decoding.plaintext(reader, where)
        if member is not None:
            source = tar_member(source, member, where)
        while True:
            block = source.read(BLOCK)
            if not block:
                break
            stdin.write(block)
        reader.finish()
    except BrokenPipeError:
        reader.finish()  # a damaged copy explains it (IntegrityError); else the client failed
        raise StreamerError("the database client stopped reading its input") from None
    except READ_ERRORS as e:
        raise IntegrityError(f"{reader.where}: {reader.ref.key}: cannot decompress: {e}",
                             "the stored copy is damaged") from None
    stdin.close()


async def restore_database(read: Read, decoding: Decoding, db: DatabaseConfig,
                           member: str | None = None) -> None:
    if db.engine in ("maria", "mysql"):
        await read(lambda reader: None)
    with restore_client(db) as source:
        try:
            child = Child.spawn(source.argv, env=source.env, stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL)
        except OSError as e:
            raise StreamerError(f"database restore failed: cannot start {source.argv[0]}: "
                                f"{e.strerror}", "check that it is installed and on PATH") from None
        assert child.proc.stdin is not None
        child.start_tail()
        stdin = child.proc.stdin
        error: Exception | None = None
        try:
            await child.supervise(read(lambda reader: _feed(reader, decoding, stdin, member)))
        except REGION_FAILURES:
            raise  # a damaged copy or no region left: the client was killed before its input ended
        except Exception as e:
            error = e
        with anyio.CancelScope(shield=True):
            await child.tail_done()
        code = child.returncode
        if error is not None or code != 0:
            raise StreamerError(f"database restore failed: {os.path.basename(source.argv[0])} "
                                f"exited with status {code}: {child.last_line() or 'no message'}",
                                "check that the target database exists, is empty and the user may "
                                "write to it") from None


# ---------------------------------------------------------------- the command


@dataclass(frozen=True)
class Restored:
    """One artifact restored, from one region or, resumed, from several."""

    artifact: str  # "webroot" | "database"
    region: str  # the region's label ("region 1 then region 2" when resumed)
    into: str  # the directory, or the database's name
    size: int  # the stored size
    seconds: float
    stats: ExtractStats | None = None  # the webroot's files, directories, links
    downloaded: int = 0  # bytes that arrived, every pass and region (re-reads included)


@dataclass(frozen=True)
class FailedAttempt:
    """One region that could not deliver (the rest of) an artifact; ``at``: the
    first byte it had not delivered, where the next region resumed; ``last``:
    no region was left."""

    artifact: str
    region: str
    error: str
    last: bool
    at: int | None = None


@dataclass
class RestoreReport:
    """What a restore did, in order; ``error`` ends it (nothing more was restored)."""

    what: str
    stamp: str = ""
    unreachable: list[str] = field(default_factory=list)
    events: list[Restored | FailedAttempt] = field(default_factory=list)
    error: StreamerError | None = None

    @property
    def exit_code(self) -> int:
        return self.error.exit_code if self.error is not None else 0


async def restore_run(config: Config, clients: list[ObjectStore], layout: Layout,
                      request: RestoreRequest) -> RestoreReport:
    """Pick the run and restore each wanted artifact from the regions holding
    it.  Errors before the run is located are raised; later ones end up in the
    report's ``error``, after what was done."""
    what = str(request.series)
    at = validate_stamp(request.at)
    wanted = (["webroot"] if request.webroot is not None else []) + \
        (["database"] if request.database else [])
    if not wanted:
        raise ConfigError("nothing to restore", "give --webroot DIR and/or --database")
    if request.database and config.database.engine == "none":
        raise ConfigError("--database needs the target database",
                          "set DATABASE_INSTALLATION_TYPE and DB_* to the (empty) database to restore into")
    identity = config.encryption.identity
    identities = await anyio.to_thread.run_sync(load_identities, identity) if identity else None
    candidates = choose_regions(clients, request.region)
    located = await locate(candidates, lambda c: layout.runs(c, request.series), at, what)
    report = RestoreReport(what, located.stamp, list(located.unreachable))
    try:
        await _restore_all(config, located, wanted, request, report, identities)
    except StreamerError as e:
        report.error = e
    return report


async def _restore_all(config: Config, located: Located, wanted: list[str], request: RestoreRequest,
                       report: RestoreReport, identities: tuple[Identity, ...] | None) -> None:
    created = False
    if request.webroot is not None:
        created = prepare_target(request.webroot, request.force)
    dl = Download.for_config(config)
    same_owner = same_owner_default()
    try:
        for name in wanted:
            await _restore_artifact(config, located, name, request, dl, same_owner, report,
                                    identities)
    except BaseException:
        if created and request.webroot is not None:
            with contextlib.suppress(OSError):
                request.webroot.rmdir()  # only if still empty
        raise


async def _deliver(config: Config, name: str, request: RestoreRequest, decoding: Decoding,
                   art: StoredArtifact, read: Read, same_owner: bool
                   ) -> tuple[str, ExtractStats | None]:
    if name == "webroot":
        assert request.webroot is not None
        return str(request.webroot), await restore_tree(read, decoding, request.webroot,
                                                        same_owner)
    await restore_database(read, decoding, config.database, art.member)
    return config.database.name, None


async def _restore_artifact(config: Config, located: Located, name: str, request: RestoreRequest,
                            dl: Download, same_owner: bool, report: RestoreReport,
                            identities: tuple[Identity, ...] | None) -> None:
    """Long: the two ways to read (resuming, or one region after another from
    byte zero for a manifest without per-part digests) share the reporting."""
    failures: list[str] = []
    where = f"the {name} of {report.what}/{located.stamp}"

    def failed(region: str, error: StreamerError, at: int | None = None) -> None:
        failures.append(str(error))
        report.events.append(FailedAttempt(name, region, str(error), False, at))

    holders = Holders(located, name, report.what, failed)
    source = await holders.next()
    while source is not None:
        art, tally = holders.artifact, Tally()
        assert art is not None
        decoding = Decoding(art.compression, require_identity(
            where, holders.recipients, identities) if art.encryption else None)
        read: Read = OneRegion(source, dl, tally) if art.parts is None else Resuming(
            source, holders, art.parts, dl, tally, lambda s: failed(s.region, s.error, s.at))
        started = time.monotonic()
        try:
            into, stats = await _deliver(config, name, request, decoding, art, read, same_owner)
        except REGION_FAILURES as e:
            if art.parts is None:  # start again from byte zero in the next region
                failed(source.label, e)
                source = await holders.next()
                continue
            if not tally.stops or tally.stops[-1].error is not e:
                # Every part matched its digest, so every region holds these bytes.
                failed(" then ".join(dict.fromkeys(tally.regions)) or source.label, e)
                _mark_last(report)
                raise StreamerError(f"restore of {where} failed: {e}",
                                    "every region holds the same bytes; try another --at stamp"
                                    ) from None
            break
        report.events.append(Restored(name, " then ".join(dict.fromkeys(tally.regions)), into,
                                      art.stored_size, time.monotonic() - started, stats,
                                      tally.downloaded))
        return
    _mark_last(report)
    raise StreamerError(f"restore of {where} failed in every region: " + "; ".join(failures),
                        "nothing was restored from a damaged copy; try another --at stamp")


def _mark_last(report: RestoreReport) -> None:
    last = report.events[-1] if report.events else None
    if isinstance(last, FailedAttempt):
        report.events[-1] = dataclasses.replace(last, last=True)
