"""pcap / pcapng captures to NF flow records, through nfstream (libpcap + nDPI metering in C).

``PcapExtractor(PcapConfig()).frames(path, notes)`` streams flows from ``nfstream.NFStreamer`` with
``statistical_analysis=True`` and converts them ``chunk_rows`` at a time into frames of the columns below
(``extractors.schema`` names); it never holds a capture's flows whole and never uses ``to_pandas``. The
format comes from the magic bytes (``base.sniff_format``), never the extension; gzip'd captures are
decompressed to a temporary file first. nfstream's meters run under ``pcap_meters.MeterGuard``, which has
them send each flow as a packed ``pcap_columns.LeanFlow`` instead of the full pickled ``NFlow``.

Modes: ``nf_compatible=True`` (default) meters like nProbe / the NF datasets: IP-level byte counts
(nfstream ``accounting_mode=1``) and a 120 s active timeout. ``nf_compatible=False`` keeps nfstream's own
defaults (link-layer bytes, 1800 s active timeout) and reproduces nfstream's published test results. In
both modes the idle timeout is 120 s. Packet sizes (``*_PKT*``, ``*_IP_PKT_LEN``) follow the same
accounting: IP length in NF mode, frame length otherwise.

Mapping (src2dst = the flow's first packet's sender = "IN"):

- addresses, ports, ``PROTOCOL``, ``IP_VERSION`` as nfstream gives them; IPv6 flows are kept.
- ``IN/OUT_BYTES``, ``IN/OUT_PKTS`` <- ``src2dst_*`` / ``dst2src_*``.
- ``TCP_FLAGS`` = OR of the flag bits whose ``bidirectional_<flag>_packets`` counter is non-zero;
  ``CLIENT_TCP_FLAGS`` from ``src2dst_*``, ``SERVER_TCP_FLAGS`` from ``dst2src_*``. 0 for non-TCP flows
  (no flag seen), as nProbe reports.
- ``FLOW_DURATION_MILLISECONDS``, ``DURATION_IN/OUT``, ``FLOW_START/END_MILLISECONDS`` from nfstream's
  millisecond first/last-seen times; a direction with no packets has duration 0.
- ``MIN/MAX_IP_PKT_LEN`` and ``SHORTEST/LONGEST_FLOW_PKT`` <- ``bidirectional_min/max_ps``.
- IAT min/max/avg/stddev <- ``src2dst_*_piat_ms`` / ``dst2src_*_piat_ms``; null for a direction with fewer
  than two packets (no interval exists). Stddev is nfstream's sample stddev (0 with a single interval).
- ``*_SECOND_BYTES`` = direction bytes / direction duration in seconds (bytes/s), ``*_AVG_THROUGHPUT`` =
  8 x that (bits/s). Zero-duration rule: 0.0 for a direction with no packets; null when the direction has
  packets but a duration of 0 ms (one packet, or all within one millisecond): a rate over no time is
  undefined, and inventing a floor (1 ms) would fabricate huge rates.
- ``flow_index`` = the flow's position in the order nfstream emits flows (0-based, per file).
- ``APPLICATION_NAME`` = nDPI's name text (always kept, e.g. ``TLS.Google``); ``L7_PROTO`` = nDPI
  ``master.app`` as a float from the id table of the nDPI bundled with nfstream
  (``extractors.ndpi_protocols``), null for ``Unknown``.

Always null from this extractor: ``MIN/MAX_TTL``, ``TCP_WIN_MAX_IN/OUT``, ``RETRANSMITTED_*``,
``NUM_PKTS_*_BYTES``, ``ICMP_TYPE``, ``ICMP_IPV4_TYPE``, ``DNS_*``, ``FTP_COMMAND_RET_CODE``. nfstream's C
meter does not compute them; getting them would take per-packet Python plugins (``NFPlugin.on_update``),
which put a Python call on every packet and would break the ingest speed target.

Bad input: not a capture, empty, missing, unreadable, or no IP flows at all (e.g. an 802.11 capture) ->
``BadInputError``. A capture cut mid-packet or with a corrupt record length keeps the flows of the packets
before the damage and sets ``notes.truncated`` (found by ``pcap_integrity.walk_capture``: libpcap itself
stops silently). A pcapng with a corrupt block in its middle is resynchronised at the next block whose length
matches at both ends: the flows come from a temporary copy of its intact blocks, and the note says how many
bytes were skipped. Any nfstream error becomes a one-line ``BadInputError`` naming the file, including a
meter process that dies mid-capture (which would otherwise hang the reader); closing the frame generator
early terminates the meters (``pcap_meters.MeterGuard``).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import BinaryIO

import nfstream
import pandas as pd
import psutil

from flowhawk.extractors.base import BadInputError, ExtractNotes, sniff_format
from flowhawk.extractors.decompress import bomb_error, expansion_limit
from flowhawk.extractors.pcap_columns import FlowBatch
from flowhawk.extractors.pcap_integrity import CaptureWalk, walk_capture, write_intact
from flowhawk.extractors.pcap_meters import MeterGuard

log = logging.getLogger(__name__)

NF_ACTIVE_TIMEOUT = 120  # nProbe's default lifetime timeout (-t)
NFSTREAM_ACTIVE_TIMEOUT = 1800  # nfstream's default
_MAX_TIMEOUT = 31_536_000  # one year, in seconds


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"PcapConfig.{name}={value!r}: must be an integer in [{low}, {high}]")


@dataclass(frozen=True)
class PcapConfig:
    """How captures are metered. Times in seconds; ``active_timeout=None`` follows ``nf_compatible``."""

    nf_compatible: bool = True  # True: IP-level bytes + 120 s active timeout (nProbe); False: nfstream's
    idle_timeout: int = 120
    active_timeout: int | None = None  # None: 120 when nf_compatible, else nfstream's 1800
    n_meters: int = 0  # metering processes; 0 = nfstream's choice (cores - 1, at least 1)
    n_dissections: int = 20  # packets per flow given to nDPI (0 disables application detection)
    chunk_rows: int = 20_000  # flows per yielded frame
    decode_tunnels: bool = True  # GTP, CAPWAP, TZSP, L2TP, VXLAN, GRE: meter the inner flow

    def __post_init__(self) -> None:
        for name in ("nf_compatible", "decode_tunnels"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"PcapConfig.{name}={getattr(self, name)!r}: must be True or False")
        _check_int("idle_timeout", self.idle_timeout, 0, _MAX_TIMEOUT)
        if self.active_timeout is not None:
            _check_int("active_timeout", self.active_timeout, 0, _MAX_TIMEOUT)
        _check_int("n_meters", self.n_meters, 0, 256)
        _check_int("n_dissections", self.n_dissections, 0, 255)
        _check_int("chunk_rows", self.chunk_rows, 1, 10_000_000)

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> PcapConfig:
        """Build from a mapping (CLI / flow parameters); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"PcapConfig: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(values))

    @property
    def effective_active_timeout(self) -> int:
        if self.active_timeout is not None:
            return self.active_timeout
        return NF_ACTIVE_TIMEOUT if self.nf_compatible else NFSTREAM_ACTIVE_TIMEOUT

    def streamer_kwargs(self) -> dict[str, object]:
        """The ``NFStreamer`` keyword arguments for this config (also used by the ingest benchmark)."""
        return {
            "decode_tunnels": self.decode_tunnels,
            "idle_timeout": self.idle_timeout,
            "active_timeout": self.effective_active_timeout,
            "accounting_mode": 1 if self.nf_compatible else 0,
            "n_dissections": self.n_dissections,
            "statistical_analysis": True,
            "n_meters": _meters(self.n_meters),
        }


