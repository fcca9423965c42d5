"""A corpus of broken and hostile inputs, generated (never committed): ``cases(seed, size)`` -> (name, bytes).

Captures start from a capture ``flowhawk.extractors.synth`` writes, re-encoded as needed (nanosecond,
big-endian, pcapng, gzip/bzip2/xz) and then damaged: bit flips, truncation at every structural boundary
(headers, records, blocks), absurd lengths, wrong magic, zero and huge snaplen, non-IP link types,
decompression bombs. Zeek logs and NF CSVs start from small valid files and get wrong field counts, unset /
empty markers in every column, bad UTF-8, missing headers, JSON with wrong types, inf / nan / negative /
overflowing numbers, missing, extra and duplicated columns.

``size="small"`` keeps a few cases of each family (CI); ``"full"`` keeps all of them (benchmarks).
Run as a script to write the corpus into a folder: ``python -m tests.fuzz_corpus OUT [--size full]``.
"""

from __future__ import annotations

import random
import struct
import tempfile
from pathlib import Path

Case = tuple[str, bytes]
_SHB_BOM = 0x1A2B3C4D


# --- capture encodings --------------------------------------------------------------------------------------
def synth_pcap(seed: int = 7, packets: int = 2000) -> bytes:
    """A classic little-endian microsecond pcap of about ``packets`` packets (benign traffic and attacks)."""
    from flowhawk.extractors.synth import SynthConfig, synthesize

    with tempfile.TemporaryDirectory(prefix="flowhawk-fuzz-") as tmp:
        pcap = Path(tmp) / "s.pcap"
        synthesize(SynthConfig(seed=seed, packets=packets, duration_s=60.0), pcap, Path(tmp) / "s.labels.csv")
        return pcap.read_bytes()


def pcap_records(pcap: bytes) -> tuple[bytes, list[tuple[int, int, bytes]]]:
    """(24-byte header, [(seconds, microseconds, frame)]) of a little-endian microsecond pcap."""
    records, at = [], 24
    while at + 16 <= len(pcap):
        sec, usec, incl, _ = struct.unpack_from("<IIII", pcap, at)
        records.append((sec, usec, pcap[at + 16:at + 16 + incl]))
        at += 16 + incl
    return pcap[:24], records


def to_pcap(pcap: bytes, order: str = "<", nanoseconds: bool = False, snaplen: int = 65535,
            linktype: int = 1) -> bytes:
    """Re-encode in another byte order / time resolution / snaplen / link type."""
    _, records = pcap_records(pcap)
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for sec, usec, frame in records:
        frac = usec * 1000 if nanoseconds else usec
        out.append(struct.pack(order + "IIII", sec, frac, len(frame), len(frame)) + frame)
    return b"".join(out)


def _block(block_type: int, body: bytes, order: str = "<") -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = 12 + len(body)
    return struct.pack(order + "II", block_type, length) + body + struct.pack(order + "I", length)


def to_pcapng(pcap: bytes, order: str = "<") -> bytes:
    """Section header, one Ethernet interface (microseconds), one enhanced packet block per record."""
    _, records = pcap_records(pcap)
    out = [_block(0x0A0D0D0A, struct.pack(order + "IHHq", _SHB_BOM, 1, 0, -1), order),
           _block(1, struct.pack(order + "HHI", 1, 0, 65535), order)]
    for sec, usec, frame in records:
        ts = sec * 1_000_000 + usec
        out.append(_block(6, struct.pack(order + "IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame))
                          + frame, order))
    return b"".join(out)


def flip_run(data: bytes, start: int, count: int, seed: int) -> bytes:
    """``count`` consecutive bytes from ``start`` replaced by random values that differ from the original."""
    rng, out = random.Random(seed), bytearray(data)
    for i in range(start, min(start + count, len(out))):
        out[i] ^= rng.randrange(1, 256)
    return bytes(out)


def flip_scattered(data: bytes, count: int, seed: int, skip: int = 0) -> bytes:
    """``count`` random bytes (after the first ``skip``) each XOR-ed with a random non-zero value."""
    rng, out = random.Random(seed), bytearray(data)
    for i in rng.sample(range(skip, len(out)), min(count, len(out) - skip)):
        out[i] ^= rng.randrange(1, 256)
    return bytes(out)


def pcapng_boundaries(data: bytes) -> list[int]:
    """Offsets of every block start in a little-endian pcapng (where a cut is structurally interesting)."""
    at, out = 0, []
    while at + 8 <= len(data):
        out.append(at)
        at += struct.unpack_from("<I", data, at + 4)[0]
    return out
