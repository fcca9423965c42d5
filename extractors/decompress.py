"""Bounded gzip: a decompression bomb (a small file that inflates to gigabytes) is refused, not expanded.

A gzip'd input may inflate to ``MAX_RATIO`` times its compressed size, and always to ``FLOOR_BYTES``; beyond
that the reader raises BadInputError. Real inputs sit far below (NF-BoT-IoT-v2 CSV 14x, Zeek logs 3-4x,
captures ~6x); gzip's own ceiling is about 1,030x (all zeros).
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import BinaryIO

from flowhawk.extractors.base import BadInputError

MAX_RATIO = 100
FLOOR_BYTES = 64 << 20


def is_gzip(path: Path) -> bool:
    with Path(path).open("rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def expansion_limit(compressed_bytes: int) -> int:
    return max(FLOOR_BYTES, MAX_RATIO * compressed_bytes)


def bomb_error(path: Path, limit: int) -> BadInputError:
    return BadInputError(path, f"gzip inflates beyond {limit:,} bytes ({MAX_RATIO}x its size or "
                         f"{FLOOR_BYTES >> 20} MiB): a decompression bomb? refused")


class _Bounded(io.RawIOBase):
    def __init__(self, path: Path, inner: BinaryIO, limit: int) -> None:
        self.path, self.inner, self.limit, self.count = path, inner, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.inner.read(len(buffer))
        self.count += len(data)
        if self.count > self.limit:
            raise bomb_error(self.path, self.limit)
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.inner.close()
        super().close()


def open_binary(path: Path) -> BinaryIO:
    """``path`` opened for reading, decompressed (within the limit) when it is gzip."""
    path = Path(path)
    if not is_gzip(path):
        return path.open("rb")
    limit = expansion_limit(path.stat().st_size)
    return io.BufferedReader(_Bounded(path, gzip.open(path, "rb"), limit), 1 << 20)  # type: ignore[return-value]