def _meters(wanted: int) -> int:
    """Clamp to cores - 1 ourselves: nfstream would print (not log) a warning and clamp anyway."""
    if wanted == 0:
        return 0
    cores = _affinity()
    usable = max(1, (len(cores) if cores else psutil.cpu_count() or 1) - 1)
    if wanted > usable:
        log.warning("n_meters=%d reduced to %d (one core stays with the reader)", wanted, usable)
    return min(wanted, usable)


class PcapExtractor:
    """Extractor protocol implementation for pcap and pcapng (see the module docstring)."""

    def __init__(self, config: PcapConfig | None = None) -> None:
        self.config = config or PcapConfig()
        suffix = "" if self.config.nf_compatible else "-defaults"
        self.name = f"nfstream-{nfstream.__version__}{suffix}"

    def frames(self, path: Path, notes: ExtractNotes) -> Iterator[pd.DataFrame]:
        path = Path(path)
        kind = sniff_format(path)  # BadInputError for missing, empty, unreadable, unknown content
        if kind not in ("pcap", "pcapng"):
            raise BadInputError(path, f"not a packet capture (content looks like {kind})")
        walks: list[CaptureWalk] = []
        with _plain_capture(path, notes) as capture:
            rows = yield from self._frames(path, capture, kind, notes, walks)
        if rows == 0:
            raise BadInputError(path, _no_flows_reason(walks[0]))

    def _frames(self, path: Path, capture: Path, kind: str, notes: ExtractNotes,
                walks: list[CaptureWalk]) -> Iterator[pd.DataFrame]:
        """Yield the frames; return how many flows. A pcapng damaged in its middle (libpcap stops at the first
        bad block) is metered again from a copy of its intact blocks: the walk runs before the first frame is
        yielded, so nothing from the first attempt has left this function."""

        def check() -> None:  # run once the meter is busy, so the walk overlaps its work
            walks.append(_check_integrity(path, capture, kind, notes))

        rows = 0
        with contextlib.closing(_stream_frames(path, capture, self.config, check)) as stream:
            for frame in stream:
                if walks[0].skipped:
                    break  # closing the stream ends its meters
                rows += len(frame)
                yield frame
                del frame  # not kept alive while the next chunk accumulates
        if not walks:
            check()
        if not walks[0].skipped:
            return rows
        with tempfile.TemporaryDirectory(prefix="flowhawk-pcapng-") as tmp:
            intact = Path(tmp) / "intact.pcapng"
            write_intact(capture, intact, walks[0])
            for frame in _stream_frames(path, intact, self.config, lambda: None):
                rows += len(frame)
                yield frame
                del frame
        return rows


