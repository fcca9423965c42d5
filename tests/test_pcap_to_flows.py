"""PcapExtractor on captures the tests write themselves (scapy / raw pcap records); the real-data checks
are in tests/test_nfstream_parity.py.

Unit tests need no shared data: tiny captures are built in tmp_path with scapy, whose packet lengths and
timestamps give the expected byte counts, durations and inter-arrival times independently of nfstream.
"""

from __future__ import annotations

import gzip
import multiprocessing
import os
import signal
import struct
import time
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scapy.all import ARP, DNS, DNSQR, ICMP, IP, TCP, UDP, Ether, IPv6, Raw, wrpcap
from scapy.utils import wrpcapng

from flowhawk.extractors.base import BadInputError, ExtractNotes
from flowhawk.extractors.ndpi_protocols import l7_proto, load_table, read_engine_table, table_versions
from flowhawk.extractors.pcap_columns import FlowBatch, LeanFlow
from flowhawk.extractors.pcap_integrity import walk_capture
from flowhawk.extractors.pcap_meters import MeterGuard
from flowhawk.extractors.pcap_to_flows import PcapConfig, PcapExtractor
from flowhawk.extractors.schema import COLUMN_NAMES, conform

CLIENT, SERVER, DNS_SERVER, PINGED = "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"
HTTP_GET = b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: test\r\n\r\n"
HTTP_OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello"


def _eth():
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")  # explicit: no ARP/route lookups


def _at(packet, seconds: str):
    packet.time = Decimal(seconds)
    return packet


def _packets() -> list:
    c2s = _eth() / IP(src=CLIENT, dst=SERVER)
    s2c = _eth() / IP(src=SERVER, dst=CLIENT)
    cp, sp = {"sport": 40000, "dport": 80}, {"sport": 80, "dport": 40000}
    return [
        _at(c2s / TCP(**cp, flags="SEC", seq=100), "1000.000"),  # SYN + ECE + CWR
        _at(s2c / TCP(**sp, flags="SAE", seq=500, ack=101), "1000.010"),  # SYN-ACK + ECE
        _at(c2s / TCP(**cp, flags="A", seq=101, ack=501), "1000.020"),
        _at(c2s / TCP(**cp, flags="PA", seq=101, ack=501) / Raw(HTTP_GET), "1000.030"),
        _at(s2c / TCP(**sp, flags="A", seq=501, ack=101 + len(HTTP_GET)) / Raw(HTTP_OK), "1000.050"),
        _at(c2s / TCP(**cp, flags="FA", seq=101 + len(HTTP_GET), ack=501 + len(HTTP_OK)), "1000.070"),
        _at(s2c / TCP(**sp, flags="FA", seq=501 + len(HTTP_OK), ack=102 + len(HTTP_GET)), "1000.080"),
        _at(c2s / TCP(**cp, flags="A", seq=102 + len(HTTP_GET), ack=502 + len(HTTP_OK)), "1000.090"),
        _at(_eth() / IP(src=CLIENT, dst=DNS_SERVER) / UDP(sport=33333, dport=53)
            / DNS(id=7, rd=1, qd=DNSQR(qname="example.com")), "1001.000"),
        _at(_eth() / IP(src=DNS_SERVER, dst=CLIENT) / UDP(sport=53, dport=33333)
            / DNS(id=7, qr=1, qd=DNSQR(qname="example.com")), "1001.004"),
        _at(_eth() / IP(src=CLIENT, dst=PINGED) / ICMP(), "1002.000"),  # one packet: zero duration
        _at(_eth() / IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=5000, dport=6000) / Raw(b"x" * 10), "1003.0"),
        _at(_eth() / IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=5000, dport=6000) / Raw(b"y" * 30), "1003.5"),
        _at(_eth() / ARP(psrc=CLIENT, pdst=SERVER), "1004.0"),  # not IP: no flow
    ]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pcap") / "tiny.pcap"
    wrpcap(str(path), _packets())
    return path


def _extract(path: Path, config: PcapConfig | None = None) -> tuple[pd.DataFrame, ExtractNotes]:
    notes = ExtractNotes()
    frames = list(PcapExtractor(config or PcapConfig()).frames(path, notes))
    return pd.concat(frames, ignore_index=True), notes


