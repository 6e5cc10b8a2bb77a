"""Writing a restored tree: a tar stream extracted safely, then promoted into place.

Why not ``tar -x``: every member must be judged *before* any of it is
written (``safety.ArchiveGuard``), which needs the member headers in hand;
GNU tar judges names only by its own rules (it strips a leading ``/`` and
carries on, and it follows symlinks an earlier member created unless the
right flags are given).  Feeding ``tar -x`` the stream after judging every
header here would keep the guard, but not the system-call rules below, and
would copy every byte once more through a pipe into another process
(measured before: 7% slower, 20% more CPU on two cores).  So each member is
admitted by the guard and then written with system calls relative to
directory file descriptors, every path component opened with
``O_NOFOLLOW``, files created with ``O_EXCL | O_NOFOLLOW``: even a bug in the
guard cannot write through a symlink.

Two threads (docs/ARCHITECTURE.md, "A byte's way back"): the calling thread
reads the stream -- hashing, decrypting, decompressing -- into the buffers of
a ``blocks.BlockPipe``; a second thread reads the members out of them
(``tarstream.TarCursor``: the headers parsed, the data never copied) and
writes each file with one ``write`` per piece of it that lies in one buffer
(one for a file smaller than a buffer), then ``fchmod`` and ``futimens`` on
the open descriptor.  zstd and SHA-256 release the GIL, so they run beside
the writer's Python.

Kept: names, contents, permission bits, symlinks, hard links, FIFOs, sparse
files and modification times (directories' last, after their contents).
Owners: as root, the archive's numeric uid/gid are restored (as ``tar -x``
does for root, and as the backup recorded them with ``--numeric-owner``),
and setuid/setgid/sticky bits are kept; as any other user, files belong to
that user (``--no-same-owner``) and those three bits are dropped.

The tree is extracted into a fresh directory ``.streamer-restore-*`` *inside*
the target (the same filesystem even when the target is a mount point, and
nothing is created outside it), and moved into place (``promote``) only after
the stream's SHA-256 matched the manifest; on any failure that directory is
removed and the target is as it was.
"""

from __future__ import annotations

import errno
import gzip
import os
import shutil
import stat
import tarfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

import zstandard

from streamer.codec import Readable
from streamer.errors import IntegrityError, StreamerError
from streamer.readback.blocks import BlockPipe, FillerFailed
from streamer.readback.safety import Admitted, ArchiveGuard, Kind, Parts
from streamer.readback.tarstream import ArchiveError, Member, TarCursor

# Blocks the database path reads its stream in (restore._feed): 128 KiB.
# Larger blocks (1 MiB) come from mmap under the CLI's fixed mmap threshold
# (cli_support.tune_malloc) and cost a page fault per 4 KiB on every block:
# measured 7.4 s against 4.4 s of which 6.2 s system time, extracting a
# 235 MB archive of 5,025 files.  The tree's pipe allocates its buffers once.
BLOCK = 128 * 1024
PIPE_BLOCKS = 4  # buffers between the decompressing and the writing thread
PIPE_BLOCK = 1024 * 1024  # bytes each: 4 MiB in all
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
FD_CACHE = 128
TEMP_PREFIX = ".streamer-restore-"
UNREADABLE = (ArchiveError, EOFError, zstandard.ZstdError, gzip.BadGzipFile)


@dataclass(frozen=True)
class DirAttrs:
    parts: Parts
    mode: int
    uid: int
    gid: int
    mtime_ns: int


@dataclass
class ExtractStats:
    files: int = 0
    dirs: int = 0
    links: int = 0
    bytes: int = 0
    dir_attrs: list[DirAttrs] = field(default_factory=list)