def _check_integrity(path: Path, capture: Path, kind: str, notes: ExtractNotes) -> CaptureWalk:
    walk = walk_capture(capture, kind)
    if walk.damaged:
        notes.truncated = True
        notes.add(walk.describe())
        log.info("%s: %s", path, walk.describe())
    return walk


def _no_flows_reason(walk: CaptureWalk) -> str:
    if not walk.packets:
        why = "no IP flows: the capture holds no packets"
    else:
        why = (f"no IP flows in {walk.packets:,} packets (none nfstream could meter as IPv4/IPv6, e.g. an "
               "802.11 or ARP-only capture)")
    return f"{why}; {walk.describe()}" if walk.damaged else why


@contextlib.contextmanager
def _plain_capture(path: Path, notes: ExtractNotes) -> Iterator[Path]:
    """``path`` itself, or for gzip input a decompressed temporary copy (libpcap cannot read gzip)."""
    with path.open("rb") as fh:  # read_head would decompress: look at the raw bytes
        compressed = fh.read(2) == b"\x1f\x8b"
    if not compressed:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="flowhawk-pcap-") as tmp:
        plain = Path(tmp) / (path.stem or "capture")
        with path.open("rb") as src, plain.open("wb") as dst:
            damage = _gunzip(src, dst, expansion_limit(path.stat().st_size))
        if damage == "bomb":
            raise bomb_error(path, expansion_limit(path.stat().st_size))
        if damage:
            notes.truncated = True
            notes.add(f"gzip stream {damage}; using the {plain.stat().st_size:,} bytes decompressed before it")
        yield plain


def _gunzip(src: BinaryIO, dst: BinaryIO, limit: int) -> str | None:
    """Stream-decompress gzip (all members) keeping every byte produced before any damage; return what
    was wrong ("bomb" past ``limit`` bytes), or None. (``gzip.open(...).read`` would drop the last block read
    before a truncation.)"""
    inflate, fed, written = zlib.decompressobj(wbits=31), False, 0
    while block := src.read(1 << 20):
        while block:
            try:
                written += dst.write(inflate.decompress(block, 1 << 24))
                while inflate.unconsumed_tail and written <= limit:
                    written += dst.write(inflate.decompress(inflate.unconsumed_tail, 1 << 24))
            except zlib.error as exc:
                return f"damaged ({exc})"
            if written > limit:
                return "bomb"
            fed, block = True, b""
            if inflate.eof:  # a next member may follow in the unused bytes
                block, inflate, fed = inflate.unused_data, zlib.decompressobj(wbits=31), False
    if fed:
        dst.write(inflate.flush())
        return "truncated (ends before its end-of-stream marker)"
    return None


def _stream_frames(path: Path, capture: Path, config: PcapConfig,
                   on_first_flow: Callable[[], None]) -> Iterator[pd.DataFrame]:
    """Frames of ``config.chunk_rows`` flows, converted as nfstream's meters emit them."""
    batch, done, pending, chunk = FlowBatch(), 0, 0, config.chunk_rows
    with contextlib.closing(_flows(path, capture, config)) as flows:  # closing us ends the meters at once
        for flow in flows:
            batch.add(flow)
            pending += 1
            if pending == 1 and done == 0:
                on_first_flow()
            if pending == chunk:
                yield batch.to_frame(done)
                done, pending = done + pending, 0
    if pending:
        yield batch.to_frame(done)


def _flows(path: Path, capture: Path, config: PcapConfig) -> Iterator[object]:
    """nfstream flows, its errors as one-line BadInputErrors; its meters never outlive the iteration."""
    affinity = _affinity()  # nfstream pins the reading process; give the caller its cores back
    finished, guard = False, None
    try:
        streamer = nfstream.NFStreamer(source=str(capture), **config.streamer_kwargs())
        guard = MeterGuard(streamer)
        flows = iter(streamer)
        while True:
            try:
                flow = next(flows)
            except StopIteration:
                break
            yield flow
        finished = True
    except ValueError as exc:  # nfstream reports engine/capture errors (from its meter) as ValueError
        raise BadInputError(path, f"nfstream cannot read it: {exc}") from None
    except (EOFError, OSError):  # the queue's reader, after the guard saw a meter die
        if guard is not None and guard.died:
            raise BadInputError(path, guard.died) from None
        raise
    finally:
        if guard is not None:
            guard.stop(terminate=not finished)
        if affinity:
            with contextlib.suppress(OSError):
                psutil.Process().cpu_affinity(affinity)


def _affinity() -> list[int] | None:
    """This process's CPU affinity, or None where psutil cannot tell (macOS)."""
    try:
        return psutil.Process().cpu_affinity()
    except (AttributeError, OSError, psutil.Error):
        return None