@pytest.fixture(scope="module")
def flows(tiny) -> pd.DataFrame:
    frame, notes = _extract(tiny)
    assert not notes.truncated and notes.messages == []
    return frame


def _one(flows: pd.DataFrame, **match) -> pd.Series:
    hit = flows
    for column, value in match.items():
        hit = hit[hit[column] == value]
    assert len(hit) == 1, f"{match}: {len(hit)} flows"
    return hit.iloc[0]


def _ip_bytes(packets, src: str) -> int:
    return sum(len(p[IP]) for p in packets if IP in p and p[IP].src == src)


# --- config ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "value", "fragment"), [
    ("idle_timeout", -1, "[0, 31536000]"), ("active_timeout", "1", "[0, 31536000]"),
    ("n_meters", 1.5, "[0, 256]"), ("n_dissections", 256, "[0, 255]"), ("chunk_rows", 0, "[1, 10000000]"),
    ("nf_compatible", 1, "True or False"), ("decode_tunnels", "yes", "True or False"),
])
def test_config_rejects_bad_values_naming_the_parameter_and_range(key, value, fragment):
    with pytest.raises(ValueError, match=key) as err:
        PcapConfig(**{key: value})
    assert fragment in str(err.value)


def test_config_modes_and_factory():
    nf, raw = PcapConfig(), PcapConfig(nf_compatible=False)
    assert nf.streamer_kwargs()["accounting_mode"] == 1 and nf.effective_active_timeout == 120
    assert raw.streamer_kwargs()["accounting_mode"] == 0 and raw.effective_active_timeout == 1800
    assert PcapConfig(active_timeout=30).effective_active_timeout == 30
    assert PcapConfig.from_mapping({"chunk_rows": 5}).chunk_rows == 5
    with pytest.raises(ValueError, match="unknown key"):
        PcapConfig.from_mapping({"chunk_rows": 5, "chunk_size": 5})
    assert PcapExtractor().name.startswith("nfstream-6.")
    assert PcapExtractor(raw).name != PcapExtractor(nf).name


# --- mapping on the tiny capture ------------------------------------------------------------------------

def test_flows_and_directional_counts(flows):
    packets = _packets()
    assert len(flows) == 4  # TCP, DNS, ICMP, IPv6 UDP; the ARP packet makes no flow
    assert set(flows.columns) <= set(COLUMN_NAMES)
    tcp = _one(flows, PROTOCOL=6)
    assert (tcp.IPV4_SRC_ADDR, tcp.L4_SRC_PORT, tcp.IPV4_DST_ADDR, tcp.L4_DST_PORT) == (CLIENT, 40000, SERVER, 80)
    assert (tcp.IN_PKTS, tcp.OUT_PKTS) == (5, 3)
    tcp_pkts = packets[:8]
    assert _ip_bytes(tcp_pkts, CLIENT) == tcp.IN_BYTES and _ip_bytes(tcp_pkts, SERVER) == tcp.OUT_BYTES
    sizes = [len(p[IP]) for p in tcp_pkts]
    assert (min(sizes), max(sizes)) == (tcp.MIN_IP_PKT_LEN, tcp.MAX_IP_PKT_LEN)
    assert (min(sizes), max(sizes)) == (tcp.SHORTEST_FLOW_PKT, tcp.LONGEST_FLOW_PKT)
    assert tcp.IP_VERSION == 4


def test_tcp_flags_are_or_of_flag_bits_per_direction(flows):
    tcp = _one(flows, PROTOCOL=6)
    fin, syn, psh, ack, ece, cwr = 1, 2, 8, 16, 64, 128
    assert syn | ece | cwr | ack | psh | fin == tcp.CLIENT_TCP_FLAGS
    assert syn | ack | ece | fin == tcp.SERVER_TCP_FLAGS
    assert tcp.TCP_FLAGS == tcp.CLIENT_TCP_FLAGS | tcp.SERVER_TCP_FLAGS
    assert (_one(flows, PROTOCOL=17, L4_DST_PORT=53)[["TCP_FLAGS", "CLIENT_TCP_FLAGS"]] == 0).all()


