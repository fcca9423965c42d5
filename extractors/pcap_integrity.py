"""Cheap structural walk of a pcap / pcapng file: does it end on a record boundary?

libpcap (and so nfstream) stops silently at a truncated or damaged record, which would make a cut capture
look complete. ``walk_capture`` follows the record headers (pcap) or block lengths (pcapng), decoding
nothing else: one ``struct.unpack_from`` per record over 1 MiB reads, about 0.25 s per million packets, in
constant memory (no memory map: mapped pages would count in RSS and grow it with the capture size).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_PCAP_LE = (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")  # micro / nanosecond, little endian
_PCAP_BE = (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d")
_PCAP_HEADER, _RECORD_HEADER = 24, 16
_SHB, _IDB, _EPB = 0x0A0D0D0A, 1, 6
_SHB_BYTES = b"\x0a\x0d\x0d\x0a"  # a palindrome: the same in either byte order
_BOMS = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
_PACKET_BLOCKS = (2, 3, 6)  # obsolete Packet Block, Simple Packet Block, Enhanced Packet Block
# interface description, packet, simple packet, name resolution, interface statistics, enhanced packet,
# systemd journal export, decryption secrets, custom (copyable / not)
_KNOWN_BLOCKS = frozenset((_SHB, 1, 2, 3, 4, 5, 6, 9, 10, 0xBAD, 0x40000BAD))
_RESYNC_TYPES = {o: frozenset(struct.pack(o + "I", t) for t in _KNOWN_BLOCKS) for o in "<>"}
_MAX_BLOCK = 16 << 20  # libpcap's own ceiling on a pcapng block
_BLOCK = 1 << 20  # bytes read at a time


@dataclass(frozen=True)
class CaptureWalk:
    """Result of a walk: ``packets`` intact; the capture is whole up to ``intact_bytes`` of ``size`` (then
    ``damage`` says why it stops), except for the ``skipped`` regions (offset, length, why) that a pcapng
    walk resynchronised past."""

    kind: str
    packets: int
    intact_bytes: int
    size: int
    damage: str | None = None
    skipped: tuple[tuple[int, int, str], ...] = ()

    @property
    def damaged(self) -> bool:
        return self.damage is not None or bool(self.skipped)

    @property
    def skipped_bytes(self) -> int:
        return sum(length for _, length, _ in self.skipped)

    def describe(self) -> str:
        """One-line note for ExtractNotes."""
        if not self.damaged:
            return f"{self.kind}: {self.packets:,} packets, intact"
        parts = []
        if self.skipped:
            first = self.skipped[0]
            parts.append(f"{self.kind}: {len(self.skipped)} damaged region(s), {self.skipped_bytes:,} bytes "
                         f"skipped (first at byte {first[0]:,}: {first[2]}); resynchronised at the next valid "
                         f"block, flows come from the {self.packets:,} intact packets")
        if self.damage is not None:
            parts.append(f"{self.kind} truncated or damaged: {self.damage}; flows come from the "
                         f"{self.packets:,} packets before byte {self.intact_bytes:,} of {self.size:,}")
        return "; ".join(parts)


def walk_capture(path: Path, kind: str) -> CaptureWalk:
    """Walk ``path`` (``kind`` is ``pcap`` or ``pcapng``, as sniffed) and report where it stops being whole."""
    if kind not in ("pcap", "pcapng"):
        raise ValueError(f"kind {kind!r}: must be 'pcap' or 'pcapng'")
    with Path(path).open("rb", buffering=0) as fh:
        size = fh.seek(0, 2)
        if size == 0:
            return CaptureWalk(kind, 0, 0, 0, "empty file")
        return _walk_pcap(fh, size) if kind == "pcap" else _walk_pcapng(fh, size)


class _Window:
    """A ``_BLOCK``-sized window of the file, re-read when a block header falls outside it."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh, self.buf, self.base = fh, b"", 0

    def at(self, offset: int, need: int) -> int:
        """Make ``need`` bytes from ``offset`` available in ``self.buf`` (if the file has them); return the
        position of ``offset`` inside ``self.buf``."""
        rel = offset - self.base
        if rel < 0 or rel + need > len(self.buf):
            self.fh.seek(offset)
            self.buf, self.base, rel = self.fh.read(max(_BLOCK, need)), offset, 0
        return rel


def _walk_pcap(fh: BinaryIO, size: int) -> CaptureWalk:
    fh.seek(0)
    magic = fh.read(4)
    if magic not in _PCAP_LE + _PCAP_BE:
        return CaptureWalk("pcap", 0, 0, size, "no pcap magic number")
    if size < _PCAP_HEADER:
        return CaptureWalk("pcap", 0, 0, size, f"file ends inside the {_PCAP_HEADER}-byte pcap header")
    incl_len = struct.Struct(("<" if magic in _PCAP_LE else ">") + "8xI").unpack_from
    packets, offset = _chase(fh, incl_len, _PCAP_HEADER, size, None)
    if offset == size:
        return CaptureWalk("pcap", packets, size, size)
    if offset > size:  # the last record header promised more bytes than the file holds
        start = _chase(fh, incl_len, _PCAP_HEADER, size, packets - 1)[1]
        return CaptureWalk("pcap", packets - 1, start, size,
                           f"the record at byte {start:,} claims {offset - start - _RECORD_HEADER:,} bytes "
                           f"but only {size - start - _RECORD_HEADER:,} remain (cut mid-packet or corrupt "
                           "length)")
    return CaptureWalk("pcap", packets, offset, size,
                       f"{size - offset} stray bytes after the last record (cut inside a record header)")


