"""STREAMER_CHECKSUM=auto: the cheapest checksum each region verifies.

Per region, once: ``probe_checksums`` (store/integrity.py) sends UploadPart
with each CRC's right and then a deliberately wrong value into an upload it
aborts (no object is written, so Object Lock has nothing to keep).  A CRC the
server rejects when wrong is *verified*; the region's parts then carry the
cheapest such (``digests.CRCS``: CRC32C), else Content-MD5.

The answer is cached per endpoint URL for ``CACHE_TTL`` in
``$XDG_CACHE_HOME/streamer/integrity.json`` (``~/.cache/streamer`` without
it): the endpoint, the algorithms verified and when it was probed -- no
bucket, key or credential.  A cache that cannot be read or written only costs
a probe; a probe that fails or takes longer than ``PROBE_LIMIT`` falls back to
Content-MD5 for this run, uncached (docs/ARCHITECTURE.md, "Integrity").
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio

from streamer.digests import CRCS
from streamer.errors import StoreFailure
from streamer.store.base import ObjectStore
from streamer.store.integrity import probe_checksums

CACHE_TTL = timedelta(days=7)
PROBE_LIMIT = 30.0  # seconds at most for one region's probe
CACHE_NAME = "integrity.json"
PROBE_PREFIX = "streamer-probe/"  # the probe's upload key prefix where no series is given


@dataclass(frozen=True)
class Negotiated:
    """What a region verifies of the CRCs, and since when it is known."""

    endpoint: str
    verified: frozenset[str]
    probed: datetime | None  # None: the probe failed, nothing is known
    cached: bool = False

    @property
    def choice(self) -> str:
        """The part checksum: the cheapest verified CRC, else Content-MD5."""
        return next((a for a in CRCS if a in self.verified), "md5")

    def describe(self) -> str:
        if self.probed is None:
            return "md5 (the probe failed: Content-MD5 this run)"
        verified = ", ".join(sorted(self.verified)) or "none of " + ", ".join(CRCS)
        source = "cached" if self.cached else "probed"
        return f"{self.choice} (verifies {verified}; {source} {self.probed:%Y-%m-%d %H:%M} UTC)"


def cache_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the answers are kept (the XDG base directory convention)."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or "~").expanduser() / ".cache")
    return Path(base) / "streamer" / CACHE_NAME


def read_cached(path: Path, endpoint: str, now: datetime) -> Negotiated | None:
    """The endpoint's answer if the cache holds one younger than ``CACHE_TTL``."""
    try:
        entry = json.loads(path.read_text())[endpoint]
        probed = datetime.fromisoformat(entry["probed"])
        verified = frozenset(str(a) for a in entry["verified"] if a in CRCS)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not timedelta(0) <= now - probed < CACHE_TTL:
        return None
    return Negotiated(endpoint, verified, probed, cached=True)


_WRITING = threading.Lock()  # the regions' probes end at once: one read-modify-write at a time


def write_cached(path: Path, answer: Negotiated) -> None:
    """Add ``answer`` to the cache (atomically; best effort).  Another process
    writing at the same moment may drop this answer: it costs a probe."""
    assert answer.probed is not None
    with _WRITING, contextlib.suppress(OSError, ValueError):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            entries = json.loads(path.read_text())
            entries = entries if isinstance(entries, dict) else {}
        except (OSError, ValueError):
            entries = {}
        entries[answer.endpoint] = {"verified": sorted(answer.verified),
                                    "probed": answer.probed.isoformat()}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)


async def negotiate(store: ObjectStore, path: Path | None = None,
                    now: datetime | None = None, prefix: str = PROBE_PREFIX) -> Negotiated:
    """Find (or recall) what ``store``'s region verifies and set its
    ``part_checksum`` to the cheapest; never raises for a failing region."""
    path = cache_path() if path is None else path
    now = now or datetime.now(UTC)
    answer = read_cached(path, store.endpoint, now)
    if answer is None:
        try:
            with anyio.fail_after(PROBE_LIMIT):
                caps = await probe_checksums(store, prefix, operations=("UploadPart",),
                                             algorithms=CRCS)
            answer = Negotiated(store.endpoint, caps.verified("UploadPart"), now)
            await anyio.to_thread.run_sync(write_cached, path, answer)
        except (StoreFailure, TimeoutError):
            answer = Negotiated(store.endpoint, frozenset(), None)
    store.part_checksum = answer.choice
    return answer


async def negotiate_all(stores: list[ObjectStore], path: Path | None = None) -> list[Negotiated]:
    """``negotiate`` every region at once; answers in the stores' order."""
    out: list[Negotiated | None] = [None] * len(stores)

    async def one(i: int, store: ObjectStore) -> None:
        out[i] = await negotiate(store, path)

    async with anyio.create_task_group() as tg:
        for i, store in enumerate(stores):
            tg.start_soon(one, i, store)
    return [a for a in out if a is not None]
