"""Helpers of the fault tests (docs/RELIABILITY.md): regions behind fault proxies,
a random webroot, and what a finished run left in each region."""

from __future__ import annotations

import contextlib
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path

from faultproxy import FaultProxy
from s3util import RegionsEnv, run_streamer

MiB = 1024 * 1024


@contextlib.contextmanager
def proxies(regions: RegionsEnv, indexes: tuple[int, ...], seed: int) -> Iterator[dict[int, FaultProxy]]:
    """A fault proxy (seed + index) in front of each region in ``indexes``."""
    with contextlib.ExitStack() as stack:
        yield {i: stack.enter_context(FaultProxy(upstream=regions.endpoints[i - 1], seed=seed + i))
               for i in indexes}


def host_base(regions: RegionsEnv, replaced: dict[int, str]) -> str:
    """S3_HOST_BASE with some regions' endpoints replaced (by a proxy's, or a bad one)."""
    return "|".join(replaced.get(i, e) for i, e in enumerate(regions.endpoints, start=1))


def via(regions: RegionsEnv, px: dict[int, FaultProxy]) -> str:
    return host_base(regions, {i: p.endpoint for i, p in px.items()})


def random_webroot(root: Path, total: int, seed: int = 0) -> None:
    """Incompressible files, ``total`` bytes in files of 8 MiB at most."""
    root.mkdir(parents=True)
    rng = random.Random(seed)
    left, i = total, 0
    while left > 0:
        size = min(left, 8 * MiB)
        (root / f"media-{i:03}.bin").write_bytes(rng.randbytes(size))
        left, i = left - size, i + 1
    (root / "index.php").write_text("<?php echo 1; ?>\n")


def committed(regions: RegionsEnv, bucket: str, build: str) -> list[int]:
    """The regions holding a manifest (a committed run) of ``build``."""
    return [i for i in range(1, len(regions.endpoints) + 1)
            if any(k.startswith(f"{build}/") and k.endswith("/manifest.json")
                   for k in regions.keys(i, bucket))]


def leftover_uploads(regions: RegionsEnv, bucket: str, indexes: tuple[int, ...] = (1, 2, 3)) -> list[str]:
    return [f"region {i}: {k}" for i in indexes for k in regions.uploads(i, bucket)]


def verified(env: dict[str, str], regions: RegionsEnv, periodicity: str, build: str) -> dict[int, str]:
    """``streamer verify`` against the real regions: region -> "ok" or "BAD"."""
    run = run_streamer(["verify", periodicity, build], {**env, "S3_HOST_BASE": host_base(regions, {})})
    out = {int(m.group(1)): m.group(2) for m in re.finditer(r"^region (\d+) \([^)]*\): (ok|BAD)", run.stdout,
                                                          re.M)}
    assert (run.code == 0) == (set(out.values()) == {"ok"}), run.stdout + run.stderr
    return out


def listed_runs(env: dict[str, str], regions: RegionsEnv) -> dict[int, list[str]]:
    """``streamer list --json``: region -> the runs it shows."""
    run = run_streamer(["list", "--json"], {**env, "S3_HOST_BASE": host_base(regions, {})})
    assert run.code == 0, run.stdout + run.stderr
    doc = json.loads(run.stdout)
    return {int(r["index"]): r["backups"] for r in doc["regions"]}


def no_traceback(text: str) -> bool:
    return "Traceback" not in text and "internal error" not in text


def env_for(base: dict[str, str], root: Path, host: str, **settings: str) -> dict[str, str]:
    return {**base, "STREAMER_WEBROOT": str(root), "S3_HOST_BASE": host, **settings}


def region_lines(stdout: str, index: int) -> list[str]:
    return [ln for ln in stdout.splitlines() if ln.startswith(f"region {index} (")]

