"""The ADT-compatible layout (``STREAMER_LAYOUT=adt``): the names ADT's own scripts use.

ADT's ``Backup.sh`` keeps one copy per periodicity in a bucket named after the
site, and the copy before it:

    bucket  <WEBSITE_URL with . -> ->-<periodicity>      e.g. www-example-com-hourly
            applicationsourcecode.tar.gz                  webroot, tar + gzip
            applicationsourcecode.tar.gz.BACKUP           the previous one
            <WEBSITE_NAME>-DB-backup.tar.gz               database dump, gzip
            <WEBSITE_NAME>-DB-backup.tar.gz.BACKUP

so a build machine that restores "the old way" (``tar xzf
applicationsourcecode.tar.gz``) finds streamer's webroot where it looks.
WEBSITE_NAME defaults, as in ADT, to the second label of WEBSITE_URL.

Commit: the objects are overwritten in place, so the run's manifest lives
beside them as ``streamer-manifest.json`` (and ``.BACKUP``), and the run exists
for streamer while that manifest does.  In each region, just before its
uploads are completed (``before_commit``):

    1. copy every current object to ``<name>.BACKUP`` and the manifest to
       ``streamer-manifest.json.BACKUP`` (the previous run stays whole);
    2. delete ``streamer-manifest.json`` (the current run stops existing for
       streamer while its objects are replaced);
    3. complete the uploads (the objects become the new ones), and
    4. write the new manifest (backup.py's commit).

A run killed between 2 and 4 leaves no current manifest -- restore then finds
the ``.BACKUP`` run, whose manifest and objects still match.  A run that fails
after 3 keeps its completed objects (they are whole, and ADT reads them).
Retention does not apply (ADT keeps exactly two copies); the lock is
``streamer-lock.json`` in the same bucket; cleanup aborts unfinished uploads of
these object names.  Copies use one CopyObject each (objects up to 5 GiB).
"""

from __future__ import annotations

import dataclasses

from streamer.errors import ConfigError
from streamer.layout.catalog import CATALOG_READS, RunListing, list_or_empty, parse_manifest
from streamer.layout.streamer import Placement
from streamer.model import STAMP_RE, Periodicity
from streamer.settings.config import Config
from streamer.store.base import ObjectStore

WEBROOT_OBJECT = "applicationsourcecode.tar.gz"
MANIFEST = "streamer-manifest.json"
LOCK = "streamer-lock.json"
BACKUP_SUFFIX = ".BACKUP"


def website_name(config: Config) -> str:
    """WEBSITE_NAME, or as ADT derives it: the second label of WEBSITE_URL."""
    if config.website_name:
        return config.website_name
    labels = config.website_url.split(".")
    return labels[1] if len(labels) > 1 else labels[0]


def bucket_name(website_url: str, periodicity: Periodicity) -> str:
    return website_url.strip().lower().replace(".", "-") + "-" + periodicity.value


def database_object(config: Config) -> str:
    return f"{website_name(config)}-DB-backup.tar.gz"


def adt_config(config: Config, periodicity: Periodicity) -> Config:
    """The config for one periodicity's ADT bucket: gzip, as ADT's tar.gz."""
    if not config.website_url:
        raise ConfigError("STREAMER_LAYOUT=adt needs WEBSITE_URL", "set WEBSITE_URL, e.g. www.example.com")
    level = config.compression_level if config.compression == "gzip" else 6
    return dataclasses.replace(config, bucket=bucket_name(config.website_url, periodicity),
                               compression="gzip", compression_level=level)


def for_layout(config: Config, periodicity: Periodicity) -> Config:
    return adt_config(config, periodicity) if config.layout == "adt" else config


def placement(config: Config) -> Placement:
    return Placement({"webroot": WEBROOT_OBJECT, "database": database_object(config)}, MANIFEST,
                     keep_on_failure=True)


def object_keys(config: Config) -> tuple[str, ...]:
    return (WEBROOT_OBJECT, database_object(config))


async def keep_previous(client: ObjectStore, keys: tuple[str, ...]) -> None:
    """Steps 1 and 2 of the commit (see the module docstring), in one region."""
    for key in keys:
        await client.copy_object(key, key + BACKUP_SUFFIX)
    if await client.copy_object(MANIFEST, MANIFEST + BACKUP_SUFFIX):
        await client.delete_object(MANIFEST)


async def adt_runs(client: ObjectStore, build: str | None, periodicity: Periodicity,
                   config: Config) -> list[RunListing]:
    """The current run and the ``.BACKUP`` one, as far as their manifests exist."""
    objects = {o.key: o for o in await list_or_empty(client, "")}
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