def test_times_durations_iat_and_rates(flows):
    tcp = _one(flows, PROTOCOL=6)
    assert tcp.FLOW_START_MILLISECONDS == 1_000_000 and tcp.FLOW_END_MILLISECONDS == 1_000_090
    assert (tcp.FLOW_DURATION_MILLISECONDS, tcp.DURATION_IN, tcp.DURATION_OUT) == (90, 90, 70)
    # client packets at 0, 20, 30, 70, 90 ms; server at 10, 50, 80 ms
    assert (tcp.SRC_TO_DST_IAT_MIN, tcp.SRC_TO_DST_IAT_MAX, tcp.SRC_TO_DST_IAT_AVG) == (10, 40, 22.5)
    assert pytest.approx(np.std([20, 10, 40, 20], ddof=1)) == tcp.SRC_TO_DST_IAT_STDDEV
    assert (tcp.DST_TO_SRC_IAT_MIN, tcp.DST_TO_SRC_IAT_MAX, tcp.DST_TO_SRC_IAT_AVG) == (30, 40, 35)
    assert pytest.approx(tcp.IN_BYTES / 0.090) == tcp.SRC_TO_DST_SECOND_BYTES
    assert pytest.approx(tcp.OUT_BYTES / 0.070) == tcp.DST_TO_SRC_SECOND_BYTES
    assert pytest.approx(8 * tcp.IN_BYTES / 0.090) == tcp.SRC_TO_DST_AVG_THROUGHPUT


def test_zero_duration_and_single_packet_directions_are_null_not_zero(flows):
    ping = _one(flows, PROTOCOL=1)
    assert (ping.IN_PKTS, ping.OUT_PKTS, ping.FLOW_DURATION_MILLISECONDS) == (1, 0, 0)
    assert np.isnan(ping.SRC_TO_DST_SECOND_BYTES) and np.isnan(ping.SRC_TO_DST_AVG_THROUGHPUT)
    assert ping.DST_TO_SRC_SECOND_BYTES == 0.0 and ping.DST_TO_SRC_AVG_THROUGHPUT == 0.0  # nothing sent
    iat = [c for c in flows.columns if "_IAT_" in c]
    assert ping[iat].isna().all()
    dns = _one(flows, PROTOCOL=17, L4_DST_PORT=53)
    assert dns.FLOW_DURATION_MILLISECONDS == 4 and dns[iat].isna().all()  # one packet each way


def test_ipv6_flow_is_kept(flows):
    v6 = _one(flows, IP_VERSION=6)
    assert (v6.IPV4_SRC_ADDR, v6.IPV4_DST_ADDR, v6.PROTOCOL) == ("fd00::1", "fd00::2", 17)
    assert (v6.IN_PKTS, v6.FLOW_DURATION_MILLISECONDS, v6.SRC_TO_DST_IAT_MIN) == (2, 500, 500)
    assert v6.IN_BYTES == 2 * 40 + 2 * 8 + 10 + 30  # IPv6 + UDP headers + payloads


def test_application_name_and_l7_proto(flows):
    table = load_table()
    tcp, dns = _one(flows, PROTOCOL=6), _one(flows, PROTOCOL=17, L4_DST_PORT=53)
    assert tcp.APPLICATION_NAME.split(".")[0] == "HTTP" and int(tcp.L7_PROTO) == table["HTTP"]
    assert dns.APPLICATION_NAME.split(".")[0] == "DNS" and int(dns.L7_PROTO) == table["DNS"]
    assert table["ICMP"] == _one(flows, PROTOCOL=1).L7_PROTO


def test_fields_nfstream_cannot_give_are_left_for_conform_to_null(flows):
    table = conform(flows, batch_id="b", source_file="tiny.pcap", extractor="x")
    for column in ("MIN_TTL", "TCP_WIN_MAX_IN", "RETRANSMITTED_IN_PKTS", "NUM_PKTS_UP_TO_128_BYTES",
                   "ICMP_TYPE", "DNS_QUERY_ID", "FTP_COMMAND_RET_CODE"):
        assert table.column(column).null_count == table.num_rows
    assert table.column("IN_BYTES").null_count == 0


