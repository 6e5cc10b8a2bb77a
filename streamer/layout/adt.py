"""The ADT-compatible layout (``STREAMER_LAYOUT=adt``): the names ADT's own scripts use.

ADT's ``Backup.sh`` scripts keep one copy per periodicity, and the copy before
it, in two buckets named after the site (WEBSITE_URL with ``.`` -> ``-``):

    <url>-<periodicity>                  e.g. www-example-com-hourly (webserver)
        applicationsourcecode.tar.gz              webroot, tar + gzip
        applicationsourcecode.tar.gz.BACKUP       the previous one
    <url>-db-<periodicity>               e.g. www-example-com-db-hourly (database)
        <WEBSITE_NAME>-DB-backup.tar.gz           tar + gzip of one file: the dump
        <WEBSITE_NAME>-DB-backup.tar.gz.BACKUP

so a build machine that restores "the old way" finds streamer's backups where
it looks (``tar xvfz`` of each, then the dump into the database client).
WEBSITE_NAME defaults, as in ADT, to the second label of WEBSITE_URL.

The dump's tar member is what ADT's ``BackupDatabase.sh`` writes (``DUMPS``):
``applicationDB.sql`` (MariaDB/MySQL) or ``applicationDB.psql`` (PostgreSQL),
the dump followed by the statements that recreate ADT's empty marker table
``zzzz`` as its last line -- ADT's installer refuses a dump whose last line
does not mention ``zzzz`` and checks after loading that the table exists.
The tar header is written last (tarframe.py, docs/ARCHITECTURE.md).

Commit: the objects are overwritten in place, so the run's manifest lives
beside the webroot as ``streamer-manifest.json`` (and ``.BACKUP``), and the
run exists for streamer while that manifest does.  In each region, just
before its uploads are completed (``AdtLayout.before_commit``):

    1. copy every current object to ``<name>.BACKUP`` (in its own bucket) and
       the manifest to ``streamer-manifest.json.BACKUP`` (the previous run
       stays whole);
    2. delete ``streamer-manifest.json`` (the current run stops existing for
       streamer while its objects are replaced);
    3. complete the uploads (the objects become the new ones), and
    4. write the new manifest (the pipeline's commit, pipeline/commit.py).

A run killed between 2 and 4 leaves no current manifest -- restore then finds
the ``.BACKUP`` run, whose manifest and objects still match.  A run that fails
after 3 keeps its completed objects (they are whole, and ADT reads them).
Retention does not apply (ADT keeps exactly two copies); the lock is
``streamer-lock.json`` in the webroot's bucket; cleanup aborts unfinished
uploads of these object names.  Copies above 5 GiB use UploadPartCopy
(store/s3_copy.py).  The archives are always gzip (``AdtLayout.codec``),
whatever STREAMER_COMPRESSION says.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from streamer.codec import Codec
from streamer.errors import ConfigError
from streamer.layout.base import CleanupPrefix, Layout, Placement
from streamer.layout.catalog import CATALOG_READS, RunListing, list_or_empty, parse_manifest
from streamer.model import STAMP_RE, Periodicity, Series
from streamer.settings.config import Config
from streamer.store.base import ObjectStore
from streamer.tarframe import TarMember

WEBROOT_OBJECT = "applicationsourcecode.tar.gz"
MANIFEST = "streamer-manifest.json"
LOCK = "streamer-lock.json"
BACKUP_SUFFIX = ".BACKUP"

# What ADT's BackupDatabase.sh puts around the dump in its tar member, by
# engine.  MariaDB/MySQL: ADT also writes "SET SESSION sql_require_primary_key
# = 0;" first; MariaDB refuses that variable (ERROR 1193) and ADT's own
# installer deletes the line before loading a dump into MariaDB, so it is
# written for MySQL only.  ADT's sed rewrites of the dump (http -> https, the
# user name and IP masked) are not applied: the dump is the operator's data.
_MYSQL_MARKER = (b"DROP TABLE IF EXISTS `zzzz`;\n"
                 b"CREATE TABLE `zzzz` ( `idxx` int(10) unsigned NOT NULL, PRIMARY KEY (`idxx`) )"
                 b" Engine=INNODB CHARSET=utf8mb4;\n")
DUMPS: dict[str, TarMember] = {
    "maria": TarMember("applicationDB.sql", b"DROP TABLE IF EXISTS `zzzz`;\n", _MYSQL_MARKER),
    "mysql": TarMember("applicationDB.sql", b"SET SESSION sql_require_primary_key = 0;\n"
                       b"DROP TABLE IF EXISTS `zzzz`;\n", _MYSQL_MARKER),
    "postgres": TarMember("applicationDB.psql", b"",
                          b"DROP TABLE IF EXISTS public.zzzz;\n"
                          b"CREATE TABLE public.zzzz ( idxx serial PRIMARY KEY );\n"),
}


def website_name(config: Config) -> str:
    """WEBSITE_NAME, or as ADT derives it: the second label of WEBSITE_URL."""
    if config.website_name:
        return config.website_name
    labels = config.website_url.split(".")
    return labels[1] if len(labels) > 1 else labels[0]


def bucket_name(website_url: str, periodicity: Periodicity) -> str:
    return website_url.strip().lower().replace(".", "-") + "-" + periodicity.value


def db_bucket_name(website_url: str, periodicity: Periodicity) -> str:
    """ADT's ``"backup"`` bucket type: ``<url>-db-<periodicity>``."""
    return website_url.strip().lower().replace(".", "-") + "-db-" + periodicity.value


def database_object(config: Config) -> str:
    return f"{website_name(config)}-DB-backup.tar.gz"