class TreeWriter:
    """Creates admitted members below ``root`` without ever following a symlink."""

    def __init__(self, root: Path, same_owner: bool) -> None:
        self.same_owner = same_owner
        self.mode_mask = 0o7777 if same_owner else 0o777
        self._fds: OrderedDict[Parts, int] = OrderedDict()
        self._root = os.open(root, DIR_FLAGS)
        self.stats = ExtractStats()

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        os.close(self._root)

    def _dir_fd(self, parts: Parts) -> int:
        """An open fd of directory ``parts``, creating missing ones (mode 0755)."""
        if not parts:
            return self._root
        fd = self._fds.get(parts)
        if fd is not None:
            self._fds.move_to_end(parts)
            return fd
        parent = self._dir_fd(parts[:-1])
        name = parts[-1]
        try:
            fd = os.open(name, DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            os.mkdir(name, 0o755, dir_fd=parent)
            fd = os.open(name, DIR_FLAGS, dir_fd=parent)
        except (NotADirectoryError, OSError) as e:
            if isinstance(e, NotADirectoryError) or e.errno == errno.ELOOP:
                raise IntegrityError(f"archive path {'/'.join(parts)!r} is not a directory",
                                     "refusing to write through it") from None
            raise
        self._fds[parts] = fd
        if len(self._fds) > FD_CACHE:
            _, old = self._fds.popitem(last=False)
            os.close(old)
        return fd

    def _clear(self, name: str, parent: int) -> None:
        """Remove a non-directory an earlier member left at this name."""
        try:
            os.unlink(name, dir_fd=parent)
        except FileNotFoundError:
            pass

    def write(self, admitted: Admitted, m: Member, data: TarCursor) -> None:
        """Create one member; a file's ``m.size`` bytes are read from ``data``."""
        parts = admitted.parts
        kind = admitted.kind
        mode = m.mode & self.mode_mask
        if kind is Kind.DIR:
            self.stats.dirs += 1
            if parts:
                parent = self._dir_fd(parts[:-1])
                try:
                    os.mkdir(parts[-1], 0o700, dir_fd=parent)
                except FileExistsError:
                    st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
                    if not stat.S_ISDIR(st.st_mode):
                        raise IntegrityError(f"archive directory {m.name!r} exists as a non-directory",
                                             "refusing to restore") from None
            self.stats.dir_attrs.append(DirAttrs(parts, mode, m.uid, m.gid, m.mtime_ns))
            return
        parent = self._dir_fd(parts[:-1])
        name = parts[-1]
        if kind is Kind.FILE:
            self._write_file(name, parent, m, data, mode)
        elif kind is Kind.SYMLINK:
            self._clear(name, parent)
            os.symlink(m.linkname, name, dir_fd=parent)
            if self.same_owner:
                os.chown(name, m.uid, m.gid, dir_fd=parent, follow_symlinks=False)
            os.utime(name, ns=(m.mtime_ns, m.mtime_ns), dir_fd=parent, follow_symlinks=False)
            self.stats.links += 1
        elif kind is Kind.HARDLINK:
            assert admitted.link is not None
            source_parent = self._dir_fd(admitted.link[:-1])
            self._clear(name, parent)
            os.link(admitted.link[-1], name, src_dir_fd=source_parent, dst_dir_fd=parent,
                    follow_symlinks=False)
            self.stats.links += 1
        elif kind is Kind.FIFO:
            self._clear(name, parent)
            os.mkfifo(name, 0o600, dir_fd=parent)
            fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=parent)
            try:
                self._attrs(fd, m, mode)
            finally:
                os.close(fd)
        else:  # the guard refuses devices
            raise IntegrityError(f"archive member {m.name!r}: unsupported type", "refusing to restore")

    def _write_file(self, name: str, parent: int, m: Member, data: TarCursor, mode: int) -> None:
        try:
            fd = os.open(name, FILE_FLAGS, 0o600, dir_fd=parent)
        except FileExistsError:
            self._clear(name, parent)
            fd = os.open(name, FILE_FLAGS, 0o600, dir_fd=parent)
        try:
            if m.sparse is None:
                _copy(data, fd, m.size)
            else:
                for offset, length in m.sparse:
                    os.lseek(fd, offset, os.SEEK_SET)
                    _copy(data, fd, length)
                os.ftruncate(fd, m.real_size)
            self._attrs(fd, m, mode)
        finally:
            os.close(fd)
        self.stats.files += 1
        self.stats.bytes += m.size

    def _attrs(self, fd: int, m: Member, mode: int) -> None:
        if self.same_owner:
            os.fchown(fd, m.uid, m.gid)  # before chmod: chown clears setuid bits
        os.fchmod(fd, mode)
        os.utime(fd, ns=(m.mtime_ns, m.mtime_ns))


def _copy(data: TarCursor, fd: int, size: int) -> None:
    """``size`` bytes of member data into ``fd``: one write per buffer they lie in."""
    while size:
        view = data.take(size)
        size -= len(view)
        written = os.write(fd, view)
        while written < len(view):
            written += os.write(fd, view[written:])


def _extract_members(pipe: BlockPipe, root: Path, same_owner: bool) -> ExtractStats:
    """The writing thread: every member judged, then written."""
    guard = ArchiveGuard()
    writer = TreeWriter(root, same_owner)
    cursor = TarCursor(pipe.next_block)
    try:
        while (m := cursor.next_member()) is not None:
            writer.write(guard.admit(m.name, m.kind, m.linkname), m, cursor)
    finally:
        writer.close()
    return writer.stats