def test_nfstream_default_mode_counts_link_layer_bytes(tiny, flows):
    raw, _ = _extract(tiny, PcapConfig(nf_compatible=False))
    tcp_nf, tcp_raw = _one(flows, PROTOCOL=6), _one(raw, PROTOCOL=6)
    assert tcp_raw.IN_BYTES == tcp_nf.IN_BYTES + 14 * tcp_nf.IN_PKTS  # + Ethernet header per packet


def test_chunks_are_bounded_and_keep_order(tiny, flows):
    notes = ExtractNotes()
    frames = list(PcapExtractor(PcapConfig(chunk_rows=3)).frames(tiny, notes))
    assert [len(f) for f in frames] == [3, 1]
    assert [list(f.flow_index) for f in frames] == [[0, 1, 2], [3]]
    pd.testing.assert_frame_equal(pd.concat(frames, ignore_index=True), flows)


# --- formats by content ---------------------------------------------------------------------------------

def test_pcapng_with_a_misleading_name_and_pcap_named_txt(tmp_path, flows):
    ng = tmp_path / "really-pcapng.pcap"
    wrpcapng(str(ng), _packets())
    assert ng.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    from_ng, _ = _extract(ng)
    pd.testing.assert_frame_equal(from_ng, flows)
    txt = tmp_path / "capture.txt"
    wrpcap(str(txt), _packets())
    assert len(_extract(txt)[0]) == 4


def test_gzipped_capture_is_read(tmp_path, tiny, flows):
    gz = tmp_path / "tiny.pcap.gz"
    gz.write_bytes(gzip.compress(tiny.read_bytes()))
    pd.testing.assert_frame_equal(_extract(gz)[0], flows)


def test_truncated_gzip_keeps_what_was_decompressed(tmp_path):
    plain = tmp_path / "udp.pcap"
    _udp_pcap(plain, 2000)  # 2,000 one-packet flows
    packed = gzip.compress(plain.read_bytes())
    cut = tmp_path / "udp.pcap.gz"
    cut.write_bytes(packed[: len(packed) * 3 // 4])
    frame, notes = _extract(cut)
    assert notes.truncated and any("gzip stream truncated" in m for m in notes.messages)
    assert 1000 < len(frame) < 2000


# --- bad input ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("content", "reason"), [
    (b"", "empty file"),
    (os.urandom(64).replace(b"\x00", b"\x01")[:60] + b"\x00\x00\x00\x00", "unrecognised binary"),
    (b"just some notes\nnot a capture\n", "unrecognised text"),
    (b"#separator \\x09\n#fields\tts\tuid\tid.orig_h\n", "not a packet capture"),
])
def test_non_captures_raise_one_line_errors_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "input.pcap"
    path.write_bytes(content)
    with pytest.raises(BadInputError, match=reason) as err:
        list(PcapExtractor().frames(path, ExtractNotes()))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_directory_and_unreadable_paths(tmp_path, tiny):
    with pytest.raises(BadInputError, match="no such file"):
        list(PcapExtractor().frames(tmp_path / "nope.pcap", ExtractNotes()))
    with pytest.raises(BadInputError, match="directory"):
        list(PcapExtractor().frames(tmp_path, ExtractNotes()))
    if os.geteuid() == 0:
        return  # root reads mode-000 files; the permission case cannot be produced
    locked = tmp_path / "locked.pcap"
    locked.write_bytes(tiny.read_bytes())
    locked.chmod(0)
    with pytest.raises(BadInputError, match="permission denied"):
        list(PcapExtractor().frames(locked, ExtractNotes()))


def test_capture_without_ip_flows_raises(tmp_path):
    arp = tmp_path / "arp.pcap"
    wrpcap(str(arp), [_eth() / ARP(psrc="10.0.0.1", pdst=f"10.0.0.{i}") for i in range(2, 6)])
    with pytest.raises(BadInputError, match="no IP flows in 4 packets"):
        list(PcapExtractor().frames(arp, ExtractNotes()))


