"""The machine-readable run summary (``--json``, hooks' stdin, metrics), pure.

``summarize`` turns a finished ``BackupResult`` into one JSON-able dict;
``summarize_failure`` builds the same shape for a run that ended before a
``BackupResult`` existed (configuration error, preflight error, lock held,
interrupted).  Both are described by ``docs/summary.schema.json`` and
documented in ``docs/summary.md``.

No secrets: the summary holds what was stored and how, never credentials.
Endpoints lose any ``user:password@`` part, and every string can be scrubbed
of known secret values with ``redact``.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from streamer import __version__
from streamer.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    ConfigError,
)
from streamer.model import BackupResult, Periodicity

SCHEMA_VERSION = 1
SCHEMA_ID = "https://streamer.invalid/schemas/summary-v1.json"

# exit code -> summary "status" (the exit codes: README, "Exit codes")
STATUS_BY_EXIT: Mapping[int, str] = {
    EXIT_OK: "committed",
    EXIT_FAILED: "failed",
    EXIT_USAGE: "usage_error",
    EXIT_PARTIAL: "partial",
    EXIT_LOCKED: "skipped",
    EXIT_INTERRUPTED: "interrupted",
}

MB = 1_000_000  # throughput is in MB/s, decimal, as `streamer` prints it

_USERINFO_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@")


def status_for(exit_code: int) -> str:
    """The summary status of an exit code; any unknown code is "failed"."""
    return STATUS_BY_EXIT.get(exit_code, "failed")


def iso_utc(when: datetime) -> str:
    """``2024-05-01T02:30:07.123Z``: UTC, millisecond precision."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def safe_endpoint(endpoint: str) -> str:
    """The endpoint without any ``user:password@`` credentials in it."""
    return _USERINFO_RE.sub(r"\1", endpoint)


def _scrub(text: str | None, redact: tuple[str, ...]) -> str | None:
    if text is None:
        return None
    for secret in redact:
        text = text.replace(secret, "****")
    return text


def _secrets(redact: Iterable[str]) -> tuple[str, ...]:
    # Longest first, so a secret that contains another is masked whole; very
    # short values would mask ordinary words, so they are left alone.
    return tuple(sorted({s for s in redact if len(s) >= 4}, key=len, reverse=True))


def _periodicity(text: str) -> str:
    try:
        return Periodicity.parse(text).value
    except ConfigError:
        return text


def _rate(nbytes: int, seconds: float | None) -> float | None:
    if seconds is None or seconds <= 0:
        return None
    return round(nbytes / seconds / MB, 3)


def _base(*, exit_code: int, build: str, periodicity: str, stamp: str | None,
          started: datetime, ended: datetime, duration: float, error: str | None,
          host: str | None) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "streamer",
        "streamer_version": __version__,
        "command": "backup",
        "status": status_for(exit_code),
        "exit_code": exit_code,
        "build": build,
        "periodicity": _periodicity(periodicity),
        "stamp": stamp,
        "host": host if host is not None else socket.gethostname(),
        "started": iso_utc(started),
        "ended": iso_utc(ended),
        "duration_seconds": round(max(duration, 0.0), 3),
        "error": error,
        "warnings": [],
        "regions_total": 0,
        "regions_committed": 0,
        "regions_failed": 0,
        "regions": [],
        "artifacts": {},
        "totals": {"source_bytes": 0, "stored_bytes": 0, "parts": 0,
                   "stream_seconds": None, "throughput_mb_per_s": None},
        "memory": {"budget_bytes": None, "peak_bytes": None, "rss_peak_bytes": None},
    }


