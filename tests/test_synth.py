"""The capture synthesiser: determinism, size, label coverage, valid wire bytes, and what nfstream makes of it."""

from __future__ import annotations

import csv
import itertools
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from flowhawk.common.files import sha256_file
from flowhawk.extractors.base import BadInputError, sniff_format
from flowhawk.extractors.synth import SynthConfig, synthesize
from flowhawk.extractors.synth_sources import ATTACKS

ROOT = Path(__file__).resolve().parents[1]
ALL_ATTACKS = tuple(ATTACKS)  # the five defaults plus icmpflood
SMALL = SynthConfig(seed=11, packets=3000, duration_s=200, attacks=ALL_ATTACKS)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    return synthesize(SMALL, out / "small.pcap", out / "small.csv")


def read_pcap(path: Path) -> list[tuple[int, str, str, int]]:
    """(t_us, src, dst, ip protocol) of every record, parsed with struct (independent of the writer)."""
    data = path.read_bytes()
    magic, _, _, _, _, _, linktype = struct.unpack_from("<IHHiIII", data, 0)
    assert (magic, linktype) == (0xA1B2C3D4, 1)
    out, pos = [], 24
    while pos < len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, pos)
        frame = data[pos + 16:pos + 16 + incl]
        assert incl == orig == len(frame) and frame[12:14] == b"\x08\x00"
        ip = frame[14:]
        assert struct.unpack_from("!H", ip, 2)[0] == len(ip)  # IP total length matches the frame
        out.append((sec * 1_000_000 + usec, ".".join(map(str, ip[12:16])), ".".join(map(str, ip[16:20])), ip[9]))
        pos += 16 + incl
    return out


def read_labels(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_same_seed_gives_byte_identical_files_even_in_another_process(tmp_path, small):
    again = synthesize(SMALL, tmp_path / "a.pcap", tmp_path / "a.csv")
    assert sha256_file(again.pcap) == sha256_file(small.pcap)
    assert sha256_file(again.labels) == sha256_file(small.labels)
    # a fresh interpreter with another hash seed: nothing may depend on hash() or process state
    code = ("import sys; from flowhawk.extractors.synth import SynthConfig, synthesize; "
            "from flowhawk.extractors.synth_sources import ATTACKS; "
            "synthesize(SynthConfig(seed=11, packets=3000, duration_s=200, attacks=tuple(ATTACKS)),"
            " sys.argv[1], sys.argv[2])")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "b.pcap"), str(tmp_path / "b.csv")], cwd=ROOT,
                   env=env, check=True)
    assert sha256_file(tmp_path / "b.pcap") == sha256_file(small.pcap)
    assert sha256_file(tmp_path / "b.csv") == sha256_file(small.labels)
    other = synthesize(SynthConfig(seed=12, packets=3000, duration_s=200, attacks=ALL_ATTACKS),
                       tmp_path / "c.pcap", tmp_path / "c.csv")
    assert sha256_file(other.pcap) != sha256_file(small.pcap)


@pytest.mark.parametrize("target", [1000, 20_000])
def test_packet_count_is_near_target(tmp_path, target):
    result = synthesize(SynthConfig(packets=target), tmp_path / "t.pcap", tmp_path / "t.csv")
    records = read_pcap(result.pcap)
    assert len(records) == result.packets == sum(result.packets_by_label.values())
    assert abs(result.packets - target) / target < 0.1, result.packets
    assert sniff_format(result.pcap) == "pcap"


def test_timestamps_and_label_rows_cover_every_source(small):
    records = read_pcap(small.pcap)
    times = [t for t, *_ in records]
    assert times == sorted(times)
    t0 = round(SMALL.start_epoch * 1e6)
    assert t0 <= times[0] and times[-1] <= t0 + SMALL.duration_s * 1e6
    rows = read_labels(small.labels)
    assert list(rows[0]) == ["src_ip", "dst_ip", "label", "start_epoch", "end_epoch", "tool", "exit_code"]
    by_src = {r["src_ip"]: r for r in rows}
    assert len(by_src) == len(rows) == SMALL.n_benign_clients + len(ALL_ATTACKS)
    assert {r["label"] for r in rows} == {"BENIGN", *ALL_ATTACKS}
    span: dict[str, list[int]] = {}
    for t, src, dst, _ in records:
        assert SMALL.server in (src, dst), (src, dst)  # every packet is a client or attacker with the server
        peer = dst if src == SMALL.server else src
        assert peer in by_src, f"{peer} sends but has no label row"
        span.setdefault(peer, [t, t])[1] = t
    assert set(span) == set(by_src)
    for src, (first, last) in span.items():  # each row spans exactly that source's conversations
        row = by_src[src]
        assert (row["start_epoch"], row["end_epoch"]) == (f"{first // 10**6}.{first % 10**6:06d}",
                                                          f"{last // 10**6}.{last % 10**6:06d}")
    windows = sorted((float(r["start_epoch"]), float(r["end_epoch"])) for r in rows if r["label"] != "BENIGN")
    assert all(a[1] < b[0] for a, b in itertools.pairwise(windows)), "attack windows overlap"
    benign = [r for r in rows if r["label"] == "BENIGN"]
    assert all(float(r["end_epoch"]) - float(r["start_epoch"]) > 0.9 * SMALL.duration_s - 6 for r in benign)


def test_labels_csv_is_read_by_the_project_label_rules(small):
    from flowhawk.extractors.labels import LabelRules

    rules = LabelRules.from_csv(small.labels)
    assert {r.attack for r in rules.rules} == {"Benign", *ALL_ATTACKS}