def test_capture_cut_inside_its_file_header_raises(tmp_path, tiny):
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(tiny.read_bytes()[:20])
    with pytest.raises(BadInputError, match="nfstream cannot read it") as err:
        list(PcapExtractor().frames(cut, ExtractNotes()))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("writer", [wrpcap, wrpcapng])
def test_truncated_capture_keeps_flows_before_the_damage(tmp_path, writer, flows):
    whole = tmp_path / "whole.cap"
    writer(str(whole), _packets()[:10])  # TCP + DNS flows
    cut = tmp_path / "cut.cap"
    cut.write_bytes(whole.read_bytes()[:-30])  # mid-way through the DNS response
    frame, notes = _extract(cut)
    assert notes.truncated and "truncated" in notes.messages[0] and "9 packets" in notes.messages[0]
    dns = _one(frame, PROTOCOL=17)
    assert (dns.IN_PKTS, dns.OUT_PKTS) == (1, 0)
    pd.testing.assert_series_equal(_one(frame, PROTOCOL=6), _one(flows, PROTOCOL=6), check_names=False)


def test_walk_capture_finds_intact_cut_and_corrupt_records(tmp_path, tiny):
    data = tiny.read_bytes()
    assert not walk_capture(tiny, "pcap").damaged and walk_capture(tiny, "pcap").packets == 14
    for name, blob, packets in [("header", data[:-3], 13), ("record-header", data + b"\x00" * 7, 14)]:
        path = tmp_path / f"{name}.pcap"
        path.write_bytes(blob)
        walk = walk_capture(path, "pcap")
        assert walk.damaged and walk.packets == packets, (name, walk)
    corrupt = bytearray(data)
    struct.pack_into("<I", corrupt, 24 + 8, 0x7FFFFFFF)  # first record claims 2 GiB
    path = tmp_path / "corrupt.pcap"
    path.write_bytes(bytes(corrupt))
    walk = walk_capture(path, "pcap")
    assert walk.damaged and walk.packets == 0 and "2,147,483,647" in walk.damage


# --- streaming: an abandoned iteration stops nfstream's meter -------------------------------------------

def _udp_pcap(path: Path, n: int) -> None:
    """n one-packet UDP flows, 10 ms apart (so flows start expiring after 120 s of capture time)."""
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    ip_udp = struct.Struct("!BBHHHBBH4s4sHHHH")
    with path.open("wb") as fh:
        fh.write(header)
        for i in range(n):
            ip = ip_udp.pack(0x45, 0, 28, 0, 0, 64, 17, 0, bytes([10, 1, i >> 16 & 255, i >> 8 & 255]),
                             bytes([10, 2, 0, i & 255]), 1024 + i % 60000, 9999, 8, 0)
            frame = b"\x00" * 12 + b"\x08\x00" + ip
            ts = 1_000_000 + i * 10_000
            fh.write(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(frame), len(frame)) + frame)


def _meters_alive() -> list:
    return [p for p in multiprocessing.active_children() if p.is_alive()]


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> Path:
    """60,000 one-packet flows: more than nfstream's queue holds (32,767), so a meter cannot finish
    while its consumer is paused."""
    path = tmp_path_factory.mktemp("many") / "many.pcap"
    _udp_pcap(path, 60_000)
    return path


def test_closing_the_generator_early_stops_the_meter(many):
    frames = PcapExtractor(PcapConfig(chunk_rows=100)).frames(many, ExtractNotes())
    assert len(next(frames)) == 100
    assert _meters_alive(), "the meter should still be running (blocked on the full queue)"
    frames.close()
    assert _meters_alive() == []


