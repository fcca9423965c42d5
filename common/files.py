"""File helpers every layer shares, each in one place: content hashes, atomic writes, directory swaps, locks.

Atomic writes go to a temporary name in the same folder, are fsynced, then renamed: a reader (or a process
killed mid-write) never sees a half-written file or directory, only the old state or the new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (ledgers, caches and manifests key on content, never the path)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def tmp_sibling(final: Path, prefix: str = ".tmp-") -> Path:
    """A unique temporary path next to ``final`` (same filesystem, hidden from dataset discovery)."""
    final = Path(final)
    return final.parent / f"{prefix}{final.name}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def fsync_path(path: Path) -> None:
    """Flush a file (or a directory's entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; when the block succeeds, fsync it and rename it to
    ``path`` (for writers that need a file name, e.g. MindSpore checkpoints, which insist on a ``.ckpt``
    ``suffix``). On failure the temp is removed."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent}: output directory does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-{os.getpid()}-", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        fsync_path(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def replace_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a finished temporary directory into place.

    ``final_dir`` must not exist (a batch or version is immutable once visible); raises FileExistsError.
    On the same filesystem ``os.rename`` of a directory is atomic.
    """
    tmp_dir, final_dir = Path(tmp_dir), Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    if final_dir.exists():
        raise FileExistsError(f"{final_dir}: already exists")
    os.rename(tmp_dir, final_dir)


def swap_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Put a finished temp folder in place of ``final_dir``, which may exist (a report written again): the
    old folder is renamed aside first, then removed. Readers see the old folder or the new one, whole."""
    tmp_dir, final_dir = Path(tmp_dir), Path(final_dir)
    old = None
    if final_dir.exists():
        old = tmp_sibling(final_dir, prefix=".tmp-old-")
        os.rename(final_dir, old)
    os.rename(tmp_dir, final_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_pid(name: str) -> int | None:
    match = re.search(r"-(\d+)-[0-9a-z_]+$", name)
    return int(match.group(1)) if match else None


def remove_stale_temps(folder: Path, prefix: str = ".tmp-") -> int:
    """Delete leftovers of killed writers: temp entries with ``prefix`` whose writing process is gone.

    Temps of live processes (a concurrent writer) are left alone. Returns how many were removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    count = 0
    for entry in folder.iterdir():
        pid = _owner_pid(entry.name)
        if entry.name.startswith(prefix) and (pid is None or not _pid_alive(pid)):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            count += 1
    return count


@contextlib.contextmanager
def exclusive_lock(path: Path, timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the ``with`` block.

    Blocks until the lock is free, or raises TimeoutError after ``timeout`` seconds. The kernel drops the lock
    when the holder exits or is killed, so a crashed holder never leaves it stuck.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if deadline is None else fcntl.LOCK_NB))
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:  # type: ignore[operator]
                    raise TimeoutError(f"{path}: still locked by another process after {timeout} s") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # drops the lock


def try_lock(path: Path) -> int | None:
    """Open (creating) and exclusively flock ``path`` without blocking; returns the descriptor (closing it
    drops the lock), or None when another process holds it or the file was renamed away meanwhile."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:
        return None  # its folder vanished (finished by its owner)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    try:
        same = os.fstat(fd).st_ino == Path(path).stat().st_ino
    except FileNotFoundError:
        same = False
    if not same:
        os.close(fd)  # the folder was finished (renamed away) between our open and our lock
        return None
    return fd
