"""The lock's rules, free of I/O: who holds it, when a holder is stale, who won.

``Holder`` is what a lock object contains; ``judge`` says whether an existing
holder must be respected or may be taken over; ``tally`` decides a round of
claims across the regions and ``still_held`` whether renewals still show a
majority.  ``new_holder`` and ``local_host`` read this machine's identity
(host name, boot id, process start time) for the holder.  The I/O that carries
these decisions out is ``lock.BackupLock``; the protocol is described there.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum


def utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Holder:
    """The lock object's body: who holds the lock, and until when."""

    token: str  # unique per run: tells our own lock from another's
    host: str
    pid: int
    boot_id: str  # /proc/sys/kernel/random/boot_id: same host name *and* same boot
    pid_start: int  # the process's start time in clock ticks since boot (pid reuse)
    run: str  # the run's stamp
    acquired: datetime
    expires: datetime

    def encode(self) -> bytes:
        return json.dumps({
            "token": self.token, "host": self.host, "pid": self.pid, "boot_id": self.boot_id,
            "pid_start": self.pid_start, "run": self.run,
            "acquired": _iso(self.acquired), "expires": _iso(self.expires),
        }, sort_keys=True).encode()

    @staticmethod
    def decode(data: bytes) -> Holder | None:
        """The holder, or None if the body is not a lock we can read."""
        try:
            v = json.loads(data)
            return Holder(str(v["token"]), str(v["host"]), int(v["pid"]), str(v.get("boot_id", "")),
                          int(v.get("pid_start", 0)), str(v.get("run", "")),
                          _parse_time(v["acquired"]), _parse_time(v["expires"]))
        except (ValueError, KeyError, TypeError):
            return None

    @property
    def released(self) -> bool:
        """A lock given back by overwriting it (keys without the delete right,
        housekeeping/lock.py): its lease ends where it began."""
        return self.expires <= self.acquired

    def describe(self) -> str:
        return (f"{self.host} pid {self.pid} (run {self.run or '?'}) until "
                f"{self.expires.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC")


def _parse_time(text: object) -> datetime:
    when = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class LocalHost:
    """This machine, for telling whether a holder on it has died."""

    host: str
    boot_id: str
    alive: Callable[[int, int], bool]  # (pid, pid_start) -> is that process running

    def same_machine(self, holder: Holder) -> bool:
        return bool(self.boot_id) and holder.host == self.host and holder.boot_id == self.boot_id


class Verdict(Enum):
    HELD = "held"  # a live lease: keep off
    STALE = "stale"  # may be taken over


def judge(holder: Holder | None, now: datetime, here: LocalHost) -> Verdict:
    """Whether an existing lock may be taken over (pure, given ``here.alive``)."""
    if holder is None:
        return Verdict.STALE  # not a lock anyone can renew
    if holder.expires <= now:
        return Verdict.STALE
    if here.same_machine(holder) and not here.alive(holder.pid, holder.pid_start):
        return Verdict.STALE  # its process died on this machine: it will never renew
    return Verdict.HELD


def majority(regions: int) -> int:
    return regions // 2 + 1


class ClaimState(Enum):
    ACQUIRED = "acquired"
    HELD = "held"  # held by another run
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming the lock in one region."""

    index: int
    state: ClaimState
    etag: str = ""
    holder: Holder | None = None  # the other holder (HELD) or the stale one taken over
    error: str = ""


class Outcome(Enum):
    ACQUIRED = "acquired"  # a majority is ours, or every region that answered
    HELD = "held"  # another run holds copies: skip (exit 4)
    SPLIT = "split"  # nobody has a majority, but we hold some: give back, retry
    UNREACHABLE = "unreachable"  # no region answered (exit 1)


def tally(claims: Sequence[Claim], regions: int) -> Outcome:
    """What the claims of one round add up to (pure).

    The lock saves duplicate work; it must never stop a backup the quorum
    allows.  So regions that did not answer do not count against us: a run
    that took every region that answered holds the lock, even if that is one
    region of three.  Another run's copy anywhere we can see means HELD (exit
    4), unless we hold a majority of all regions (we won the race).  When both
    we and others hold copies and nobody has a majority, the regions are split:
    give back and retry.  Copies held by others count per holder: three runs
    that took one region each have split the regions, although together the
    others outnumber each of them.  Two runs that share no reachable region
    can both hold the lock: at worst a duplicate backup (each run has its own
    stamp), never a corrupt or lost one."""
    ours = sum(1 for c in claims if c.state is ClaimState.ACQUIRED)
    per_holder = Counter(c.holder.token if c.holder else "" for c in claims
                         if c.state is ClaimState.HELD)
    held = sum(per_holder.values())
    need = majority(regions)
    if ours >= need:
        return Outcome.ACQUIRED
    if not held:
        return Outcome.ACQUIRED if ours else Outcome.UNREACHABLE
    if not ours or max(per_holder.values()) >= need:
        return Outcome.HELD
    return Outcome.SPLIT


def still_held(held: int, taken_over: int) -> bool:
    """Whether a run still holds its lock after a renewal round (pure): yes
    while any region still holds our copy, or none showed another holder.
    Regions that stop answering do not take the lock away (unknown is not
    lost); only every copy taken over by another run does."""
    return held > 0 or taken_over == 0


# ---------------------------------------------------------------- this machine


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def process_start(pid: int) -> int:
    """A process's start time (clock ticks since boot), 0 if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0
    return int(stat[stat.rindex(")") + 2:].split()[19])


def _alive(pid: int, start: int) -> bool:
    now_start = process_start(pid)
    if now_start == 0:
        return False
    return start == 0 or now_start == start


def local_host() -> LocalHost:
    return LocalHost(socket.gethostname(), _boot_id(), _alive)


def new_holder(run: str, lease: float, now: datetime | None = None) -> Holder:
    now = now or utcnow()
    pid = os.getpid()
    return Holder(uuid.uuid4().hex, socket.gethostname(), pid, _boot_id(), process_start(pid), run,
                  now, now + timedelta(seconds=lease))


# ---------------------------------------------------------------- the lock