def adt_codec(config: Config) -> Codec:
    """gzip, as ADT's tar.gz: the configured level if gzip was chosen, else 6."""
    return Codec("gzip", config.compression_level if config.compression == "gzip" else 6)


def placement(config: Config, periodicity: Periodicity, stamp: str) -> Placement:
    members = {}
    if config.database.engine in DUMPS:  # the member is dated like the run
        when = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        members["database"] = dataclasses.replace(DUMPS[config.database.engine],
                                                  mtime=int(when.timestamp()))
    return Placement({"webroot": WEBROOT_OBJECT, "database": database_object(config)}, MANIFEST,
                     keep_on_failure=True,
                     buckets={"database": db_bucket_name(config.website_url, periodicity)},
                     members=members)


def object_keys(config: Config) -> tuple[str, ...]:
    return (WEBROOT_OBJECT, database_object(config))


async def keep_previous(client: ObjectStore, objects: tuple[tuple[ObjectStore, str], ...]) -> None:
    """Steps 1 and 2 of the commit (see the module docstring), in one region."""
    for store, key in objects:
        await store.copy_object(key, key + BACKUP_SUFFIX)
    if await client.copy_object(MANIFEST, MANIFEST + BACKUP_SUFFIX):
        await client.delete_object(MANIFEST)


async def adt_runs(client: ObjectStore, build: str | None, periodicity: Periodicity,
                   config: Config) -> list[RunListing]:
    """The current run and the ``.BACKUP`` one, as far as their manifests exist."""
    objects = {o.key: o for o in await list_or_empty(client, "")}
    if config.website_url:  # the dumps live in their own bucket
        db_store = client.sibling(db_bucket_name(config.website_url, periodicity))
        objects.update((o.key, o) for o in await list_or_empty(db_store, ""))
    names = object_keys(config)
    runs = []
    for suffix in ("", BACKUP_SUFFIX):
        manifest_key = MANIFEST + suffix
        if manifest_key not in objects:
            continue
        found = await client.get_with_etag(manifest_key, policy=CATALOG_READS)
        if found is None:
            continue
        manifest = parse_manifest(found[0], f"{client.label}: {manifest_key}", suffix)
        if (build and manifest.build != build) or not STAMP_RE.fullmatch(manifest.stamp):
            continue
        stored = [objects[n + suffix] for n in names if n + suffix in objects]
        stored.append(objects[manifest_key])
        artifact_names = tuple((n + suffix, a) for n, a in zip(names, ("webroot", "database"),
                                                               strict=True))
        runs.append(RunListing(manifest.build, periodicity, manifest.stamp, tuple(stored),
                               manifest_key, suffix, artifact_names))
    return sorted(runs, key=lambda r: r.stamp)


class AdtLayout(Layout):
    """One bucket per periodicity, ADT's object names, the previous copy as ``.BACKUP``."""

    name = "adt"
    no_retention = ("ADT layout: each periodicity keeps the current copy and the .BACKUP one; "
                    "nothing to prune")
    no_heal = ("ADT layout: each periodicity keeps one copy per name, replaced by the next "
               "backup; heal works with STREAMER_LAYOUT=streamer")

    def __init__(self, config: Config) -> None:
        self._config = config
        self.codec = adt_codec(config)

    def bucket(self, periodicity: Periodicity | None) -> str:
        if not self._config.website_url:
            raise ConfigError("STREAMER_LAYOUT=adt needs WEBSITE_URL",
                              "set WEBSITE_URL, e.g. www.example.com")
        assert periodicity is not None, "the ADT layout has a bucket per periodicity"
        return bucket_name(self._config.website_url, periodicity)

    def scopes(self, periodicity: Periodicity | None) -> list[Periodicity | None]:
        return [periodicity] if periodicity is not None else list(Periodicity)

    def placement(self, series: Series, stamp: str, extension: str) -> Placement:
        return placement(self._config, series.periodicity, stamp)

    def extra_buckets(self, periodicity: Periodicity) -> list[str]:
        if self._config.database.engine not in DUMPS:
            return []
        return [db_bucket_name(self._config.website_url, periodicity)]

    async def runs(self, client: ObjectStore, series: Series) -> list[RunListing]:
        return await adt_runs(client, series.build, series.periodicity, self._config)

    async def runs_in(self, client: ObjectStore, build: str | None,
                      periodicity: Periodicity | None) -> list[RunListing]:
        assert periodicity is not None, "scopes() gives the ADT layout one periodicity each"
        return await adt_runs(client, build, periodicity, self._config)

    async def find_series(self, clients: list[ObjectStore], periodicity: Periodicity | None,
                          build: str | None) -> list[Series]:
        """The bucket names no build: the build must be given."""
        if build is None:
            raise ConfigError("cleanup in the ADT layout needs the BUILD_IDENTIFIER",
                              "run `streamer cleanup PERIODICITY BUILD_IDENTIFIER`")
        assert periodicity is not None, "scopes() gives the ADT layout one periodicity each"
        return [Series(build, periodicity)]

    def lock_key(self, series: Series) -> str:
        return LOCK

    def cleanup_prefixes(self, series: Series) -> list[CleanupPrefix]:
        out = [CleanupPrefix(WEBROOT_OBJECT, with_runs=False)]
        if self._config.database.engine in DUMPS:  # its own bucket (placement)
            out.append(CleanupPrefix(database_object(self._config), with_runs=False,
                                     bucket=db_bucket_name(self._config.website_url, series.periodicity)))
        return out

    async def before_commit(self, client: ObjectStore,
                            objects: tuple[tuple[ObjectStore, str], ...]) -> None:
        """Steps 1 and 2 of the commit (see the module docstring)."""
        await keep_previous(client, objects)
