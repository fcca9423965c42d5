"""Input files are names chosen by others: open them without trusting the name.

``open_input`` accepts only a regular file reached without following a symbolic link at the last path
component (``lstat`` first, then ``O_NOFOLLOW`` and ``fstat`` of what was opened). FIFOs, devices, sockets,
directories and links are refused with a one-line reason before a byte is read (a FIFO would block the reader,
``/dev/zero`` would never end, a link may point anywhere: ``/etc/shadow``). The content is hashed through the
opened descriptor, and ``check_unchanged`` tells whether the name still holds that same, unchanged file after
the extractor read it (a file still being written, or swapped for a link, is refused, not half-ingested).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from flowhawk.common.files import atomic_path
from flowhawk.extractors.base import BadInputError

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


@dataclass(frozen=True)
class InputFile:
    """A regular input file as hashed: its content hash and the identity that must not change."""

    path: Path
    sha256: str
    size: int
    identity: tuple[int, int, int, int]  # device, inode, size, mtime_ns


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def not_regular(path: Path, st: os.stat_result) -> str | None:
    """Why ``st`` (from ``lstat``) is refused, or None for a regular file."""
    if stat.S_ISREG(st.st_mode):
        return None
    kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
    if stat.S_ISLNK(st.st_mode):
        with contextlib.suppress(OSError):
            kind += f" (-> {os.readlink(path)})"
        return f"is {kind}; links are never followed"
    return f"is {kind}, not a regular file"


def _open_regular(path: Path) -> tuple[int, os.stat_result]:
    try:
        reason = not_regular(path, os.lstat(path))
        if reason:
            raise BadInputError(path, reason)
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise BadInputError(path, "no such file") from None
    except PermissionError:
        raise BadInputError(path, "permission denied") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # became a link between lstat and open
            raise BadInputError(path, "is a symbolic link; links are never followed") from None
        raise BadInputError(path, f"unreadable: {exc.strerror or exc}") from None
    st = os.fstat(fd)
    reason = not_regular(path, st)
    if reason:  # swapped between lstat and open
        os.close(fd)
        raise BadInputError(path, reason)
    return fd, st


def open_input(path: Path | str, chunk: int = 1 << 20) -> InputFile:
    """Hash a regular input file through a descriptor opened without following links (see module doc)."""
    path = Path(path)
    fd, before = _open_regular(path)
    digest, size = hashlib.sha256(), 0
    try:
        while block := os.read(fd, chunk):
            digest.update(block)
            size += len(block)
        after = os.fstat(fd)
    except OSError as exc:
        raise BadInputError(path, f"unreadable: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if _identity(after) != _identity(before) or size != before.st_size:
        raise BadInputError(path, f"changed while being read ({before.st_size:,} bytes, then {size:,} read, "
                            f"{after.st_size:,} now): still being written?")
    return InputFile(path, digest.hexdigest(), size, _identity(before))


def check_unchanged(entry: InputFile) -> None:
    """BadInputError unless ``entry.path`` still names the same regular file, same size and mtime."""
    try:
        st = os.lstat(entry.path)
    except OSError as exc:
        raise BadInputError(entry.path, f"vanished while being read ({exc.strerror or exc})") from None
    reason = not_regular(entry.path, st)
    if reason:
        raise BadInputError(entry.path, f"changed while being read: now {reason.removeprefix('is ')}")
    if _identity(st) != entry.identity:
        raise BadInputError(entry.path, f"changed while being read ({entry.size:,} bytes when hashed, "
                            f"{st.st_size:,} now): still being written?")


def copy_regular(path: Path, target: Path) -> bool:
    """Copy ``path`` to ``target`` (a temporary sibling, fsynced, then renamed) only when it is a regular file
    reached without a link; False (nothing written) otherwise."""
    try:
        fd, _ = _open_regular(Path(path))
    except BadInputError:
        return False
    with os.fdopen(fd, "rb") as src, atomic_path(target) as tmp, tmp.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return True
