"""Archive member checks for restore, pure: nothing is ever written outside the target.

``ArchiveGuard.admit`` is called for every member *before* anything of it is
written, in archive order, and raises IntegrityError for a member that:

* has an absolute name (``/etc/x``) or a ``..`` component (``../escape``);
* lies below a symlink (or a non-directory) that an earlier member created --
  the "symlink, then a file through it" attack: ``evil -> /etc`` followed by
  ``evil/passwd``;
* is a hard link whose target is not a regular file extracted earlier from the
  same archive (a link to ``/etc/shadow`` would make it readable in the webroot,
  and a later member could write through it);
* would replace a directory with a non-directory, or a non-directory with a
  directory (never produced by ``tar --create``);
* is a device node.

Symlinks themselves may point anywhere (a webroot may hold ``uploads ->
/mnt/assets``): creating one writes nothing outside the target, and no later
member may pass through it.  The extractor (``extract.py``) enforces the same
at the system-call level (every path is opened component by component with
``O_NOFOLLOW`` from the target's directory fd), so a bug here cannot escape
either.  Archives written by ``tar --create`` never trip these checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from streamer.errors import IntegrityError

Parts = tuple[str, ...]


class Kind(Enum):
    FILE = "file"
    DIR = "directory"
    SYMLINK = "symlink"
    HARDLINK = "hard link"
    FIFO = "fifo"
    DEVICE = "device"


def split_member_name(name: str, what: str = "member") -> Parts:
    """``./a//b/`` -> ("a", "b"); "." -> (); refuses absolute names and ``..``."""
    if name.startswith("/"):
        raise IntegrityError(f"unsafe archive {what} {name!r}: absolute path",
                             "refusing to restore an archive that writes outside the target")
    if "\x00" in name:
        raise IntegrityError(f"unsafe archive {what} {name!r}: NUL in name", "refusing to restore")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise IntegrityError(f"unsafe archive {what} {name!r}: '..' leaves the target",
                             "refusing to restore an archive that writes outside the target")
    return parts


def _show(parts: Parts) -> str:
    return "/".join(parts) or "."


@dataclass(frozen=True)
class Admitted:
    parts: Parts  # the member's path below the target; () is the target itself
    kind: Kind
    link: Parts | None = None  # a hard link's target below the target


@dataclass
class ArchiveGuard:
    """What the archive created so far, to judge each next member."""

    dirs: set[Parts] = field(default_factory=lambda: {()})
    files: set[Parts] = field(default_factory=set)  # regular files (hard link targets)
    others: set[Parts] = field(default_factory=set)  # symlinks, fifos: never a parent

    def admit(self, name: str, kind: Kind, linkname: str = "") -> Admitted:
        parts = split_member_name(name)
        if kind is Kind.DEVICE:
            raise IntegrityError(f"archive member {name!r} is a device node",
                                 "refusing to create devices in a webroot")
        if not parts and kind is not Kind.DIR:
            raise IntegrityError(f"archive member {name!r} would replace the target itself",
                                 "refusing to restore")
        for i in range(1, len(parts)):
            parent = parts[:i]
            if parent in self.others or parent in self.files:
                raise IntegrityError(
                    f"unsafe archive member {name!r}: lies below {_show(parent)!r}, which the "
                    "archive made a symlink or file (writing through it could leave the target)",
                    "refusing to restore")
        if kind is Kind.DIR:
            if parts in self.files or parts in self.others:
                raise IntegrityError(f"archive member {name!r} turns a file into a directory",
                                     "refusing to restore")
        elif parts in self.dirs:
            raise IntegrityError(f"archive member {name!r} replaces a directory with a {kind.value}",
                                 "refusing to restore")
        link: Parts | None = None
        if kind is Kind.HARDLINK:
            link = split_member_name(linkname, "hard link target")
            if link not in self.files:
                raise IntegrityError(
                    f"unsafe archive member {name!r}: hard link to {linkname!r}, which is not a "
                    "regular file earlier in the archive", "refusing to restore")
        # Record it; parents a member implies are directories.
        for i in range(1, len(parts)):
            self.dirs.add(parts[:i])
        self.files.discard(parts)
        self.others.discard(parts)
        if kind is Kind.DIR:
            self.dirs.add(parts)
        elif kind in (Kind.FILE, Kind.HARDLINK):
            self.files.add(parts)
        else:
            self.others.add(parts)
        return Admitted(parts, kind, link)
