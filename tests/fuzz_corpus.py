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

import argparse
import bz2
import gzip
import lzma
import random
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
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


def pcap_boundaries(pcap: bytes) -> list[int]:
    """Offsets of every record start in a little-endian pcap."""
    at, out = 24, []
    while at + 16 <= len(pcap):
        out.append(at)
        at += 16 + struct.unpack_from("<I", pcap, at + 8)[0]
    return out


def _pick(items: list, k: int, rng: random.Random) -> list:
    return items if len(items) <= k else sorted(rng.sample(items, k))


# --- capture cases ------------------------------------------------------------------------------------------
def capture_cases(seed: int, full: bool) -> Iterator[Case]:
    rng = random.Random(seed)
    pcap = synth_pcap(seed=seed, packets=400 if full else 150)
    ng = to_pcapng(pcap)
    yield "pcap-le-usec", pcap
    yield "pcap-be-nsec", to_pcap(pcap, ">", nanoseconds=True)
    yield "pcapng-be", to_pcapng(pcap, ">")
    yield "pcap.gz", gzip.compress(pcap)
    yield "pcap.bz2", bz2.compress(pcap)
    yield "pcap.xz", lzma.compress(pcap)
    yield "pcap-snaplen-0", to_pcap(pcap, snaplen=0)
    yield "pcap-snaplen-huge", to_pcap(pcap, snaplen=0xFFFFFFFF)
    yield "pcap-linktype-80211", to_pcap(pcap, linktype=105)
    yield "pcap-wrong-magic", b"\xd4\xc3\xb2\xa2" + pcap[4:]
    yield "pcap-absurd-length", _set_u32(pcap, pcap_boundaries(pcap)[5] + 8, 0xFFFFFFF0)
    yield "pcapng-absurd-length", _set_u32(ng, pcapng_boundaries(ng)[7] + 4, 0xFFFFFFF0)
    yield "pcap.gz-truncated", gzip.compress(pcap)[: len(pcap) // 3]
    yield "pcap.gz-bomb", _gzip_zeros(pcap[:24], (1024 if full else 96) << 20)
    if full:
        yield "pcap-be-usec", to_pcap(pcap, ">")
        yield "pcap-le-nsec", to_pcap(pcap, nanoseconds=True)
        yield "pcapng-le", ng
        yield "pcap-linktype-user0", to_pcap(pcap, linktype=147)
        yield "pcap-linktype-raw-ip-on-ethernet", to_pcap(pcap, linktype=101)
        yield "pcapng-wrong-bom", ng[:8] + b"\x4d\x3c\x2b\x1b" + ng[12:]
        yield "pcapng.gz", gzip.compress(ng)
        yield "pcap.gz-trailing-garbage", gzip.compress(pcap) + b"garbage" * 10
        yield "pcap-magic-only", pcap[:4]
    pcap_cuts = [1, 4, 23, 24] + [b + d for b in pcap_boundaries(pcap) for d in (0, 8, 15, 16, 20)]
    ng_cuts = [1, 8, 12, 27] + [b + d for b in pcapng_boundaries(ng) for d in (0, 4, 8, 20, 32)]
    for cut in _pick(pcap_cuts, 120 if full else 6, rng):
        yield f"pcap-cut-{cut}", pcap[:cut]
    for cut in _pick(ng_cuts, 120 if full else 6, rng):
        yield f"pcapng-cut-{cut}", ng[:cut]
    for i in range(40 if full else 3):
        n = rng.choice((1, 10, 200))
        data = pcap if i % 2 else ng
        yield f"{'pcap' if i % 2 else 'pcapng'}-flip{n}-{i}", flip_scattered(data, n, seed * 1000 + i, skip=4)
    for i in range(20 if full else 2):
        start = rng.randrange(24, len(ng) - 200)
        yield f"pcapng-run200-{i}", flip_run(ng, start, 200, seed * 1000 + i)


def _set_u32(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + struct.pack("<I", value) + data[at + 4:]


def _gzip_zeros(prefix: bytes, size: int) -> bytes:
    """``prefix`` then ``size`` zero bytes, gzip'd (about 1,000x smaller)."""
    comp = gzip.GzipFile(fileobj=(buf := _Sink()), mode="wb", mtime=0)
    comp.write(prefix)
    zeros = b"\0" * (1 << 20)
    for _ in range(size >> 20):
        comp.write(zeros)
    comp.close()
    return bytes(buf.data)


class _Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, b: bytes) -> int:
        self.data += b
        return len(b)

    def flush(self) -> None:
        pass


# --- Zeek cases ---------------------------------------------------------------------------------------------
ZEEK_FIELDS = ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "service", "duration",
               "orig_bytes", "resp_bytes", "conn_state", "local_orig", "missed_bytes", "history", "orig_pkts",
               "orig_ip_bytes", "resp_pkts", "resp_ip_bytes", "tunnel_parents"]