def _chase(fh: BinaryIO, incl_len: Callable, offset: int, size: int, limit: int | None) -> tuple[int, int]:
    """Follow record headers from ``offset`` while a whole header is in the file (at most ``limit``
    records); return (records followed, offset after the last one), which is past ``size`` when the last
    record is cut."""
    records, last_full = 0, size - _RECORD_HEADER
    while offset <= last_full and (limit is None or records < limit):
        fh.seek(offset)
        buf = fh.read(_BLOCK)
        rel, stop = 0, len(buf) - _RECORD_HEADER
        if limit is None:
            while rel <= stop:  # the hot loop: one unpack and two additions per record
                rel += _RECORD_HEADER + incl_len(buf, rel)[0]
                records += 1
        else:
            while rel <= stop and records < limit:
                rel += _RECORD_HEADER + incl_len(buf, rel)[0]
                records += 1
        offset += rel
    return records, offset


def _walk_pcapng(fh: BinaryIO, size: int) -> CaptureWalk:
    """Follow blocks; at a block that fails ``_pcapng_block``, skip to the next 4-byte position where a valid
    block starts (a known type, its length equal at both ends) and keep going."""
    window, state = _Window(fh), _NgState()
    offset, packets, skipped = 0, 0, []
    while offset + 12 <= size:
        checked = _pcapng_block(window, offset, size, state)
        if isinstance(checked, int):
            packets += checked
            offset += state.length
            continue
        resume = _resync(window, offset + 4, size, state)
        if resume is None:
            return CaptureWalk("pcapng", packets, offset, size, checked, tuple(skipped))
        skipped.append((offset, resume - offset, checked))
        offset = resume
    damage = f"{size - offset} stray bytes after the last block" if offset != size else None
    return CaptureWalk("pcapng", packets, offset if damage else size, size, damage, tuple(skipped))


@dataclass
class _NgState:
    order: str = "<"
    interfaces: int = 0
    length: int = 0  # of the block last accepted


def _pcapng_block(window: _Window, offset: int, size: int, state: _NgState) -> int | str:
    """Packets in the block at ``offset`` (0 or 1) when it is whole and consistent, else why not. Updates
    ``state`` (byte order and interface count of the section, the block's length)."""
    rel = window.at(offset, 12)
    order = state.order
    if window.buf[rel:rel + 4] == _SHB_BYTES:
        bom = window.buf[rel + 8:rel + 12]
        if bom not in _BOMS:
            return f"section header without a byte-order magic at byte {offset:,}"
        order = _BOMS[bom]
    block_type, length = struct.unpack_from(order + "II", window.buf, rel)
    if length < 12 or length % 4 or length > _MAX_BLOCK:
        return f"invalid block length {length} at byte {offset:,}"
    if offset + length > size:
        return (f"the block at byte {offset:,} claims {length:,} bytes but only {size - offset:,} remain "
                "(cut mid-block or corrupt length)")
    rel = window.at(offset, length)
    if struct.unpack_from(order + "I", window.buf, rel + length - 4)[0] != length:
        return f"the block at byte {offset:,} ends with a length other than its leading {length:,}"
    body = _pcapng_body(block_type, window.buf, rel, length, order, state.interfaces)
    if body is not None:
        return f"block type {block_type:#x} at byte {offset:,}: {body}"
    if block_type == _SHB:
        state.order, state.interfaces = order, 0
    state.interfaces += block_type == _IDB
    state.length = length
    return int(block_type in _PACKET_BLOCKS)


def _pcapng_body(block_type: int, buf: bytes, rel: int, length: int, order: str, interfaces: int) -> str | None:
    """What is wrong inside a block whose lengths agree (what libpcap would reject), or None."""
    if block_type not in _KNOWN_BLOCKS and not block_type & 0x80000000:  # high bit: local use, allowed
        return "unknown block type"
    if block_type == _EPB:
        if length < 32:
            return f"enhanced packet block of {length} bytes"
        interface, captured = struct.unpack_from(order + "I8xI", buf, rel + 8)
        if interface >= interfaces:
            return f"interface {interface} of {interfaces}"
        if captured > length - 32:
            return f"captured length {captured:,} exceeds the block"
    elif block_type == _IDB and length < 20:
        return f"interface description block of {length} bytes"
    return None


def _resync(window: _Window, start: int, size: int, state: _NgState) -> int | None:
    """The next 4-byte aligned offset from ``start`` where a valid block begins, or None."""
    for offset in range(start, size - 11, 4):
        rel = window.at(offset, 8)
        if window.buf[rel:rel + 4] not in _RESYNC_TYPES[state.order]:
            continue
        trial = _NgState(state.order, state.interfaces)
        if isinstance(_pcapng_block(window, offset, size, trial), int):
            return offset
    return None


def write_intact(src: Path, dst: Path, walk: CaptureWalk) -> int:
    """Copy the bytes of ``src`` the walk found whole (skipping its damaged regions and damaged tail) to
    ``dst``; return the bytes written."""
    keep, at = [], 0
    for offset, length, _ in walk.skipped:
        keep.append((at, offset))
        at = offset + length
    keep.append((at, walk.intact_bytes))
    written = 0
    with Path(src).open("rb") as fin, Path(dst).open("wb") as fout:
        for begin, end in keep:
            fin.seek(begin)
            while begin < end:
                block = fin.read(min(_BLOCK, end - begin))
                if not block:
                    break
                fout.write(block)
                begin += len(block)
                written += len(block)
    return written