def test_checksums_and_layers_survive_scapy_dissection(small):
    from scapy.layers.dns import DNS
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import RawPcapReader

    seen = {"TCP": 0, "UDP": 0, "ICMP": 0, "DNS answer": 0}
    with RawPcapReader(str(small.pcap)) as reader:
        for i, (raw, _) in enumerate(reader):
            if i % 15:
                continue  # dissect a sample (scapy takes ~1 ms a packet)
            pkt, fresh = Ether(raw), Ether(raw)
            for layer in (IP, TCP, UDP, ICMP):
                if layer in fresh:
                    del fresh[layer].chksum
            rebuilt = Ether(bytes(fresh))  # scapy recomputes every checksum we deleted
            for layer in (IP, TCP, UDP, ICMP):
                if layer in pkt:
                    assert pkt[layer].chksum == rebuilt[layer].chksum, f"packet {i}: bad {layer.__name__} checksum"
                    seen[layer.__name__] = seen.get(layer.__name__, 0) + 1
            if UDP in pkt and pkt[UDP].sport == 53 and DNS in pkt and pkt[DNS].qr == 1:
                assert pkt[DNS].qdcount == pkt[DNS].ancount == 1
                seen["DNS answer"] += 1
    assert all(seen.values()), seen


def test_nfstream_finds_the_expected_flows_per_label(small):
    import nfstream

    labels = {r["src_ip"]: r for r in read_labels(small.labels)}
    flows = nfstream.NFStreamer(source=str(small.pcap), accounting_mode=1, active_timeout=120,
                                statistical_analysis=True).to_pandas()
    flows["label"] = flows["src_ip"].map(lambda a: labels[a]["label"])
    counts = flows["label"].value_counts().to_dict()
    assert counts == small.flows_expected
    assert set(counts) == {"BENIGN", *ALL_ATTACKS}
    by = {k: g for k, g in flows.groupby("label")}
    assert len(by["synflood"]) == by["synflood"]["src_port"].nunique() == small.units["synflood"]
    assert (by["synflood"]["dst2src_syn_packets"] == 1).all() and (by["synflood"]["src2dst_ack_packets"] == 0).all()
    assert len(by["udpflood"]) == small.units["udpflood"] and (by["udpflood"]["dst2src_packets"] == 0).all()
    assert by["portscan"]["dst_port"].nunique() == small.units["portscan"]
    assert by["slowloris"]["bidirectional_duration_ms"].min() > 5_000  # held open, not a quick request
    assert (by["httpflood"]["application_name"] == "HTTP").all()
    assert set(by["BENIGN"]["application_name"]) >= {"HTTP", "DNS", "ICMP"}
    for _, flow in flows.iterrows():  # every flow inside its source's label window
        row = labels[flow["src_ip"]]
        assert float(row["start_epoch"]) - 0.001 <= flow["bidirectional_first_seen_ms"] / 1000
        assert flow["bidirectional_last_seen_ms"] / 1000 <= float(row["end_epoch"]) + 0.001


@pytest.mark.parametrize(("kwargs", "names"), [
    ({"seed": -1}, "seed"), ({"duration_s": 5}, "duration_s"), ({"packets": 10}, "packets"),
    ({"n_benign_clients": 500}, "n_benign_clients"), ({"benign_share": 1.5}, "benign_share"),
    ({"start_epoch": 2.0**32}, "start_epoch"), ({"attacks": ("synflood", "nope")}, "attacks"),
    ({"attacks": ("synflood", "synflood")}, "attacks"), ({"attacks": (), "n_benign_clients": 0}, "attacks"),
    ({"server": "10.0.0.300"}, "server"), ({"attackers": ("10.0.0.1",)}, "attackers"),
    ({"attacks": ("synflood",), "attackers": ("10.200.0.21",)}, "attackers"),
    ({"sizes": {"portscan": 70_000}}, r"sizes.*65535"), ({"sizes": {"icmpflood": 5}}, "sizes"),
])
def test_config_errors_name_the_parameter_and_its_range(kwargs, names):
    with pytest.raises(ValueError, match=rf"SynthConfig\.{names}"):
        SynthConfig(**kwargs)


def test_from_mapping_rejects_unknown_keys():
    assert SynthConfig.from_mapping({"seed": 3}).seed == 3
    with pytest.raises(ValueError, match="unknown key"):
        SynthConfig.from_mapping({"seed": 3, "sead": 4})


def test_outputs_are_all_or_nothing(tmp_path):
    with pytest.raises(BadInputError, match="output directory does not exist"):
        synthesize(SynthConfig(packets=500), tmp_path / "p.pcap", tmp_path / "missing" / "l.csv")
    assert list(tmp_path.iterdir()) == []  # neither file, no temp left behind
    synthesize(SynthConfig(packets=500), tmp_path / "p.pcap", tmp_path / "l.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.csv", "p.pcap"]


def test_cli_writes_both_files_and_rejects_bad_options(tmp_path, capsys):
    from flowhawk.cli.main import main

    out = tmp_path / "cli.pcap"
    assert main(["synth", str(out), "--packets", "800", "--attacks", "synflood,slowloris", "--seed", "2",
                 "--size", "synflood=40"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.count("\n") == 0 and "synflood 40" in line and "slowloris" in line
    assert out.exists() and (tmp_path / "cli.labels.csv").exists()
    assert main(["synth", str(out), "--attacks", "synflood,teardrop"]) == 2
    assert "SynthConfig.attacks: unknown attack 'teardrop'" in capsys.readouterr().err
    assert main(["synth", str(out), "--size", "synflood"]) == 2