ZEEK_TYPES = ["time", "string", "addr", "port", "addr", "port", "enum", "string", "interval", "count", "count",
              "string", "bool", "count", "string", "count", "count", "count", "count", "set[string]"]


def zeek_rows(n: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        rows.append([f"{1_700_000_000 + i}.{rng.randrange(10**6):06d}", f"C{i:08x}", f"10.0.0.{1 + i % 50}",
                     str(rng.randrange(1024, 65536)), "10.0.1.1", rng.choice(("80", "443", "53")),
                     rng.choice(("tcp", "udp")), rng.choice(("http", "ssl", "dns", "-")),
                     f"{rng.random():.6f}", str(rng.randrange(1000)), str(rng.randrange(1000)), "SF", "T", "0",
                     "ShADadFf", str(rng.randrange(1, 20)), str(rng.randrange(100, 5000)), str(rng.randrange(1, 20)),
                     str(rng.randrange(100, 5000)), "(empty)"])
    return rows


def zeek_tsv(rows: list[list[str]], fields: list[str] = ZEEK_FIELDS, header: bool = True) -> bytes:
    head = ["#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)", "#unset_field\t-", "#path\tconn",
            "#fields\t" + "\t".join(fields), "#types\t" + "\t".join(ZEEK_TYPES[: len(fields)])] if header else []
    return ("\n".join(head + ["\t".join(r) for r in rows]) + "\n#close\t2024-01-01-00-00-00\n").encode()


def zeek_json(rows: list[list[str]]) -> list[dict]:
    out = []
    for r in rows:
        rec: dict[str, object] = {}
        for name, kind, value in zip(ZEEK_FIELDS, ZEEK_TYPES, r, strict=True):
            if value in ("-", "(empty)"):
                continue
            rec[name] = float(value) if kind in ("time", "interval") else int(value) if kind in ("port", "count") \
                else value
        out.append(rec)
    return out


def zeek_cases(seed: int, full: bool) -> Iterator[Case]:
    import json

    rng = random.Random(seed)
    rows = zeek_rows(30, seed)
    yield "zeek-valid.log", zeek_tsv(rows)
    yield "zeek-wrong-field-counts.log", zeek_tsv([r[:-1] if i % 3 == 0 else [*r, "x"] if i % 3 == 1 else r
                                                   for i, r in enumerate(rows)])
    columns = range(len(ZEEK_FIELDS)) if full else rng.sample(range(len(ZEEK_FIELDS)), 4)
    for col in columns:
        for marker in ("-", "(empty)", ""):
            bad = [[*r[:col], marker, *r[col + 1:]] for r in rows]
            yield f"zeek-{marker or 'blank'}-in-{ZEEK_FIELDS[col]}.log", zeek_tsv(bad)
    yield "zeek-bad-utf8.log", zeek_tsv(rows).replace(b"10.0.0.1\t", b"10.0.\xff\xfe.1\t")
    yield "zeek-missing-fields.log", b"\n".join(li for li in zeek_tsv(rows).split(b"\n")
                                                if not li.startswith(b"#fields"))
    yield "zeek-huge-numbers.log", zeek_tsv([[*r[:16], "9" * 23, *r[17:]] for r in rows])
    yield "zeek-negative-and-inf.log", zeek_tsv([[*r[:8], "inf", *r[9:15], "-4", *r[16:]] for r in rows])
    records = zeek_json(rows)
    wrong = [{**records[0], "id.orig_p": "abc"}, {**records[1], "ts": "yesterday"}, {**records[2], "ts": [1, 2]},
             {**records[3], "orig_pkts": -1}, {**records[4], "orig_ip_bytes": 1e300}, [1, 2, 3],
             {**records[5], "id.orig_h": {"nested": True}}, {k: None for k in records[6]}, "a string",
             {**records[7], "duration": "NaN"}, {**records[8], "id.resp_p": 1 << 70}, *records[9:]]
    yield "zeek-json-wrong-types.log", "\n".join(json.dumps(r) for r in wrong).encode()
    yield "zeek-json-valid.log.gz", gzip.compress("\n".join(json.dumps(r) for r in records).encode())
    yield "zeek-giant-line.log.gz", _gzip_zeros(b"#fields\tts\tid.orig_h\n1", 32 << 20)
    if full:
        yield "zeek-header-only.log", zeek_tsv([])
        yield "zeek-crlf.log", zeek_tsv(rows).replace(b"\n", b"\r\n")
        yield "zeek-bad-separator.log", b"#separator \\x\n" + zeek_tsv(rows)
        yield "zeek-duplicate-fields.log", zeek_tsv(rows, ZEEK_FIELDS[:3] + ZEEK_FIELDS[2:-1])
        yield "zeek-iot23-plain-header.log", ("\t".join(ZEEK_FIELDS) + "\n").encode() + zeek_tsv(rows, header=False)
        yield "zeek-nul-bytes.log", zeek_tsv(rows).replace(b"tcp", b"t\0p")
        yield "zeek.gz-truncated", gzip.compress(zeek_tsv(rows))[:200]
        for i in range(10):
            yield f"zeek-flip10-{i}", flip_scattered(zeek_tsv(rows), 10, seed * 100 + i)


# --- NF CSV cases -------------------------------------------------------------------------------------------
NF_COLUMNS = ["IPV4_SRC_ADDR", "L4_SRC_PORT", "IPV4_DST_ADDR", "L4_DST_PORT", "PROTOCOL", "L7_PROTO", "IN_BYTES",
              "IN_PKTS", "OUT_BYTES", "OUT_PKTS", "TCP_FLAGS", "FLOW_DURATION_MILLISECONDS", "DURATION_IN",
              "DURATION_OUT", "SRC_TO_DST_SECOND_BYTES", "Label", "Attack"]


def nf_rows(n: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    return [[f"192.168.1.{1 + i % 200}", str(rng.randrange(1024, 65536)), "192.168.100.6", "80", "6", "7.0",
             str(rng.randrange(40, 9000)), str(rng.randrange(1, 30)), str(rng.randrange(40, 9000)),
             str(rng.randrange(1, 30)), "22", str(rng.randrange(0, 5000)), "0", "0", "140.0", str(i % 2),
             "DoS" if i % 2 else "Benign"] for i in range(n)]


def nf_csv(rows: list[list[str]], columns: list[str] = NF_COLUMNS) -> bytes:
    return ("\n".join([",".join(columns)] + [",".join(r) for r in rows]) + "\n").encode()


def nf_cases(seed: int, full: bool) -> Iterator[Case]:
    rng = random.Random(seed)
    rows = nf_rows(40, seed)
    yield "nf-valid.csv", nf_csv(rows)
    numeric = [i for i, c in enumerate(NF_COLUMNS) if c not in ("IPV4_SRC_ADDR", "IPV4_DST_ADDR", "Attack")]
    values = ("inf", "-inf", "nan", "-7", "9" * 23, "1e400", "18446744073709551616", "0x10", "")
    for col in numeric if full else rng.sample(numeric, 3):
        bad = [[*r[:col], values[i % len(values)], *r[col + 1:]] for i, r in enumerate(rows)]
        yield f"nf-bad-values-in-{NF_COLUMNS[col]}.csv", nf_csv(bad)
    yield "nf-missing-IN_BYTES.csv", nf_csv([r[:6] + r[7:] for r in rows], NF_COLUMNS[:6] + NF_COLUMNS[7:])
    yield "nf-extra-columns.csv", nf_csv([[*r, "x", "1"] for r in rows], [*NF_COLUMNS, "Dataset", "MYSTERY"])
    yield "nf-duplicated-header.csv", nf_csv([[*r, "5"] for r in rows], [*NF_COLUMNS, "IN_BYTES"])
    yield "nf-ragged-rows.csv", nf_csv([r[:5] if i % 4 == 0 else [*r, "1"] if i % 4 == 1 else r
                                        for i, r in enumerate(rows)])
    yield "nf-bad-utf8.csv", nf_csv(rows).replace(b"DoS", b"D\xffS")
    yield "nf-giant-line.csv.gz", _gzip_zeros(nf_csv([]), (256 if full else 96) << 20)
    if full:
        yield "nf-header-only.csv", nf_csv([])
        yield "nf-bom-crlf.csv", b"\xef\xbb\xbf" + nf_csv(rows).replace(b"\n", b"\r\n")
        yield "nf-quoted.csv", nf_csv([[f'"{v}"' for v in r] for r in rows])
        yield "nf-unterminated-quote.csv", nf_csv(rows[:5]) + b'"10.0.0.1,1,2\n' + nf_csv(rows[5:])[200:]
        yield "nf.csv.gz", gzip.compress(nf_csv(rows))
        yield "nf.csv.bz2", bz2.compress(nf_csv(rows))
        yield "nf-nul-bytes.csv", nf_csv(rows).replace(b"DoS", b"D\0S")
        for i in range(10):
            yield f"nf-flip10-{i}", flip_scattered(nf_csv(rows), 10, seed * 100 + i, skip=200)


# --- running a case -----------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """How one case ended: ``ingested`` (``noted`` when the extract notes report damage), ``duplicate``,
    ``quarantined`` (with its one-line reason) or ``crash`` (an exception escaped: always a bug)."""

    name: str
    status: str
    reason: str = ""
    flows: int = 0
    noted: bool = False


def run_case(path: Path, lake: Path) -> Outcome:
    """Ingest one case into ``lake`` and check the lake after it: no temporary leftovers, every batch's
    manifest row count equals its Parquet rows, a quarantined case has a one-line reason file."""
    from flowhawk.lake.ingest import IngestConfig, ingest_paths

    try:
        result = ingest_paths([path], IngestConfig(lake=lake)).files[0]
    except Exception as exc:
        return Outcome(path.name, "crash", f"{type(exc).__name__}: {exc}")
    outcome = Outcome(path.name, result.status, result.reason or "", result.flows, bool(result.notes))
    problem = lake_problem(lake)
    if problem:
        return Outcome(path.name, "crash", problem)
    if result.status == "quarantined":
        reasons = list((lake / "quarantine").glob(f"*-{path.name}.reason.txt"))
        if len(reasons) != 1 or reasons[0].read_text().count("\n") != 1 or "extractor failed" in outcome.reason:
            return Outcome(path.name, "crash", f"no one-line anticipated reason: {outcome.reason}")
    return outcome


def lake_problem(lake: Path) -> str | None:
    """What is wrong with ``lake`` (a partial batch, a leftover temporary), or None."""
    import pyarrow.parquet as pq

    from flowhawk.lake.store import Lake

    store = Lake(lake)
    leftovers = [p.name for d in (store.flows_dir, store.quarantine_dir) if d.is_dir() for p in d.iterdir()
                 if p.name.startswith(".tmp-")]
    if leftovers:
        return f"temporary leftovers {leftovers}"
    for batch in store.batches():
        manifest = store.batch_manifest(batch)
        parts = {f["part"]: f["rows"] for f in manifest["files"]}
        on_disk = {p.name: pq.ParquetFile(p).metadata.num_rows for p in store.batch_dir(batch).glob("part-*")}
        if parts != on_disk or manifest["rows"] != sum(parts.values()):
            return f"batch {batch}: manifest {parts} but parts on disk {on_disk}"
    return None


def tally(outcomes: list[Outcome]) -> dict[str, int]:
    """Counts by outcome (``ingested`` split into clean and with a note)."""
    counts: dict[str, int] = {}
    for o in outcomes:
        key = "ingested with a note" if o.status == "ingested" and o.noted else o.status
        counts[key] = counts.get(key, 0) + 1
    return counts


def cases(seed: int = 11, size: str = "small", captures: bool = True, text: bool = True) -> Iterator[Case]:
    """Every case of the corpus, in a fixed order for a given seed. ``size``: ``small`` or ``full``;
    ``captures`` / ``text``: include the capture cases / the Zeek and NF CSV cases."""
    if size not in ("small", "full"):
        raise ValueError(f"size {size!r}: must be 'small' or 'full'")
    full = size == "full"
    if text:
        yield from nf_cases(seed, full)
        yield from zeek_cases(seed, full)
    if captures:
        yield from capture_cases(seed, full)


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the fuzzing corpus into a folder.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", choices=("small", "full"), default="small")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    n = 0
    for name, data in cases(args.seed, args.size):
        (args.out / name).write_bytes(data)
        n += 1
    print(f"{n} cases written to {args.out}")


if __name__ == "__main__":
    main()
