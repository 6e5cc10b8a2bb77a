"""Prometheus textfile-collector output (``--metrics-file PATH``).

One file serves every build and periodicity on a host: each write replaces
the series of this run's (build, periodicity) and keeps every other series it
finds in the existing file, so the hourly run does not erase the daily run's
last-success time.  Within this run's series the last-success and last-commit
times are kept when this run did not succeed.

The write is atomic (a temporary file in the same directory, fsync,
``os.replace``, fsync of the directory) and serialised between concurrent
runs by ``flock`` on a hidden ``.NAME.lock`` file beside it (node_exporter
reads only ``*.prom``).  A failed write raises ``MetricsWriteError``, which is
never a ``StreamerError``: it must not change the backup's exit code.

The old file is read with the small tolerant parser below (lines it does not
understand are dropped); ``prometheus_client`` is a test-only dependency.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

PREFIX = "streamer_"
LOCK_TIMEOUT = 10.0

# name -> help text; every metric is a gauge.
METRICS: dict[str, str] = {
    "streamer_last_success_timestamp_seconds":
        "End time of the last run that committed in every region (exit 0), Unix seconds.",
    "streamer_last_commit_timestamp_seconds":
        "End time of the last run that committed in at least the quorum of regions "
        "(exit 0 or 3), Unix seconds.",
    "streamer_last_run_timestamp_seconds": "End time of the last run, whatever its result, Unix seconds.",
    "streamer_last_run_start_timestamp_seconds": "Start time of the last run, Unix seconds.",
    "streamer_last_run_duration_seconds": "Wall time of the last run, seconds.",
    "streamer_last_run_exit_code":
        "Exit code of the last run: 0 ok, 1 failed, 2 usage/config, 3 partial, 4 skipped (lock), "
        "130 interrupted.",
    "streamer_last_run_source_bytes": "Uncompressed bytes read from all sources in the last run.",
    "streamer_last_run_stored_bytes": "Compressed bytes stored per region in the last run.",
    "streamer_last_run_regions_committed": "Regions in which the last run committed.",
    "streamer_last_run_regions_failed": "Regions in which the last run did not commit.",
    "streamer_last_run_region_committed":
        "1 if the last run committed in this region, else 0.",
    "streamer_last_run_memory_peak_bytes": "Peak bytes held under the memory budget in the last run.",
    "streamer_memory_budget_bytes": "The memory budget (STREAMER_MEMORY_BUDGET) of the last run.",
}
# Kept from the old file for this run's series when this run did not set them.
STICKY = ("streamer_last_success_timestamp_seconds", "streamer_last_commit_timestamp_seconds")


class MetricsWriteError(Exception):
    """The metrics file could not be written; report it, keep the exit code."""


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: str

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)


# ------------------------------------------------------------------ parsing

_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?\s*$")
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
_COMMENT_RE = re.compile(r"^#\s+(HELP|TYPE)\s+([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\s+(.*))?$")


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _parse_labels(text: str) -> tuple[tuple[str, str], ...] | None:
    labels: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _LABEL_RE.match(text, pos)
        if not m or m.end() == pos:
            return None
        labels.append((m.group(1), _unescape(m.group(2))))
        pos = m.end()
    return tuple(sorted(labels))


def parse(text: str) -> tuple[list[Sample], dict[str, tuple[str, str]]]:
    """Samples and (help, type) per family of a text exposition; bad lines are skipped."""
    samples: list[Sample] = []
    meta: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            m = _COMMENT_RE.match(line)
            if m:
                meta.setdefault(m.group(2), {})[m.group(1)] = m.group(3) or ""
            continue
        m = _SAMPLE_RE.match(line)
        if not m:
            continue
        labels = _parse_labels(m.group(2) or "")
        if labels is None:
            continue
        try:
            float(m.group(3))
        except ValueError:
            continue
        samples.append(Sample(m.group(1), labels, m.group(3)))
    families = {name: (kv.get("HELP", ""), kv.get("TYPE", "untyped")) for name, kv in meta.items()}
    return samples, families


# ------------------------------------------------------------------ rendering

def _num(value: float | int) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(round(value, 3))


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def samples_for(summary: Mapping[str, Any]) -> list[Sample]:
    """This run's samples, from a summary (see streamer.report.summary)."""
    base = (("build", str(summary["build"])), ("periodicity", str(summary["periodicity"])))
    exit_code = int(summary["exit_code"])
    ended = _epoch(summary["ended"])
    totals = summary.get("totals") or {}
    memory = summary.get("memory") or {}
    values: list[tuple[str, float | int]] = [
        ("streamer_last_run_timestamp_seconds", ended),
        ("streamer_last_run_start_timestamp_seconds", _epoch(summary["started"])),
        ("streamer_last_run_duration_seconds", float(summary["duration_seconds"])),
        ("streamer_last_run_exit_code", exit_code),
        ("streamer_last_run_source_bytes", int(totals.get("source_bytes") or 0)),
        ("streamer_last_run_stored_bytes", int(totals.get("stored_bytes") or 0)),
        ("streamer_last_run_regions_committed", int(summary.get("regions_committed") or 0)),
        ("streamer_last_run_regions_failed", int(summary.get("regions_failed") or 0)),
        ("streamer_last_run_memory_peak_bytes", int(memory.get("peak_bytes") or 0)),
    ]
    if memory.get("budget_bytes"):
        values.append(("streamer_memory_budget_bytes", int(memory["budget_bytes"])))
    if exit_code == 0:
        values.append(("streamer_last_success_timestamp_seconds", ended))
    if exit_code in (0, 3):
        values.append(("streamer_last_commit_timestamp_seconds", ended))
    out = [Sample(name, base, _num(v)) for name, v in values]
    for region in summary.get("regions") or []:
        labels = tuple(sorted((*base, ("region", str(region["index"])),
                               ("endpoint", str(region["endpoint"])))))
        out.append(Sample("streamer_last_run_region_committed", labels,
                          "1" if region["status"] == "committed" else "0"))
    return out


