"""Cheap structural walk of a pcap / pcapng file: does it end on a record boundary?

libpcap (and so nfstream) stops silently at a truncated or damaged record, which would make a cut capture
look complete. ``walk_capture`` follows the record headers (pcap) or block lengths (pcapng) without reading
packet bytes: one ``struct.unpack_from`` per record on a memory map, about 0.2 s per million packets.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

_PCAP_LE = (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")  # micro / nanosecond, little endian
_PCAP_BE = (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d")
_PCAP_HEADER, _RECORD_HEADER = 24, 16
_SHB = 0x0A0D0D0A
_PACKET_BLOCKS = (2, 3, 6)  # obsolete Packet Block, Simple Packet Block, Enhanced Packet Block


@dataclass(frozen=True)
class CaptureWalk:
    """Result of a walk: ``packets`` intact, ``intact_bytes`` of ``size``; ``damage`` None when whole."""

    kind: str
    packets: int
    intact_bytes: int
    size: int
    damage: str | None = None

    @property
    def damaged(self) -> bool:
        return self.damage is not None

    def describe(self) -> str:
        """One-line note for ExtractNotes."""
        if not self.damaged:
            return f"{self.kind}: {self.packets:,} packets, intact"
        return (f"{self.kind} truncated or damaged: {self.damage}; flows come from the {self.packets:,} "
                f"packets before byte {self.intact_bytes:,} of {self.size:,}")


def walk_capture(path: Path, kind: str) -> CaptureWalk:
    """Walk ``path`` (``kind`` is ``pcap`` or ``pcapng``, as sniffed) and report where it stops being whole."""
    with Path(path).open("rb") as fh:
        size = fh.seek(0, 2)
        if size == 0:
            return CaptureWalk(kind, 0, 0, 0, "empty file")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            if kind == "pcap":
                return _walk_pcap(mm, size)
            if kind == "pcapng":
                return _walk_pcapng(mm, size)
    raise ValueError(f"kind {kind!r}: must be 'pcap' or 'pcapng'")


def _walk_pcap(mm: mmap.mmap, size: int) -> CaptureWalk:
    magic = mm[:4]
    if magic not in _PCAP_LE + _PCAP_BE:
        return CaptureWalk("pcap", 0, 0, size, "no pcap magic number")
    if size < _PCAP_HEADER:
        return CaptureWalk("pcap", 0, 0, size, f"file ends inside the {_PCAP_HEADER}-byte pcap header")
    incl_len = struct.Struct(("<" if magic in _PCAP_LE else ">") + "8xI").unpack_from
    offset = start = _PCAP_HEADER
    packets, last_full = 0, size - _RECORD_HEADER
    while offset <= last_full:  # the hot loop: one unpack, a few assignments
        start = offset
        offset += _RECORD_HEADER + incl_len(mm, offset)[0]
        packets += 1
    if offset == size:
        return CaptureWalk("pcap", packets, size, size)
    if offset > size:  # the last record header promised more bytes than the file holds
        return CaptureWalk("pcap", packets - 1, start, size,
                           f"the record at byte {start:,} claims {offset - start - _RECORD_HEADER:,} bytes "
                           f"but only {size - start - _RECORD_HEADER:,} remain (cut mid-packet or corrupt "
                           "length)")
    return CaptureWalk("pcap", packets, offset, size,
                       f"{size - offset} stray bytes after the last record (cut inside a record header)")


def _walk_pcapng(mm: mmap.mmap, size: int) -> CaptureWalk:
    offset, packets, order = 0, 0, "<"
    while offset + 12 <= size:
        block_type = struct.unpack_from(order + "I", mm, offset)[0]
        if block_type == _SHB:
            bom = mm[offset + 8:offset + 12]
            if bom not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
                return _ng_damage(packets, offset, size, "section header without a byte-order magic")
            order = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
        length = struct.unpack_from(order + "I", mm, offset + 4)[0]
        if length < 12 or length % 4:
            return _ng_damage(packets, offset, size, f"invalid block length {length} at byte {offset:,}")
        if offset + length > size:
            return _ng_damage(packets, offset, size, f"the block at byte {offset:,} claims {length:,} bytes "
                              f"but only {size - offset:,} remain (cut mid-block or corrupt length)")
        packets += block_type in _PACKET_BLOCKS
        offset += length
    if offset != size:
        return _ng_damage(packets, offset, size, f"{size - offset} stray bytes after the last block")
    return CaptureWalk("pcapng", packets, size, size)


def _ng_damage(packets: int, offset: int, size: int, why: str) -> CaptureWalk:
    return CaptureWalk("pcapng", packets, offset, size, why)