def extract_tar(stream: Readable, root: Path, same_owner: bool) -> ExtractStats:
    """Extract a tar stream below ``root`` (an empty directory): this thread
    reads ``stream`` into a BlockPipe, a second one writes the members."""
    pipe = BlockPipe(PIPE_BLOCKS, PIPE_BLOCK)
    outcome: list[ExtractStats | BaseException] = []

    def writing() -> None:
        try:
            outcome.append(_extract_members(pipe, root, same_owner))
        except BaseException as e:  # handed to the calling thread
            outcome.append(e)
        finally:
            pipe.stop()

    writer = threading.Thread(target=writing, name="streamer-extract")
    writer.start()
    try:
        pipe.fill(stream)
    except UNREADABLE as e:
        raise IntegrityError(f"archive unreadable: {type(e).__name__}: {e}",
                             "the stored copy is damaged") from None
    finally:
        writer.join()
    result = outcome[0]
    if isinstance(result, ArchiveError):
        raise IntegrityError(f"archive unreadable: {result}", "the stored copy is damaged")
    if isinstance(result, BaseException) and not isinstance(result, FillerFailed):
        raise result
    assert isinstance(result, ExtractStats)
    return result


# ---------------------------------------------------------------- into place


def is_empty_dir(path: Path) -> bool:
    with os.scandir(path) as it:
        return next(it, None) is None


def _same_device_tree(path: str, device: int) -> bool:
    for dirpath, dirnames, _ in os.walk(path):
        for d in dirnames:
            st = os.lstat(os.path.join(dirpath, d))
            if st.st_dev != device:
                return False
    return True


def remove_tree(path: str) -> None:
    """rmtree that refuses to descend into another filesystem (a mounted asset store)."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    if not _same_device_tree(path, st.st_dev):
        raise StreamerError(f"{path} contains a mount point; not removing it",
                            "unmount it or restore into another directory")
    shutil.rmtree(path)


def _rename(src: str, dst: str) -> None:
    try:
        os.rename(src, dst)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        shutil.move(src, dst)  # onto another filesystem below the target: copy


def _move(src: str, dst: str) -> None:
    """Move ``src`` to ``dst``; an existing directory is merged into, anything else replaced."""
    try:
        existing = os.lstat(dst)
    except FileNotFoundError:
        _rename(src, dst)
        return
    src_is_dir = stat.S_ISDIR(os.lstat(src).st_mode)
    if stat.S_ISDIR(existing.st_mode):
        if src_is_dir:
            with os.scandir(src) as it:
                names = [e.name for e in it]
            for name in names:
                _move(os.path.join(src, name), os.path.join(dst, name))
            return
        remove_tree(dst)
    elif src_is_dir:
        os.unlink(dst)  # a file or symlink where the backup has a directory
    _rename(src, dst)


def promote(temp: Path, target: Path) -> None:
    """Move the verified tree from ``temp`` into ``target`` (merging, like ``tar -x``)."""
    with os.scandir(temp) as it:
        names = [e.name for e in it]
    for name in names:
        _move(str(temp / name), str(target / name))


def apply_dir_attrs(target: Path, attrs: list[DirAttrs], same_owner: bool) -> None:
    """Set directories' owner, mode and mtime last, deepest first (their contents are in)."""
    root = os.open(target, DIR_FLAGS)
    try:
        for a in sorted(attrs, key=lambda a: len(a.parts), reverse=True):
            fd = _open_below(root, a.parts)
            if fd is None:
                continue
            try:
                if same_owner:
                    os.fchown(fd, a.uid, a.gid)
                os.fchmod(fd, a.mode)
                os.utime(fd, ns=(a.mtime_ns, a.mtime_ns))
            finally:
                if fd != root:
                    os.close(fd)
    finally:
        os.close(root)


def _open_below(root: int, parts: Parts) -> int | None:
    fd = root
    try:
        for name in parts:
            nxt = os.open(name, DIR_FLAGS, dir_fd=fd)
            if fd != root:
                os.close(fd)
            fd = nxt
    except OSError:
        if fd != root:
            os.close(fd)
        return None
    return fd


def same_owner_default() -> bool:
    return os.geteuid() == 0


def tar_member(stream: Readable, member: str, where: str) -> Readable:
    """The bytes of ``member``, the first and only member of the tar ``stream``."""
    archive = tarfile.open(fileobj=cast(IO[bytes], stream), mode="r|")
    info = archive.next()
    found = None if info is None or not info.isfile() else archive.extractfile(info)
    if info is None or found is None or info.name != member:
        raise IntegrityError(f"{where}: the archive does not hold {member} first",
                             "the stored copy is damaged")
    return found