def summarize(result: BackupResult, *, exit_code: int, duration: float,
              rss_peak_bytes: int | None = None, redact: Iterable[str] = (),
              host: str | None = None) -> dict[str, Any]:
    """The JSON summary of a backup that produced a ``BackupResult``.

    ``exit_code`` is what the command returns (normally ``result.exit_code``);
    ``duration`` the wall time of the whole command in seconds.  Optional:
    ``rss_peak_bytes`` (e.g. ``ru_maxrss * 1024``), ``redact`` (secret values
    to mask in error strings), ``host`` (default: this host's name)."""
    secrets = _secrets(redact)
    error = result.error
    if error is None and exit_code not in (EXIT_OK, EXIT_PARTIAL):
        error = f"backup ended with exit code {exit_code}"
    out = _base(exit_code=exit_code, build=result.build, periodicity=result.periodicity,
                stamp=result.stamp, started=result.started,
                ended=max(result.ended, result.started), duration=duration,
                error=_scrub(error, secrets), host=host)
    out["warnings"] = [_scrub(w, secrets) for w in result.warnings]

    regions = _regions(result, secrets)
    out["regions"] = regions
    out["regions_total"] = len(regions)
    out["regions_committed"] = sum(1 for r in regions if r["status"] == "committed")
    out["regions_failed"] = len(regions) - out["regions_committed"]
    out["artifacts"], spans = _artifacts(result, secrets)

    stream_seconds = (max(e for _, e in spans) - min(s for s, _ in spans)) if spans else None
    source_total = sum(a.source_bytes for a in result.artifacts)
    out["totals"] = {
        "source_bytes": source_total,
        "stored_bytes": sum(a.stored_bytes for a in result.artifacts),
        "parts": sum(a.parts for a in result.artifacts),
        "stream_seconds": None if stream_seconds is None else round(stream_seconds, 3),
        "throughput_mb_per_s": _rate(source_total, stream_seconds),
    }
    out["memory"] = {
        "budget_bytes": result.budget_limit or None,
        "peak_bytes": result.budget_peak,
        "rss_peak_bytes": rss_peak_bytes,
    }
    return out


def _regions(result: BackupResult, secrets: tuple[str, ...]) -> list[dict[str, Any]]:
    """One entry per region: its status and how many parts it acknowledged."""
    regions: list[dict[str, Any]] = []
    for r in sorted(result.regions, key=lambda r: r.index):
        uploads = [a.uploads[r.index] for a in result.artifacts if r.index in a.uploads]
        regions.append({
            "index": r.index,
            "endpoint": _scrub(safe_endpoint(r.endpoint), secrets),
            "status": r.status,
            "error": _scrub(r.error, secrets),
            "parts_acknowledged": sum(u.parts_acknowledged for u in uploads),
            "retries": sum(u.retries for u in uploads),
        })
    return regions


def _artifacts(result: BackupResult, secrets: tuple[str, ...]
               ) -> tuple[dict[str, dict[str, Any]], list[tuple[float, float]]]:
    """One entry per artifact, and the (start, end) spans of those that streamed."""
    artifacts: dict[str, dict[str, Any]] = {}
    spans: list[tuple[float, float]] = []
    for art in result.artifacts:
        seconds: float | None = None
        if art.started and art.finished and art.finished >= art.started:
            seconds = art.finished - art.started
            spans.append((art.started, art.finished))
        artifacts[art.name] = {
            "key": art.key,
            "complete": bool(art.finished) and art.exit_code is not None,
            "source_exit_code": art.exit_code,
            "source_bytes": art.source_bytes,
            "stored_bytes": art.stored_bytes,
            "parts": art.parts,
            "part_size": art.max_part_size,
            "sha256": art.sha256 or None,
            "duration_seconds": None if seconds is None else round(seconds, 3),
            "throughput_mb_per_s": _rate(art.source_bytes, seconds),
            "warning": _scrub(art.warning, secrets),
            "compression_levels": None if art.levels is None else {
                **art.levels.to_json(), "threads": art.compress_threads},
        }
    return artifacts, spans


def summarize_failure(*, build: str, periodicity: str, exit_code: int, error: str,
                      duration: float, now: datetime | None = None,
                      memory_budget: int | None = None, rss_peak_bytes: int | None = None,
                      redact: Iterable[str] = (), host: str | None = None) -> dict[str, Any]:
    """The JSON summary of a run that ended before a ``BackupResult`` existed.

    For a configuration or preflight error (exit 2), a lock held by another
    host (4), too few regions at preflight (1) or an interrupt (130).
    ``build`` and ``periodicity`` are as given on the command line (they may be
    the invalid values that caused the error); ``now`` is the end time
    (default: the current time), and the start is ``now - duration``.
    Raises ValueError for exit codes 0 and 3, which only a BackupResult has."""
    if exit_code in (EXIT_OK, EXIT_PARTIAL):
        raise ValueError(f"exit code {exit_code} needs a BackupResult: use summarize()")
    ended = now or datetime.now(UTC)
    if ended.tzinfo is None:
        ended = ended.replace(tzinfo=UTC)
    started = ended - timedelta(seconds=max(duration, 0.0))
    out = _base(exit_code=exit_code, build=build, periodicity=periodicity, stamp=None,
                started=started, ended=ended, duration=duration,
                error=_scrub(error, _secrets(redact)), host=host)
    out["memory"]["budget_bytes"] = memory_budget
    out["memory"]["rss_peak_bytes"] = rss_peak_bytes
    return out
