"""``streamer config check``: the effective config and a probe of every region and the database.

Each probe yields ``Finding``s; any finding that is not ok makes the command
exit 2.  Nothing is uploaded; with ``create_buckets`` a missing bucket is
created, as the first backup would (with Object Lock enabled when
STREAMER_OBJECT_LOCK_DAYS is set).  Every region's bucket reports whether it
has Object Lock; with STREAMER_OBJECT_LOCK_DAYS set, one without it is a
problem (docs/SECURITY.md).  Under STREAMER_CHECKSUM=auto each region's part
checksum is negotiated (store/negotiate.py: the cached answer, or a probe of a
few parts into an upload it aborts) and shown with what the region verifies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import anyio

from streamer.db import prepare_dump
from streamer.errors import EXIT_OK, EXIT_USAGE, PreflightError, StoreFailure
from streamer.settings.config import Config
from streamer.store.base import ObjectStore
from streamer.store.negotiate import negotiate
from streamer.store.s3 import open_stores

MAX_SKEW = 300.0  # seconds; SigV4 rejects requests beyond 15 minutes


@dataclass(frozen=True)
class Finding:
    subject: str  # "region 1 (host)" or "database"
    check: str
    ok: bool
    detail: str


_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied",
                     "InvalidToken", "AuthorizationHeaderMalformed"}


async def probe_region(client: ObjectStore, create_buckets: bool,
                       lock_days: int = 0, checksum: str = "md5") -> list[Finding]:
    who = client.label
    out: list[Finding] = []
    try:
        probe = await client.probe(policy=client.policy.tries(2))
    except StoreFailure as f:
        if f.transient or not f.status:
            return [Finding(who, "reachable", False, f"{f.detail} (check S3_HOST_BASE)")]
        out.append(Finding(who, "reachable", True, f"HTTP {f.status}"))
        if f.code in _CREDENTIAL_CODES or f.status == 403:
            out.append(Finding(who, "credentials", False,
                               f"{f.code or f.status}: check S3_ACCESS_KEY / S3_SECRET_KEY "
                               f"for region {client.index}"))
            return out
        out.append(Finding(who, "credentials", False, f.detail))
        return out
    out.append(Finding(who, "reachable", True, client.endpoint))
    out.append(Finding(who, "credentials", True, "accepted"))
    if probe.server_time is not None:
        skew = (probe.server_time - datetime.now(UTC)).total_seconds()
        out.append(Finding(who, "clock skew", abs(skew) <= MAX_SKEW,
                           f"{skew:+.0f} s" + ("" if abs(skew) <= MAX_SKEW else
                                               " (fix the host's clock: NTP)")))
    if client.bucket in probe.buckets:
        out.append(Finding(who, "bucket", True, f"{client.bucket} present"))
    elif create_buckets:
        try:
            await client.ensure_bucket(object_lock=lock_days > 0)
            out.append(Finding(who, "bucket", True, f"{client.bucket} created"
                               + (" with Object Lock" if lock_days else "")))
        except StoreFailure as f:
            out.append(Finding(who, "bucket", False, f"cannot create {client.bucket}: {f.detail}"))
            return out
    else:
        out.append(Finding(who, "bucket", False,
                           f"{client.bucket} missing (the first backup creates it; "
                           "or run `streamer config check --create-buckets`)"))
        return out
    out.append(await probe_object_lock(client, lock_days))
    if checksum == "auto":
        answer = await negotiate(client)
        out.append(Finding(who, "checksum", answer.probed is not None, answer.describe()))
    else:
        out.append(Finding(who, "checksum", True, f"{checksum} (STREAMER_CHECKSUM)"))
    return out


async def probe_object_lock(client: ObjectStore, lock_days: int) -> Finding:
    """Whether the bucket has Object Lock; a problem only where the settings
    ask for it (STREAMER_OBJECT_LOCK_DAYS)."""
    try:
        lock = await client.bucket_lock(policy=client.policy.tries(2))
    except StoreFailure as f:
        return Finding(client.label, "object lock", not lock_days, f"unknown: {f.detail}")
    if not lock.enabled:
        return Finding(client.label, "object lock", not lock_days, "not enabled" + (
            " but STREAMER_OBJECT_LOCK_DAYS is set (a bucket gets it only when created: "
            "use a new bucket)" if lock_days else ""))
    detail = "enabled"
    if lock.default_rule:
        detail += (f", default retention {lock.default_rule} (the lock object gets it too; "
                   "streamer sets each run's own: remove the default rule)")
    if not lock_days:
        detail += "; STREAMER_OBJECT_LOCK_DAYS is not set, so runs are not retained"
    return Finding(client.label, "object lock", True, detail)


async def probe_database(config: Config) -> list[Finding]:
    if config.database.engine == "none":
        return [Finding("database", "configured", True, "DATABASE_INSTALLATION_TYPE=None")]
    try:
        async with prepare_dump(config.database) as dump:
            info = dump.info
            return [Finding("database", "reachable", True,
                            f"{info.engine} {info.server_version}, database {info.database}"),
                    Finding("database", "tables", True,
                            f"{len(info.tables)} tables, {sum(info.tables.values())} rows")]
    except PreflightError as e:
        return [Finding("database", "preflight", False, str(e))]


async def run_checks(config: Config, clients: list[ObjectStore],
                     create_buckets: bool = False) -> list[Finding]:
    results: dict[int, list[Finding]] = {}

    async def one(i: int, client: ObjectStore) -> None:
        results[i] = await probe_region(client, create_buckets, config.object_lock_days,
                                        config.checksum)

    async def db() -> None:
        results[len(clients)] = await probe_database(config)

    async with anyio.create_task_group() as tg:
        for i, client in enumerate(clients):
            tg.start_soon(one, i, client)
        tg.start_soon(db)
    return [f for i in sorted(results) for f in results[i]]


@dataclass(frozen=True)
class CheckResult:
    config: dict[str, object]  # the effective configuration, secrets masked
    findings: list[Finding]

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]

    @property
    def exit_code(self) -> int:
        return EXIT_USAGE if self.problems else EXIT_OK


async def config_check(config: Config, create_buckets: bool = False) -> CheckResult:
    """The effective config (secrets masked) and a probe of each region and the database."""
    async with open_stores(config) as clients:
        findings = await run_checks(config, clients, create_buckets)
    return CheckResult(config.describe(), findings)
