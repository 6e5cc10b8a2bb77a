"""The webroot source: a GNU tar stream of the webroot, minus the excludes."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from streamer.errors import ConfigError
from streamer.process import ProcessSource

MOUNTINFO = Path("/proc/self/mountinfo")


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040)."""
    out, i = [], 0
    while i < len(field):
        code = field[i + 1:i + 4]
        if field[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_points_below(webroot: Path, mountinfo: str) -> list[str]:
    """Mount points strictly below ``webroot``, relative to it (pure)."""
    root = os.path.normpath(str(webroot))
    found: list[str] = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        point = os.path.normpath(_unescape(fields[4]))
        if point != root and point.startswith(root.rstrip("/") + "/"):
            rel = os.path.relpath(point, root)
            if rel not in found:
                found.append(rel)
    return found


def tar_argv(webroot: Path, excludes: Iterable[str]) -> tuple[str, ...]:
    """GNU tar writing an uncompressed archive of ``webroot`` to stdout.

    Member names are ``./path``; each exclude is anchored at the webroot and
    taken literally (no wildcards), so ``cache`` excludes ``./cache`` and all
    below it but not ``./a/cache``.  The verbose listing goes to a pipe so that
    members can be counted without mixing with warnings on stderr.
    """
    argv = ["tar", "--create", "--file=-", f"--directory={webroot}", "--numeric-owner",
            "--verbose", "--index-file=/dev/fd/{listing_fd}", "--anchored", "--no-wildcards"]
    for rel in excludes:
        argv.append(f"--exclude=./{rel}")
    argv.append(".")
    return tuple(argv)


def webroot_source(webroot: Path, excludes: tuple[str, ...], persist_assets: bool,
                   mountinfo: str | None = None) -> tuple[ProcessSource, tuple[str, ...]]:
    """The tar source and the full list of excludes it applies."""
    if not webroot.is_dir():
        raise ConfigError(f"webroot {webroot} is not a directory", "set STREAMER_WEBROOT")
    all_excludes = list(excludes)
    if persist_assets:
        text = mountinfo if mountinfo is not None else MOUNTINFO.read_text()
        for rel in mount_points_below(webroot.resolve(), text):
            if rel not in all_excludes:
                all_excludes.append(rel)
    source = ProcessSource(
        name="webroot",
        argv=tar_argv(webroot, all_excludes),
        env={"LC_ALL": "C"},
        warn_exit_codes=frozenset({1}),
        warn_text="tar: some files changed while they were read",
        listing=True,
    )
    return source, tuple(all_excludes)