def test_a_meter_that_dies_raises_instead_of_hanging(many):
    frames = PcapExtractor(PcapConfig(chunk_rows=100)).frames(many, ExtractNotes())
    next(frames)
    meters = _meters_alive()
    assert meters
    for meter in meters:
        os.kill(meter.pid, signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(BadInputError, match=r"meter process died \(killed by signal 9\)") as err:
        for _ in frames:
            pass
    assert time.monotonic() - started < 30 and str(many) in str(err.value)
    assert _meters_alive() == []


def test_lean_transport_gives_the_same_frame_as_full_nfstream_flows(tiny):
    from nfstream import NFStreamer

    kwargs = PcapConfig().streamer_kwargs()
    lean_streamer = NFStreamer(source=str(tiny), **kwargs)
    guard = MeterGuard(lean_streamer)
    lean, full = FlowBatch(), FlowBatch()
    kinds = set()
    for flow in lean_streamer:
        kinds.add(type(flow))
        lean.add(flow)
    guard.stop(terminate=False)
    for flow in NFStreamer(source=str(tiny), **kwargs):  # not guarded: full NFlow objects
        kinds.add(type(flow).__name__)
        full.add(flow)
    assert kinds == {LeanFlow, "NFlow"}
    pd.testing.assert_frame_equal(lean.to_frame(), full.to_frame())


# --- nDPI id table --------------------------------------------------------------------------------------

def test_shipped_ndpi_table_matches_the_bundled_ndpi():
    live = read_engine_table()
    assert table_versions() == {k: live[k] for k in ("nfstream_version", "ndpi_version")}
    assert load_table() == live["protocols"]


@pytest.mark.parametrize(("name", "expected"), [
    ("TLS.Google", 91.126), ("DNS", 5.0), ("HTTP.Amazon", 7.178), ("ICMP", 81.0),
])
def test_l7_proto_is_master_dot_app(name, expected):
    assert l7_proto(name) == expected


@pytest.mark.parametrize("name", ["Unknown", "", None, "NoSuchProto", "TLS.NoSuchApp"])
def test_l7_proto_unknown_is_nan(name):
    assert np.isnan(l7_proto(name))


# --- pcapng damaged in its middle (issue 11) -------------------------------------------------------------------
@pytest.fixture(scope="module")
def synth_pcapng() -> bytes:
    from tests.fuzz_corpus import synth_pcap, to_pcapng

    return to_pcapng(synth_pcap(seed=7, packets=2000))


def _flow_keys(path: Path) -> tuple[set, ExtractNotes]:
    notes = ExtractNotes()
    frame = pd.concat(list(PcapExtractor().frames(path, notes)))
    cols = ["IPV4_SRC_ADDR", "L4_SRC_PORT", "IPV4_DST_ADDR", "L4_DST_PORT", "PROTOCOL"]
    return set(frame[cols].itertuples(index=False)), notes


@pytest.mark.parametrize("damage", ["run", "scattered"])
def test_pcapng_resynchronises_after_a_corrupt_block(tmp_path, synth_pcapng, damage):
    """200 bytes flipped (one run across block headers at 10 % of the file, or 200 scattered bytes): the walk
    skips to the next block whose length matches at both ends and the flows after the damage are kept (libpcap
    alone stopped at the first bad block: 27 of 513 flows for the run)."""
    from tests.fuzz_corpus import flip_run, flip_scattered, pcapng_boundaries

    clean = tmp_path / "clean.pcapng"
    clean.write_bytes(synth_pcapng)
    if damage == "run":
        start = pcapng_boundaries(synth_pcapng)[len(pcapng_boundaries(synth_pcapng)) // 10] - 40
        broken = flip_run(synth_pcapng, start, 200, seed=3)
    else:
        broken = flip_scattered(synth_pcapng, 200, seed=2, skip=100)
    bad = tmp_path / "bad.pcapng"
    bad.write_bytes(broken)
    want, _ = _flow_keys(clean)
    got, notes = _flow_keys(bad)
    assert len(want & got) >= 0.95 * len(want), (len(want & got), len(want))
    assert notes.truncated and "bytes skipped" in notes.messages[0] and "resynchronised" in notes.messages[0]
    walk = walk_capture(bad, "pcapng")
    assert walk.skipped and walk.skipped_bytes < 10_000 and walk.packets > 0.95 * walk_capture(clean, "pcapng").packets


def test_pcapng_big_endian_sections_walk_whole(tmp_path):
    from tests.fuzz_corpus import pcap_records, synth_pcap, to_pcapng

    big = tmp_path / "big.pcapng"
    big.write_bytes(to_pcapng(synth_pcap(seed=7, packets=300), order=">"))
    walk = walk_capture(big, "pcapng")
    assert not walk.damaged and walk.packets == len(pcap_records(synth_pcap(seed=7, packets=300))[1])
