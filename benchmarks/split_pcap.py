"""Split a classic (libpcap) capture at a time: packets before ``--at`` go to the first file, the rest to the
second (a flow that spans the cut becomes two flows). Default cut: the midpoint of the first and last packet.
Used to make the two halves of the lab's quiet day for ``bench_verdicts.py`` (see benchmarks/results/analyst.md).

    python benchmarks/split_pcap.py ../shared/data/lab/baseline/capture.pcap baseA.pcap baseB.pcap
"""

from __future__ import annotations

import argparse
import struct
from collections.abc import Iterator
from pathlib import Path

MAGICS = {b"\xd4\xc3\xb2\xa1": ("<", 1e6), b"\xa1\xb2\xc3\xd4": (">", 1e6),
          b"\x4d\x3c\xb2\xa1": ("<", 1e9), b"\xa1\xb2\x3c\x4d": (">", 1e9)}


def records(path: Path) -> Iterator[tuple[float, bytes]]:
    """(timestamp, record header + data) of every packet; the 24-byte global header is checked, not returned."""
    with path.open("rb") as fh:
        head = fh.read(24)
        if head[:4] not in MAGICS:
            raise ValueError(f"{path}: not a classic pcap file (pcapng is not supported here)")
        endian, scale = MAGICS[head[:4]]
        while len(rec := fh.read(16)) == 16:
            sec, frac, incl, _ = struct.unpack(endian + "IIII", rec)
            data = fh.read(incl)
            if len(data) < incl:
                raise ValueError(f"{path}: truncated packet record")
            yield sec + frac / scale, rec + data


def split(src: Path, first: Path, second: Path, at: float | None = None) -> tuple[int, int, float]:
    """Write the two halves (temporary names, then renamed); returns (packets first, packets second, cut)."""
    if at is None:
        stamps = [t for t, _ in records(src)]
        at = (min(stamps) + max(stamps)) / 2 if stamps else 0.0
    counts = [0, 0]
    tmp = [p.with_name(f".{p.name}.tmp") for p in (first, second)]
    with src.open("rb") as fh:
        header = fh.read(24)
    with tmp[0].open("wb") as a, tmp[1].open("wb") as b:
        a.write(header)
        b.write(header)
        for t, rec in records(src):
            later = t >= at
            (b if later else a).write(rec)
            counts[later] += 1
    for t, p in zip(tmp, (first, second), strict=True):
        t.replace(p)
    return counts[0], counts[1], at


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--at", type=float, help="cut time (epoch seconds; default: the capture's midpoint)")
    args = parser.parse_args(argv)
    n1, n2, at = split(args.src, args.first, args.second, args.at)
    print(f"cut at {at:.6f}: {n1:,} packets -> {args.first}, {n2:,} -> {args.second}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
