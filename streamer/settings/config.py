"""Typed, frozen configuration of a backup, parsed without I/O.

Every setting has one name: the ADT environment variable (``S3_HOST_BASE``,
``DB_PASSWORD``, ``STREAMER_MEMORY_BUDGET`` ...).  The config file (TOML) uses
the same names as top-level keys (any case), and command-line flags are mapped
onto the same names by the CLI.  ``merge_sources`` (in ``values.py``, with
the generic value parsers) layers them (flag > environment > file > default)
into one ``Mapping[str, str]`` and ``parse_config`` turns that into a
``Config`` or raises ``ConfigError`` with a one-line message naming the setting.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from streamer import codec
from streamer.codec import Compression
from streamer.errors import ConfigError
from streamer.model import Periodicity
from streamer.settings.assets import AssetsConfig, parse_assets
from streamer.settings.compression import parse_compression, parse_memory
from streamer.settings.encryption import Encryption, parse_encryption
from streamer.settings.limits import Priority, parse_nice, parse_rates, slots
from streamer.settings.security import LockMode, parse_ca_bundles, parse_object_lock, parse_prune
from streamer.settings.values import (
    MiB,
    normalise_endpoint,
    parse_bool,
    parse_choice,
    parse_duration,
    parse_float,
    parse_int,
    per_region,
    split_endpoints,
)

DEFAULT_KEEP: Mapping[Periodicity, int] = {
    Periodicity.HOURLY: 24,
    Periodicity.DAILY: 7,
    Periodicity.WEEKLY: 5,
    Periodicity.MONTHLY: 12,
    Periodicity.BIMONTHLY: 6,
    Periodicity.SHUTDOWN: 3,
    Periodicity.MANUAL: 10,
}

class Secret(str):
    """A string whose repr and str-formatting in config dumps is masked."""

    def __repr__(self) -> str:
        return "'****'" if self else "''"

    def masked(self) -> str:
        return "****" if self else ""


@dataclass(frozen=True)
class Region:
    """One S3 endpoint.  ``index`` is 1-based, as operators count regions."""

    index: int
    endpoint: str  # full URL, e.g. https://nl-ams-1.linodeobjects.com
    access_key: Secret = field(repr=False)
    secret_key: Secret = field(repr=False)
    location: str = "us-east-1"
    ca_bundle: str = ""  # STREAMER_CA_BUNDLE: a PEM file of CAs (settings/security.py)

    @property
    def label(self) -> str:
        host = re.sub(r"^https?://", "", self.endpoint)
        return f"region {self.index} ({host})"


Engine = Literal["maria", "mysql", "postgres", "none"]


@dataclass(frozen=True)
class DatabaseConfig:
    """The database to dump; ``engine == "none"`` means webroot only."""

    engine: Engine = "none"
    host: str = "127.0.0.1"
    port: int = 0  # 0: the engine's default (3306 / 5432)
    user: str = ""
    password: Secret = field(default=Secret(""), repr=False)
    name: str = ""
    min_tables: int = 1

    @property
    def effective_port(self) -> int:
        if self.port:
            return self.port
        return 5432 if self.engine == "postgres" else 3306


ChecksumMode = Literal["auto", "sha256", "md5", "crc32"]
Layout = Literal["streamer", "adt"]


@dataclass(frozen=True)
class Config:
    regions: tuple[Region, ...]
    bucket: str
    webroot: Path = Path("/var/www/html")
    excludes: tuple[str, ...] = ()
    persist_assets: bool = False
    database: DatabaseConfig = DatabaseConfig()
    # Every chunk buffer of every stream and region together stays under this.
    # Memory formula: peak chunk bytes <= memory_budget; each stream needs at
    # least two parts (one filling, one uploading), so part sizes are capped at
    # memory_budget // (2 * streams) -- see pipeline/sizing.py.
    memory_budget: int = 256 * MiB
    compression: Compression = "zstd"
    # zstd: the level adapts to the bottleneck from compression_level on
    # (STREAMER_COMPRESSION_LEVEL=auto, the default; pipeline/adapt.py).
    compression_level: int = 3
    compression_auto: bool = True
    # zstd worker threads for the webroot; 0 compresses in the producer thread
    # (fastest on two cores); None (auto): threads when more than 2 cores are
    # free (codec.auto_threads).  >0 reserves 32 MiB of the budget (codec.py).
    compression_threads: int | None = None
    # Regions that must commit for the run to count (exit 3 below all of them).
    # 1 (default): commit wherever possible; the next run or `heal` completes
    # the others.  0 ("all"): a run that misses any region commits nowhere.
    quorum: int = 1
    keep: Mapping[Periodicity, int] = field(default_factory=lambda: dict(DEFAULT_KEEP))
    stall_timeout: float = 300.0
    layout: Layout = "streamer"
    # How each part's integrity is proven to the server, computed once per part
    # and shared by every region and retry.  "auto" (default): per region, the
    # cheapest checksum it verifies (CRC32C), found by a probe
    # cached per endpoint (store/negotiate.py), else Content-MD5.  "md5":
    # Content-MD5 everywhere.  "sha256": the signed x-amz-content-sha256 of
    # SigV4.  "crc32": botocore's flexible checksum headers.
    checksum: ChecksumMode = "auto"
    parts_in_flight: int = 4  # per region
    part_retries: int = 5  # attempts per part before the region is dropped
    # Request timeouts (store/timeouts.py, docs/RELIABILITY.md): a control
    # request (create, complete's floor, head, small puts, lists, the lock)
    # gets request_timeout; a part (or a ranged GET) request_timeout plus its
    # size at min_part_rate bytes per second.
    # min_part_rate is lowered to each part's share of bwlimit where that is
    # less (settings/limits.py), so a throttled part is not cut off.
    request_timeout: float = 30.0
    min_part_rate: int = 128 * 1024
    # Bytes per second sent to all regions together, 0: unlimited
    # (STREAMER_BWLIMIT; store/throttle.py).  CPU and IO priority of the
    # process, its threads and children (STREAMER_NICE; process.lower_priority).
    bwlimit: int = 0
    nice: Priority = field(default_factory=Priority)
    # Start the webroot's tar and compression before start-up (STREAMER_EARLY_START;
    # pipeline/early.py, docs/ARCHITECTURE.md "Start-up and tear-down").
    early_start: bool = True
    # Seconds the producer may wait on one region alone (every other region
    # idle), summed over the run, before that region is dropped and left to
    # heal; 0: never (pipeline/lag.py, docs/RELIABILITY.md).
    lag_limit: float = 300.0
    progress_interval: float = 5.0  # seconds between progress lines off a terminal
    website_url: str = ""
    website_name: str = ""
    # age encryption of every artifact (settings/encryption.py, README "Encryption").
    encryption: Encryption = field(default_factory=Encryption)
    assets: AssetsConfig = field(default_factory=AssetsConfig)  # settings/assets.py
    # S3 Object Lock on every committed object, and whether anything is ever
    # deleted (settings/security.py, docs/SECURITY.md).
    object_lock_days: int = 0
    object_lock_mode: LockMode = "GOVERNANCE"
    prune: bool = True

    @property
    def effective_quorum(self) -> int:
        return self.quorum or len(self.regions)

    def extension(self) -> str:
        return codec.extension(self.compression)

    def describe(self) -> dict[str, object]:
        """The effective config with secrets masked (for ``config check``)."""
        return {
            "regions": [
                {
                    "index": r.index,
                    "endpoint": r.endpoint,
                    "location": r.location,
                    "access_key": r.access_key.masked(),
                    "secret_key": r.secret_key.masked(),
                }
                for r in self.regions
            ],
            "bucket": self.bucket,
            "webroot": str(self.webroot),
            "excludes": list(self.excludes),
            "persist_assets": self.persist_assets,
            "database": {
                "engine": self.database.engine,
                "host": self.database.host,
                "port": self.database.effective_port,
                "user": self.database.user,
                "password": self.database.password.masked(),
                "name": self.database.name,
                "min_tables": self.database.min_tables,
            },
            "memory_budget": self.memory_budget,
            "compression": self.compression,
            "compression_level": "auto" if self.compression_auto and self.compression == "zstd"
            else self.compression_level,
            "compression_threads": ("auto" if self.compression_threads is None
                                    else self.compression_threads),
            "quorum": self.effective_quorum,
            "keep": {p.value: n for p, n in self.keep.items()},
            "stall_timeout": self.stall_timeout,
            "layout": self.layout,
            "checksum": self.checksum,
            "parts_in_flight": self.parts_in_flight,
            "part_retries": self.part_retries,
            "request_timeout": self.request_timeout,
            "min_part_rate": self.min_part_rate,
            "lag_limit": self.lag_limit,
            **self.encryption.describe(),
            "object_lock": ({"days": self.object_lock_days, "mode": self.object_lock_mode}
                            if self.object_lock_days else None),
            "prune": self.prune,
            "ca_bundles": [r.ca_bundle for r in self.regions],
            "bwlimit": self.bwlimit or "unlimited",
            "nice": self.nice.describe(),
        }


# ---------------------------------------------------------------- parsing


def parse_excludes(values: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        for item in value.split(":"):
            item = item.strip().strip("/")
            if not item:
                continue
            if ".." in Path(item).parts:
                raise ConfigError(f"exclude {item!r} leaves the webroot", "use paths below the webroot")
            if item not in out:
                out.append(item)
    return tuple(out)


_ENGINES: Mapping[str, Engine] = {
    "maria": "maria", "mariadb": "maria", "mysql": "mysql",
    "postgres": "postgres", "postgresql": "postgres", "none": "none", "": "none",
}


def parse_database(s: Mapping[str, str]) -> DatabaseConfig:
    raw = s.get("DATABASE_INSTALLATION_TYPE", "None").strip().lower()
    if raw not in _ENGINES:
        raise ConfigError(f"DATABASE_INSTALLATION_TYPE={raw!r} is not valid",
                          "use Maria, MySQL, Postgres or None")
    engine = _ENGINES[raw]
    if engine == "none":
        return DatabaseConfig()
    db = DatabaseConfig(
        engine=engine,
        host=s.get("DB_HOST", "127.0.0.1") or "127.0.0.1",
        port=parse_int("DB_PORT", s["DB_PORT"], 1) if s.get("DB_PORT") else 0,
        user=s.get("DB_USERNAME", ""),
        password=Secret(s.get("DB_PASSWORD", "")),
        name=s.get("DB_NAME", ""),
        min_tables=parse_int("STREAMER_MIN_TABLES", s.get("STREAMER_MIN_TABLES", "1")),
    )
    if not db.name:
        raise ConfigError("DB_NAME is not set", f"set DB_NAME for DATABASE_INSTALLATION_TYPE={raw}")
    if not db.user:
        raise ConfigError("DB_USERNAME is not set", f"set DB_USERNAME for DATABASE_INSTALLATION_TYPE={raw}")
    return db


def parse_regions(s: Mapping[str, str]) -> tuple[Region, ...]:
    """One Region per S3_HOST_BASE endpoint, with its keys and location."""
    hosts = split_endpoints(s.get("S3_HOST_BASE", ""))
    if not hosts:
        raise ConfigError("S3_HOST_BASE is not set", "set it to one endpoint per region, separated by |")
    endpoints = [normalise_endpoint(h) for h in hosts]
    n = len(endpoints)
    access = per_region("S3_ACCESS_KEY", s.get("S3_ACCESS_KEY", ""), n)
    secret = per_region("S3_SECRET_KEY", s.get("S3_SECRET_KEY", ""), n)
    locations = per_region("S3_LOCATION", s.get("S3_LOCATION", "") or "us-east-1", n)
    cas = parse_ca_bundles(s, n)
    for i in range(n):
        if not access[i] or not secret[i]:
            raise ConfigError(f"S3_ACCESS_KEY or S3_SECRET_KEY missing for region {i + 1}",
                              "set both, one value for all regions or one per region")
    return tuple(
        Region(i + 1, endpoints[i], Secret(access[i]), Secret(secret[i]),
               locations[i] or "us-east-1", cas[i])
        for i in range(n)
    )


def _parse_bucket(s: Mapping[str, str]) -> str:
    """STREAMER_BUCKET, else derived from WEBSITE_URL."""
    website_url = s.get("WEBSITE_URL", "")
    bucket = s.get("STREAMER_BUCKET", "")
    if not bucket:
        if not website_url:
            raise ConfigError("no bucket configured", "set STREAMER_BUCKET or WEBSITE_URL")
        bucket = website_url.replace(".", "-").lower() + "-backups"
    if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", bucket):
        raise ConfigError(f"bucket name {bucket!r} is not a valid S3 bucket name",
                          "use 3-63 lower-case letters, digits, '.' and '-'")
    return bucket


def _parse_keep(s: Mapping[str, str]) -> dict[Periodicity, int]:
    keep = dict(DEFAULT_KEEP)
    for p in Periodicity:
        name = f"STREAMER_KEEP_{p.name}"
        if s.get(name):
            keep[p] = parse_int(name, s[name], 1)
    return keep


def parse_config(s: Mapping[str, str]) -> Config:
    """Build the frozen Config from merged settings, or raise ConfigError."""
    regions = parse_regions(s)
    n = len(regions)
    bucket = _parse_bucket(s)
    raw_quorum = s.get("STREAMER_QUORUM", "1").strip()
    quorum = 0 if raw_quorum.lower() == "all" else parse_int("STREAMER_QUORUM", raw_quorum)
    if quorum > n:
        raise ConfigError(f"STREAMER_QUORUM={quorum} exceeds the {n} configured regions",
                          f"set it between 1 and {n}")
    compression, level, auto = parse_compression(s)
    budget, threads = parse_memory(s)
    keep = _parse_keep(s)
    excludes = parse_excludes([s.get("EXCLUDE_FROM_BACKUP", ""), s.get("DIRECTORIES_TO_MOUNT", "")])
    layout = parse_choice("STREAMER_LAYOUT", s.get("STREAMER_LAYOUT", "streamer"), ("streamer", "adt"))
    lock_days, lock_mode = parse_object_lock(s)
    database = parse_database(s)
    stall = parse_float("STREAMER_STALL_TIMEOUT", s.get("STREAMER_STALL_TIMEOUT", "300"))
    in_flight = parse_int("STREAMER_PARTS_IN_FLIGHT", s.get("STREAMER_PARTS_IN_FLIGHT", "4"), 1)
    bwlimit, min_part_rate = parse_rates(s, slots(n, 1 if database.engine == "none" else 2,
                                                  in_flight), stall)

    return Config(
        regions=regions,
        bucket=bucket,
        webroot=Path(s.get("STREAMER_WEBROOT", "") or "/var/www/html"),
        excludes=excludes,
        persist_assets=parse_bool("PERSIST_ASSETS_TO_DATASTORE",
                                  s.get("PERSIST_ASSETS_TO_DATASTORE", "0")),
        database=database,
        memory_budget=budget,
        compression=compression,
        compression_level=level,
        compression_auto=auto,
        compression_threads=threads,
        quorum=quorum,
        keep=keep,
        stall_timeout=stall,
        layout=layout,  # type: ignore[arg-type]
        checksum=parse_choice("STREAMER_CHECKSUM", s.get("STREAMER_CHECKSUM", "auto"),
                              ("auto", "sha256", "md5", "crc32")),  # type: ignore[arg-type]
        parts_in_flight=in_flight,
        part_retries=parse_int("STREAMER_PART_RETRIES", s.get("STREAMER_PART_RETRIES", "5"), 1),
        request_timeout=parse_float("STREAMER_REQUEST_TIMEOUT", s.get("STREAMER_REQUEST_TIMEOUT", "30")),
        min_part_rate=min_part_rate,
        bwlimit=bwlimit,
        nice=parse_nice(s.get("STREAMER_NICE", "off")),
        early_start=parse_choice("STREAMER_EARLY_START", s.get("STREAMER_EARLY_START", "on"),
                                 ("on", "off")) == "on",
        lag_limit=parse_duration("STREAMER_LAG_LIMIT", s.get("STREAMER_LAG_LIMIT", "300")),
        progress_interval=parse_float("STREAMER_PROGRESS_INTERVAL",
                                      s.get("STREAMER_PROGRESS_INTERVAL", "5")),
        website_url=s.get("WEBSITE_URL", ""),
        website_name=s.get("WEBSITE_NAME", ""),
        encryption=parse_encryption(s, layout),
        assets=parse_assets(s),
        object_lock_days=lock_days,
        object_lock_mode=lock_mode,
        prune=parse_prune(s),
    )
