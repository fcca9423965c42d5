"""Labels for own captures: the rules CSV, address/time matching, and the real lab capture end to end."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from flowhawk.extractors.base import BadInputError, ExtractNotes
from flowhawk.extractors.labels import LabelConfig, LabelRules
from flowhawk.extractors.schema import FLOW_SCHEMA, conform
from tests.helpers import shared_path

LAB_CSV = """src_ip,dst_ip,label,start_epoch,end_epoch,tool,exit_code
10.0.0.101,10.0.0.10,synflood,1000.0,1010.0,hping3,1
10.0.0.21,10.0.0.10,BENIGN,900.0,2000.0,benign-mix,0
10.0.0.7,,scan,1000.0,1001.0,nmap,0
10.0.0.7,,bruteforce,1100.0,1200.0,hydra,0
2001:db8:0:0::1,,normal,,,-,0
"""


def rules(tmp_path: Path, text: str = LAB_CSV, config: LabelConfig | None = None) -> LabelRules:
    path = tmp_path / "labels.csv"
    path.write_text(text)
    return LabelRules.from_csv(path, config)


def flows(rows: list[tuple[str, str, float | None, float | None]]) -> pd.DataFrame:
    """(src, dst, start s, end s) -> a flow frame in schema columns (times in ms)."""
    return pd.DataFrame({
        "IPV4_SRC_ADDR": [r[0] for r in rows], "IPV4_DST_ADDR": [r[1] for r in rows],
        "FLOW_START_MILLISECONDS": pd.array([None if r[2] is None else int(r[2] * 1000) for r in rows],
                                            dtype="Int64"),
        "FLOW_END_MILLISECONDS": pd.array([None if r[3] is None else int(r[3] * 1000) for r in rows],
                                          dtype="Int64"),
    })


def values(series: pd.Series) -> list:
    return [None if pd.isna(x) else x for x in series]


def test_reads_lab_format(tmp_path: Path) -> None:
    r = rules(tmp_path)
    assert len(r.rules) == 5
    first, v6 = r.rules[0], r.rules[4]
    assert (first.src_ip, first.dst_ip, first.label, first.start_s, first.end_s) == (
        "10.0.0.101", "10.0.0.10", "synflood", 1000.0, 1010.0)
    assert r.rules[2].dst_ip is None and v6.src_ip == "2001:db8::1" and v6.start_s == float("-inf")
    assert (first.attack, r.rules[1].attack, v6.attack) == ("synflood", "Benign", "Benign")


def test_time_matching_with_slack(tmp_path: Path) -> None:
    r = rules(tmp_path, config=LabelConfig(match="time", slack_s=2.0))
    frame = flows([
        ("10.0.0.101", "10.0.0.10", 1005, 1006),    # inside
        ("10.0.0.101", "10.0.0.10", 1011, 1015),    # starts 1 s after end: within slack
        ("10.0.0.101", "10.0.0.10", 1013, 1015),    # 3 s after: outside
        ("10.0.0.101", "10.0.0.99", 1005, 1006),    # wrong destination
        ("10.0.0.101", "10.0.0.10", 990, 1100),     # spans the whole window: overlaps
        ("10.0.0.101", "10.0.0.10", None, None),    # no timestamps: address only
        ("10.0.0.55", "10.0.0.10", 1005, 1006),     # unlisted
        ("10.0.0.21", "10.0.0.10", 1500, None),     # end unknown: start only
    ])
    result = r.apply(frame)
    assert values(result.frame.Label) == [1, 1, None, None, 1, 1, None, 0]
    assert result.frame.Attack.tolist()[:2] == ["synflood", "synflood"]
    assert result.frame.Attack.tolist()[7] == "Benign"
    assert result.counts == {"synflood": 4, "Benign": 1, "unlabelled": 3}
    assert conform(result.frame).schema == FLOW_SCHEMA
    assert "Label" not in frame.columns  # the input is not modified


def test_shared_address_nearest_window_wins(tmp_path: Path) -> None:
    r = rules(tmp_path, config=LabelConfig(match="time", slack_s=60.0))
    frame = flows([("10.0.0.7", "x", 1000.5, 1000.6), ("10.0.0.7", "x", 1040, 1041), ("10.0.0.7", "x", 1080, 1081),
                   ("10.0.0.7", "x", 1300, 1301)])
    result = r.apply(frame)
    assert values(result.frame.Attack) == ["scan", "scan", "bruteforce", None]


def test_auto_mode_address_only_for_single_rule_addresses(tmp_path: Path) -> None:
    frame = flows([("10.0.0.101", "10.0.0.10", 1500, 1501),  # long after synflood's end: its only rule
                   ("10.0.0.7", "y", 1500, 1501)])           # shared address: time decides -> unmatched
    auto = rules(tmp_path).apply(frame)
    assert values(auto.frame.Attack) == ["synflood", None] and auto.counts["unlabelled"] == 1
    timed = rules(tmp_path, config=LabelConfig(match="time", slack_s=1.0)).apply(frame)
    assert timed.frame.Label.isna().all()
    by_address = rules(tmp_path, config=LabelConfig(match="address")).apply(frame)
    assert by_address.frame.Attack.tolist() == ["synflood", "scan"]  # first rule in file order


def test_ipv6_normalised_and_existing_labels_kept(tmp_path: Path) -> None:
    frame = flows([("2001:db8::0:1", "2001:db8::2", 5, 6), ("10.9.9.9", "10.0.0.10", 5, 6)])
    frame["Label"] = pd.array([1, 1], dtype="Int8")
    frame["Attack"] = pd.array(["DDoS", "DDoS"], dtype="string")
    result = rules(tmp_path).apply(frame)
    assert result.frame.Label.tolist() == [0, 1] and result.frame.Attack.tolist() == ["Benign", "DDoS"]
    assert result.counts == {"Benign": 1, "unlabelled": 1}


def test_empty_frame(tmp_path: Path) -> None:
    result = rules(tmp_path).apply(flows([]))
    assert len(result.frame) == 0 and result.counts == {"unlabelled": 0}


@pytest.mark.parametrize(("text", "reason"), [
    ("src,label,start_epoch,end_epoch\n1.2.3.4,x,1,2\n", r"lacks column\(s\): src_ip"),
    ("src_ip,label\n1.2.3.4,x\n", r"lacks column\(s\): start_epoch, end_epoch"),
    ("src_ip,label,start_epoch,end_epoch\n1.2.3.999,x,1,2\n", "line 2: .*does not appear to be an IPv4 or IPv6"),
    ("src_ip,label,start_epoch,end_epoch\n1.2.3.4,x,1,2\n1.2.3.4,y,soon,2\n", "line 3: could not convert"),
    ("src_ip,label,start_epoch,end_epoch\n1.2.3.4,x,5,2\n", "line 2: end_epoch 2.0 is before start_epoch 5.0"),
    ("src_ip,label,start_epoch,end_epoch\n1.2.3.4,,1,2\n", "line 2: empty label"),
    ("src_ip,label,start_epoch,end_epoch\n1.2.3.4,x,1,2,extra\n", "line 2: more fields than the header"),
    ("src_ip,label,start_epoch,end_epoch\n", "no rules"),
    ("", r"lacks column\(s\)"),
])
def test_malformed_labels_csv(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(BadInputError, match=f"^{path}: .*{reason}") as err:
        LabelRules.from_csv(path)
    assert "\n" not in str(err.value)


def test_missing_file_and_config(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="unreadable labels CSV"):
        LabelRules.from_csv(tmp_path / "absent.csv")
    with pytest.raises(ValueError, match="slack_s"):
        LabelConfig(slack_s=-1)
    with pytest.raises(ValueError, match="match"):
        LabelConfig(match="fuzzy")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['slack'\]"):
        LabelConfig.from_mapping({"slack": 1})


@pytest.mark.realdata
@pytest.mark.slow
def test_lab_capture_every_listed_address_labelled() -> None:
    """The real lab capture through the pcap extractor: every flow from a listed address gets its class."""
    from flowhawk.extractors.pcap_to_flows import PcapConfig, PcapExtractor

    pcap, labels = shared_path("lab", "capture.pcap"), shared_path("lab", "labels.csv")
    rules_ = LabelRules.from_csv(labels)
    listed = {r.src_ip for r in rules_.rules}
    counts: dict[str, int] = {}
    benign_icmp = 0
    for frame in PcapExtractor(PcapConfig()).frames(pcap, ExtractNotes()):
        result = rules_.apply(frame)
        labelled = result.frame
        from_listed = labelled.IPV4_SRC_ADDR.isin(listed)
        assert labelled.Label[from_listed].notna().all() and labelled.Attack[from_listed].notna().all()
        benign_icmp += int(((labelled.Attack == "Benign") & (labelled.PROTOCOL == 1)).sum())
        for name, n in result.counts.items():
            counts[name] = counts.get(name, 0) + n
    expected = {"udpflood": 10_000, "synflood": 10_000, "httpflood": 2_873, "connscan": 1_024, "synscan": 1_024,
                "dirscan": 300, "slowloris": 100, "icmpflood": 1}  # README, nfstream flow counts
    assert {k: v for k, v in counts.items() if k in expected} == expected
    # README's 1,041 benign flows, plus each client's ~150 s ping flow split in two by the 120 s active timeout
    assert benign_icmp == 12, f"expected 6 clients x 2 ping flows (120 s active timeout), got {benign_icmp}"
    assert counts["Benign"] == 1_041 + (benign_icmp - 6), counts
    assert counts["unlabelled"] == 0
