"""What every extractor shares: the error type, format sniffing from magic bytes, the extractor protocol."""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pandas as pd

SOURCES = ("auto", "pcap", "zeek", "nf-csv")
_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": "pcap", b"\xa1\xb2\xc3\xd4": "pcap",  # microsecond, little / big endian
    b"\x4d\x3c\xb2\xa1": "pcap", b"\xa1\xb2\x3c\x4d": "pcap",  # nanosecond
    b"\x0a\x0d\x0d\x0a": "pcapng",
}


class BadInputError(Exception):
    """An input file that cannot be (fully) read. ``str()`` is one line naming the file and the reason."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = " ".join(str(reason).split())  # one line, always
        super().__init__(f"{self.path}: {self.reason}")

    def __reduce__(self) -> tuple[type, tuple[Path, str]]:
        """Pickled as its two arguments: a Dask worker sends it to the client, which rebuilds it (the default
        rebuild passes only the message and failed, hiding the error behind a TypeError)."""
        return type(self), (self.path, self.reason)


@dataclass
class ExtractNotes:
    """Non-fatal findings of one extraction (a truncated capture, skipped lines), surfaced in the summary."""

    messages: list[str] = field(default_factory=list)
    truncated: bool = False

    def add(self, message: str) -> None:
        self.messages.append(" ".join(message.split()))


class Extractor(Protocol):
    """One input format to flow frames.

    ``frames`` yields pandas frames whose columns are a subset of ``extractors.schema.COLUMN_NAMES`` (the
    caller conforms them and adds provenance), in bounded chunks so that no capture is held in memory whole.
    It raises ``BadInputError`` for input it cannot read at all, and records partial damage in ``notes``.
    """

    name: str

    def frames(self, path: Path, notes: ExtractNotes) -> Iterator[pd.DataFrame]: ...


def read_head(path: Path, n: int = 4096) -> bytes:
    """The first ``n`` bytes of ``path`` (decompressed if gzip); BadInputError if missing or unreadable."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(path, "no such file")
    if path.is_dir():
        raise BadInputError(path, "is a directory, not a file")
    try:
        with path.open("rb") as fh:
            head = fh.read(n)
        if head[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as gz:
                head = gz.read(n)
    except PermissionError:
        raise BadInputError(path, "permission denied") from None
    except (OSError, EOFError) as exc:
        raise BadInputError(path, f"unreadable: {exc}") from None
    return head


_ZEEK_HEADERS = ("#separator", "#fields")


def _leading_comments(text: str) -> list[str]:
    """The ``#`` lines a text starts with: a Zeek log's header, maybe after other comments (a test suite's
    ``### BTest baseline`` line, a note an analyst added)."""
    lines = text.lstrip().split("\n")
    return list(itertools.takewhile(lambda line: line.startswith("#"), lines))


def sniff_format(path: Path) -> str:
    """Detect the input kind from content, never the extension.

    Returns ``pcap``, ``pcapng``, ``zeek`` (TSV with #fields, JSON lines with id.orig_h, or the IoT-23 plain
    header variant) or ``nf-csv``; raises BadInputError for empty files and anything else.
    """
    head = read_head(path)
    if not head:
        raise BadInputError(path, "empty file")
    if head[:4] in _PCAP_MAGICS:
        return _PCAP_MAGICS[head[:4]]
    text = head.decode("utf-8", errors="replace")
    first = text.lstrip().split("\n", 1)[0]
    if any(line.startswith(_ZEEK_HEADERS) for line in _leading_comments(text)) or "id.orig_h" in first:
        return "zeek"
    if "IPV4_SRC_ADDR" in first and "," in first:
        return "nf-csv"
    if b"\x00" in head[:512]:
        raise BadInputError(path, "unrecognised binary format (not pcap, pcapng, gzip, Zeek log or NF CSV)")
    raise BadInputError(path, "unrecognised text format (no Zeek #fields/id.orig_h header, no NF CSV header)")
