"""The adaptive level's stream: one zstd frame per level, one valid stream.

A unit test over a pipe (the dial turned between parts), and a real backup
to the three regions whose level is made to change every few milliseconds,
restored by ``streamer restore`` and read by the stock ``zstd -d | tar -t``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import subprocess
from itertools import cycle
from pathlib import Path

import jsonschema
import pytest
from s3util import RegionsEnv, run_streamer
from treeutil import manifests_of, snapshot

import streamer.pipeline.fanout
from streamer.codec import LevelDial, decompressed
from streamer.model import Periodicity
from streamer.pipeline.adapt import LevelController, Window
from streamer.pipeline.chunker import ChunkFiller
from streamer.pipeline.run import run_backup
from streamer.report.summary import summarize
from streamer.settings.config import parse_config
from streamer.store.base import PartBody

MiB = 1024 * 1024
SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "summary.schema.json").read_text())
WORDS = [f"{w}_{i}" for i, w in enumerate("post user theme plugin cache query render hook".split())]


def text(rng: random.Random, size: int) -> bytes:
    """Compressible, PHP-ish text: lines drawn from a small vocabulary."""
    out = io.StringIO()
    while out.tell() < size:
        out.write(f"$this->{rng.choice(WORDS)}({rng.choice(WORDS)}, {rng.randrange(1000)});\n")
    return out.getvalue().encode()[:size]


def _source(path: Path, data: bytes) -> int:
    """A file's descriptor as the source (the producer reads any fd: a pipe in a backup)."""
    path.write_bytes(data)
    return os.open(path, os.O_RDONLY)


def test_a_new_level_starts_a_new_frame_and_the_frames_are_one_stream(tmp_path: Path) -> None:
    data = text(random.Random(1), 12 * MiB)
    dial = LevelDial(3)
    fd = _source(tmp_path / "source", data)
    filler = ChunkFiller(fd, "zstd", 3, dial=dial)
    stored = bytearray()
    for level in cycle([9, 1, 5, 3]):
        body = PartBody(256 * 1024)
        n = filler.fill(body)
        stored += body[:n]
        if filler.exhausted:
            break
        dial.level = level  # the next read from the source ends the frame
    os.close(fd)
    levels = filler.levels()
    assert levels.auto and levels.frames > 4
    assert (levels.low, levels.high) == (1, 9)
    assert filler.sha256.hexdigest() == hashlib.sha256(stored).hexdigest()
    assert decompressed(io.BytesIO(bytes(stored)), "zstd").read() == data
    stock = subprocess.run(["zstd", "-d", "-c"], input=bytes(stored), capture_output=True, check=True)
    assert stock.stdout == data


def test_a_fixed_level_is_one_frame(tmp_path: Path) -> None:
    fd = _source(tmp_path / "source", text(random.Random(2), MiB))
    filler = ChunkFiller(fd, "zstd", 7)
    while not filler.exhausted:
        filler.fill(PartBody(MiB))
    os.close(fd)
    levels = filler.levels()
    assert (levels.auto, levels.low, levels.high, levels.final, levels.frames) == (False, 7, 7, 7, 1)


@pytest.mark.anyio
async def test_a_multi_level_backup_restores_and_stock_zstd_reads_it(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "www"
    rng = random.Random(3)
    for d in range(8):
        (root / f"plugin-{d}").mkdir(parents=True)
        for f in range(40):
            (root / f"plugin-{d}" / f"file-{f}.php").write_bytes(text(rng, rng.randrange(20, 160) * 1024))
    levels = cycle([9, 1, 6, 2, 4])
    decided: list[int] = []

    def turning(self: LevelController, window: Window) -> int:
        decided.append(next(levels))
        return decided[-1]

    monkeypatch.setattr(LevelController, "decide", turning)
    monkeypatch.setattr(streamer.pipeline.fanout, "WINDOW", 0.01)
    config = parse_config({**regions.env, "STREAMER_BUCKET": bucket, "STREAMER_WEBROOT": str(root),
                           "STREAMER_COMPRESSION_THREADS": "0"})
    assert config.compression_auto
    result = await run_backup(config, Periodicity.HOURLY, "multi")
    assert result.exit_code == 0, result.error
    assert len(decided) >= 3
    [manifest] = manifests_of(regions, bucket, 2, "multi")
    art = manifest["artifacts"]["webroot"]
    auto = art["compression_auto"]
    assert auto["frames"] >= 3 and auto["min"] < auto["max"], auto
    assert art["compression_level"] == auto["final"]
    summary = json.loads(json.dumps(summarize(result, exit_code=0, duration=1.0)))
    jsonschema.validate(summary, SCHEMA)
    levels = summary["artifacts"]["webroot"]["compression_levels"]
    assert levels == {"auto": True, "min": auto["min"], "max": auto["max"], "final": auto["final"],
                      "frames": auto["frames"], "threads": 0}

    stored = regions.get(2, bucket, art["key"])
    listing = subprocess.run("zstd -d -c | tar -t", shell=True, input=stored, capture_output=True,
                             check=True).stdout.decode().split()
    assert len([name for name in listing if name.endswith(".php")]) == 8 * 40

    target = tmp_path / "restored"
    run = run_streamer(["restore", "hourly", "multi", "--webroot", str(target), "--region", "2"],
                       streamer_env)
    assert run.code == 0, run.stdout + run.stderr
    assert snapshot(target) == snapshot(root)