def render(summary: Mapping[str, Any], existing: str = "") -> str:
    """The new file's text: this run's series plus every other series in ``existing``."""
    build, periodicity = str(summary["build"]), str(summary["periodicity"])
    old, families = parse(existing)
    new = samples_for(summary)
    set_here = {s.name for s in new}

    def ours(s: Sample) -> bool:
        return s.label("build") == build and s.label("periodicity") == periodicity

    kept = [s for s in old if s.name.startswith(PREFIX)
            and (not ours(s) or (s.name in STICKY and s.name not in set_here))]
    by_name: dict[str, dict[tuple[tuple[str, str], ...], str]] = {}
    for s in [*kept, *new]:  # new wins over a duplicate old sample
        by_name.setdefault(s.name, {})[s.labels] = s.value
    names = [n for n in METRICS if n in by_name] + sorted(n for n in by_name if n not in METRICS)
    lines: list[str] = []
    for name in names:
        help_text, kind = (METRICS[name], "gauge") if name in METRICS else families.get(
            name, ("", "untyped"))
        lines.append(f"# HELP {name} {help_text}".rstrip())
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in sorted(by_name[name].items()):
            body = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(f"{name}{{{body}}} {value}" if body else f"{name} {value}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ writing

@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock_path = path.with_name(f".{path.name}.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise MetricsWriteError(
                        f"metrics file {path}: another process holds {lock_path} "
                        f"for more than {LOCK_TIMEOUT:.0f} s") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def write_metrics(path: Path, summary: Mapping[str, Any]) -> None:
    """Merge this run's metrics into ``path`` atomically; raise MetricsWriteError on failure."""
    path = Path(path)
    tmp: str | None = None
    try:
        with _locked(path):
            try:
                existing = path.read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:
                existing = ""
            text = render(summary, existing)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fchmod(f.fileno(), 0o644)
                os.fsync(f.fileno())
            os.replace(tmp, path)
            tmp = None
            dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except OSError as e:
        raise MetricsWriteError(f"cannot write metrics file {path}: "
                                f"{e.strerror or e}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise MetricsWriteError(f"cannot write metrics file {path}: bad summary ({e!r})") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def try_write_metrics(path: Path, summary: Mapping[str, Any]) -> str | None:
    """``write_metrics``, returning a one-line warning instead of raising."""
    try:
        write_metrics(path, summary)
    except MetricsWriteError as e:
        return str(e)
    return None
