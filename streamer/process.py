"""Sources: the subprocesses whose stdout is an artifact's byte stream.

A ``ProcessSource`` says how to start one (argv, extra environment, which exit
codes are warnings).  Secrets travel in ``env`` (merged onto the inherited
environment) or in files, never in ``argv``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProcessSource:
    name: str  # "webroot" or "database"
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    cwd: str | None = None
    # Exit codes that still produce a complete stream but deserve a warning in
    # the manifest (GNU tar 1: "file changed as we read it").
    warn_exit_codes: frozenset[int] = frozenset()
    # Human description of a warning exit code, recorded in the manifest.
    warn_text: str = ""
    # The source writes a listing, one line per member, to the file
    # descriptor that replaces "{listing_fd}" in argv; its lines are counted.
    listing: bool = False
