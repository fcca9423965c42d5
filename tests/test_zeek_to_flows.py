"""Zeek conn.log extraction: every layout, the field mapping, damage handling, and every real Zeek log."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from flowhawk.extractors.base import BadInputError, ExtractNotes
from flowhawk.extractors.schema import FLOW_SCHEMA, conform
from flowhawk.extractors.zeek_to_flows import (
    ZEEK_TYPES,
    ZeekConfig,
    ZeekConnExtractor,
    convert,
    history_flags,
    zeek_pcap_to_conn,
)
from tests.helpers import shared_path

FIELDS = [
    "ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "service", "duration", "orig_bytes",
    "resp_bytes", "conn_state", "local_orig", "missed_bytes", "history", "orig_pkts", "orig_ip_bytes", "resp_pkts",
    "resp_ip_bytes", "tunnel_parents",
]
TYPES = [
    "time", "string", "addr", "port", "addr", "port", "enum", "string", "interval", "count", "count", "string",
    "bool", "count", "string", "count", "count", "count", "count", "set[string]",
]
ROWS = [
    "1379288667.706265 C1 192.168.33.10 1032 54.245.228.191 80 tcp http 0.447460 601 38393 RSTO - 0 ShADadR "
    "22 1489 31 39641 (empty)",
    "1379288668.000000 C2 192.168.33.10 5353 224.0.0.251 5353 udp dns - - - S0 - 0 D 1 89 0 0 (empty)",
    "1379288699.242580 C3 130.185.105.223 3 192.168.33.10 3 icmp - - - - OTH - 0 - 1 72 0 0 (empty)",
    "1379288700.500000 C4 10.0.0.1 8 10.0.0.2 0 icmp - 0.000048 8 8 OTH - 0 - 1 36 1 36 (empty)",
    "1379288701.000000 C5 fe80::1 133 ff02::2 134 icmp - - - - OTH - 0 - 1 56 0 0 (empty)",
]


def tsv(rows: list[str] = ROWS, fields: list[str] = FIELDS, types: list[str] = TYPES, path: str = "conn",
        close: bool = True) -> str:
    head = ["#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)", "#unset_field\t-",
            f"#path\t{path}", "#open\t2014-04-03-10-08-27", "#fields\t" + "\t".join(fields),
            "#types\t" + "\t".join(types)]
    body = ["\t".join(r.split(" ")) for r in rows]
    return "\n".join(head + body + (["#close\t2014-04-03-10-08-28"] if close else [])) + "\n"


def extract(path: Path, config: ZeekConfig | None = None) -> tuple[pd.DataFrame, ExtractNotes, list]:
    notes = ExtractNotes()
    frames = list(ZeekConnExtractor(config).frames(path, notes))
    for frame in frames:
        assert conform(frame).schema == FLOW_SCHEMA
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), notes, frames


def write(tmp_path: Path, text: str, name: str = "conn.log") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_tsv_mapping(tmp_path: Path) -> None:
    df, notes, _ = extract(write(tmp_path, tsv()))
    assert notes.messages == [] and not notes.truncated
    tcp = df.iloc[0]
    assert (tcp.IPV4_SRC_ADDR, tcp.L4_SRC_PORT, tcp.IPV4_DST_ADDR, tcp.L4_DST_PORT) == (
        "192.168.33.10", 1032, "54.245.228.191", 80)
    assert (tcp.PROTOCOL, tcp.IN_BYTES, tcp.OUT_BYTES, tcp.IN_PKTS, tcp.OUT_PKTS) == (6, 1489, 39641, 22, 31)
    assert tcp.FLOW_DURATION_MILLISECONDS == 447 and tcp.FLOW_START_MILLISECONDS == 1379288667706
    assert tcp.FLOW_END_MILLISECONDS == 1379288667706 + 447 and tcp.APPLICATION_NAME == "http"
    # ShADadR: client S,A,D,R -> SYN|ACK|PSH|RST = 30; server h,a,d -> SYN|ACK|PSH = 26
    assert (tcp.CLIENT_TCP_FLAGS, tcp.SERVER_TCP_FLAGS, tcp.TCP_FLAGS) == (30, 26, 30)
    assert (tcp.ICMP_TYPE, tcp.IP_VERSION) == (0, 4)
    udp = df.iloc[1]
    assert udp.PROTOCOL == 17 and udp.TCP_FLAGS == 0 and udp.FLOW_DURATION_MILLISECONDS == 0  # 1 packet
    assert df.flow_index.tolist() == [0, 1, 2, 3, 4] and "Label" not in df.columns


def test_icmp_type_and_code_from_ports(tmp_path: Path) -> None:
    df, _, _ = extract(write(tmp_path, tsv()))
    unreach, echo, rs6 = df.iloc[2], df.iloc[3], df.iloc[4]
    assert (unreach.PROTOCOL, unreach.ICMP_TYPE, unreach.ICMP_IPV4_TYPE) == (1, 3 * 256 + 3, 3)
    assert (unreach.L4_SRC_PORT, unreach.L4_DST_PORT) == (0, 0)
    assert unreach.FLOW_DURATION_MILLISECONDS == 0  # unset duration, one packet
    # echo request: resp_p holds the counterpart type (0 = echo reply), not a code
    assert (echo.ICMP_TYPE, echo.ICMP_IPV4_TYPE, echo.FLOW_DURATION_MILLISECONDS) == (8 * 256, 8, 0)
    assert (rs6.PROTOCOL, rs6.IP_VERSION, rs6.ICMP_TYPE) == (58, 6, 133 * 256) and pd.isna(rs6.ICMP_IPV4_TYPE)


@pytest.mark.parametrize(("history", "state", "expected"), [
    ("ShADadFf", "SF", (27, 27)),
    ("Sr", "REJ", (2, 4)),
    ("S", "S0", (2, 0)),
    ("C", "OTH", (None, None)),   # content gap only: no flag evidence, and OTH says nothing
    (None, "REJ", (2, 20)),       # history unset -> conn_state
    ("^hADFdaf", "SF", (25, 27)),  # flipped: uppercase is still the (final) originator
    (None, None, (None, None)),
])
def test_history_flags(history: str | None, state: str | None, expected: tuple) -> None:
    assert history_flags(history, state) == expected


def test_gzip_is_identical(tmp_path: Path) -> None:
    plain, _, _ = extract(write(tmp_path, tsv()))
    gz = tmp_path / "conn.log.gz"
    gz.write_bytes(gzip.compress(tsv().encode()))
    zipped, _, _ = extract(gz)
    pd.testing.assert_frame_equal(plain, zipped)


def test_json_lines_and_extra_columns(tmp_path: Path) -> None:
    records = [
        {"_node_name": "w1", "ts": 1575413096.052279, "uid": "A", "id.orig_h": "10.18.20.97", "id.orig_p": 49187,
         "id.resp_h": "10.18.20.8", "id.resp_p": 88, "proto": "tcp", "service": "krb_tcp", "duration": 0.0012,
         "conn_state": "RSTR", "history": "ShADdFar", "orig_pkts": 4, "orig_ip_bytes": 414, "resp_pkts": 4,
         "resp_ip_bytes": 455, "tunnel_parents": []},
        {"ts": "2019-12-03T22:44:56.500Z", "id.orig_h": "10.18.20.97", "id.orig_p": 5, "id.resp_h": "10.18.20.8",
         "id.resp_p": 53, "proto": "udp", "conn_state": "S0", "orig_pkts": 1, "orig_ip_bytes": 60,
         "resp_pkts": 0, "resp_ip_bytes": 0},
    ]
    df, notes, _ = extract(write(tmp_path, "\n".join(json.dumps(r) for r in records) + "\n"))
    assert notes.messages == [] and len(df) == 2
    assert df.FLOW_START_MILLISECONDS.tolist() == [1575413096052, 1575413096500]
    assert pd.isna(df.APPLICATION_NAME[1]) and df.APPLICATION_NAME[0] == "krb_tcp"
    assert df.FLOW_DURATION_MILLISECONDS.tolist() == [1, 0] and df.OUT_BYTES.tolist() == [455, 0]
    assert "_node_name" not in df.columns


def test_tsv_extra_column_and_other_order(tmp_path: Path) -> None:
    fields = ["_node_name", *FIELDS]  # first, as rita writes it
    types = ["string", *TYPES]
    rows = ["worker-1 " + r for r in ROWS]
    df, _, _ = extract(write(tmp_path, tsv(rows, fields, types)))
    base, _, _ = extract(write(tmp_path, tsv(), "base.log"))
    pd.testing.assert_frame_equal(df, base)


IOT_HEADER = "\t".join([*FIELDS[:12], "local_resp", *FIELDS[12:], "label", "detailed-label"])


def iot_row(label: str, detail: str, port: int) -> str:
    values = ["1545403550.043813", "C", "192.168.1.196", str(port), "1.2.3.4", "23", "tcp", "", "", "", "", "S0",
              "", "", "0", "S", "1", "60", "0", "0", "", label, detail]
    return "\t".join(values)


def test_iot23_plain_header_labels(tmp_path: Path) -> None:
    rows = [iot_row("Benign", "", 1), iot_row("benign", "-", 2), iot_row("Malicious", "DDoS", 3),
            iot_row("Malicious", "C&C", 4), iot_row("Malicious", "", 5)]
    df, notes, _ = extract(write(tmp_path, IOT_HEADER + "\n" + "\n".join(rows) + "\n"))
    assert notes.messages == []
    assert df.Label.tolist() == [0, 0, 1, 1, 1]
    assert df.Attack.tolist() == ["Benign", "Benign", "DDoS", "C&C", "Malicious"]
    assert pd.isna(df.APPLICATION_NAME).all() and df.FLOW_DURATION_MILLISECONDS.tolist() == [0] * 5
    assert df.CLIENT_TCP_FLAGS.tolist() == [2] * 5


def test_iot23_original_three_space_layout(tmp_path: Path) -> None:
    fields = "\t".join(FIELDS) + "   label   detailed-label"
    types = "\t".join(TYPES) + "   string   string"
    row = "\t".join(ROWS[0].split(" ")) + "   Malicious   PartOfAHorizontalPortScan"
    text = tsv([], close=False).replace("\t".join(FIELDS), fields).replace("\t".join(TYPES), types) + row + "\n"
    df, notes, _ = extract(write(tmp_path, text))
    assert notes.messages == [] and df.Attack.tolist() == ["PartOfAHorizontalPortScan"] and df.Label[0] == 1


def test_garbled_and_truncated_lines_are_counted(tmp_path: Path) -> None:
    bad_count = "1379288668.1\tC9\t10.0.0.1\t1"
    bad_number = ROWS[1].replace(" 1 89 ", " many 89 ")
    text = tsv([ROWS[0], bad_count, bad_number, ROWS[1]], close=False) + "1379288669.0\tC7\t10.0.0.9\t5"
    df, notes, _ = extract(write(tmp_path, text))
    assert len(df) == 2 and df.flow_index.tolist() == [0, 3]
    assert notes.truncated
    assert "skipped 3 garbled line(s)" in notes.messages[0] and "wrong field count 2" in notes.messages[0]
    assert "unparsable/unset required values 1; orig_pkts 1" in notes.messages[0]
    assert "truncated" in notes.messages[0]


def test_missing_required_fields_is_one_line_error(tmp_path: Path) -> None:
    keep = [i for i, f in enumerate(FIELDS) if f not in ("id.orig_h", "id.resp_p")]
    rows = [" ".join(r.split(" ")[i] for i in keep) for r in ROWS]
    path = write(tmp_path, tsv(rows, [FIELDS[i] for i in keep], [TYPES[i] for i in keep]))
    with pytest.raises(BadInputError) as err:
        extract(path)
    assert str(err.value) == f"{path}: Zeek conn log lacks required field(s): id.orig_h, id.resp_p"


def test_not_a_conn_log(tmp_path: Path) -> None:
    dns_fields = [*FIELDS[:7], "trans_id", "query", "qtype"]
    dns_types = ["time", "string", "addr", "port", "addr", "port", "enum", "count", "string", "count"]
    row = "1.0 C 1.1.1.1 5 2.2.2.2 53 udp 7 example.com 1"
    with pytest.raises(BadInputError, match=r"dns\.log: not a conn log \(path=dns\)$"):
        extract(write(tmp_path, tsv([row], dns_fields, dns_types, path="dns"), "dns.log"))
    record = dict(zip(dns_fields, [1.0, "C", "1.1.1.1", 5, "2.2.2.2", 53, "udp", 7, "a.com", 1], strict=True))
    with pytest.raises(BadInputError, match=r"not a conn log \(path=dns\)"):
        extract(write(tmp_path, json.dumps(record) + "\n", "json_dns.log"))


def test_chunks_are_bounded_and_index_continues(tmp_path: Path) -> None:
    df, _, frames = extract(write(tmp_path, tsv()), ZeekConfig(chunk_rows=2))
    assert [len(f) for f in frames] == [2, 2, 1] and df.flow_index.tolist() == list(range(5))


def test_fields_without_types(tmp_path: Path) -> None:
    text = "\n".join(line for line in tsv().splitlines() if not line.startswith("#types")) + "\n"
    df, notes, _ = extract(write(tmp_path, text))
    base, _, _ = extract(write(tmp_path, tsv(), "base.log"))
    assert notes.messages == []
    pd.testing.assert_frame_equal(df, base)


def test_concatenated_logs_restart_header(tmp_path: Path) -> None:
    other_fields = ["_node_name", *FIELDS]
    second = tsv(["w " + ROWS[0]], other_fields, ["string", *TYPES])
    df, notes, _ = extract(write(tmp_path, tsv(ROWS[:2]) + second))
    assert notes.messages == [] and len(df) == 3 and df.IN_BYTES.tolist() == [1489, 89, 1489]


def test_files_are_extracted_independently(tmp_path: Path) -> None:
    extractor = ZeekConnExtractor()
    a, b = write(tmp_path, tsv(ROWS[:2]), "a.log"), write(tmp_path, tsv(ROWS[2:], close=False) + "1.0\tX", "b.log")
    notes_a, notes_b = ExtractNotes(), ExtractNotes()
    fa = pd.concat(list(extractor.frames(a, notes_a)))
    fb = pd.concat(list(extractor.frames(b, notes_b)))
    assert fa.flow_index.tolist() == [0, 1] and fb.flow_index.tolist() == [0, 1, 2]
    assert notes_a.messages == [] and not notes_a.truncated and notes_b.truncated


def test_config_and_type_table() -> None:
    with pytest.raises(ValueError, match="chunk_rows"):
        ZeekConfig(chunk_rows=0)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['rows'\]"):
        ZeekConfig.from_mapping({"rows": 5})
    assert ZeekConfig.from_mapping({"chunk_rows": 7}).chunk_rows == 7
    for zeek_type in ("time", "interval", "count", "int", "port", "addr", "string", "enum", "bool"):
        assert zeek_type in ZEEK_TYPES
    values, bad = convert(pd.Series(["T", "F", "-", "x"]), "bool", frozenset({"-"}))
    assert values.tolist()[:2] == [True, False] and pd.isna(values[2]) and bad.tolist() == [False] * 3 + [True]
    values, bad = convert(pd.Series(["5", "-1", "2.5", "-"]), "count", frozenset({"-"}))
    assert values.dtype == "UInt64" and values[0] == 5 and bad.tolist() == [False, True, True, False]
    values, _ = convert(pd.Series(["a,b", "(empty)"]), "set[string]", frozenset({"-"}))
    assert values.tolist() == ["a,b", "(empty)"]


def test_empty_and_headerless(tmp_path: Path) -> None:
    df, notes, _ = extract(write(tmp_path, tsv([])))
    assert df.empty and notes.messages == []
    with pytest.raises(BadInputError, match="no Zeek header"):
        extract(write(tmp_path, "\n\n", "blank.log"))


@pytest.mark.skipif(shutil.which("zeek") is not None, reason="zeek is installed")
def test_pcap_to_conn_without_zeek(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="zeek is not on PATH"):
        zeek_pcap_to_conn(tmp_path / "x.pcap", tmp_path)


@pytest.mark.realdata
@pytest.mark.skipif(shutil.which("zeek") is None, reason="zeek binary not on PATH")
def test_pcap_to_conn_with_zeek(tmp_path: Path) -> None:
    pcap = shared_path("pcaps", "zeek-traces", "ssh.pcap")
    df, _notes, _ = extract(zeek_pcap_to_conn(pcap, tmp_path))
    assert len(df) > 0 and (df.L4_DST_PORT == 22).any() and df.IN_PKTS.notna().all()


# --- every real Zeek log -----------------------------------------------------------------------------------------

def _data_lines(path: Path) -> int:
    opener = gzip.open if path.read_bytes()[:2] == b"\x1f\x8b" else open
    with opener(path, "rt") as fh:
        lines = [ln for ln in fh if ln.strip() and not ln.startswith("#")]
    return len(lines) - (1 if lines and lines[0].startswith("ts\t") else 0)


def _zeek_files() -> list[Path]:
    root = shared_path("zeek")
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.mark.realdata
def test_every_real_zeek_log_parses_or_is_rejected() -> None:
    not_conn = {"dns.log": "dns", "http.log": "http", "json_dns.log": "dns", "json_http.log": "http"}
    seen = 0
    for path in _zeek_files():
        if path.name in not_conn:
            with pytest.raises(BadInputError) as err:
                extract(path)
            assert str(err.value) == f"{path}: not a conn log (path={not_conn[path.name]})"
            continue
        df, notes, _ = extract(path)
        expected = _data_lines(path) - (1 if path.name == "truncated__conn.log" else 0)
        assert len(df) == expected, path
        assert notes.truncated == (path.name == "truncated__conn.log"), (path, notes.messages)
        assert df.IPV4_SRC_ADDR.notna().all() and df.FLOW_START_MILLISECONDS.notna().all()
        assert df.PROTOCOL.notna().all() and (df.IN_PKTS.notna().all())
        seen += 1
    assert seen == 13


@pytest.mark.realdata
def test_real_iot23_labels_and_rita_counts() -> None:
    by_file = {}
    for name in ("conn.log.calibration_60_40", "conn.log.calibration_90_10"):
        df, _, _ = extract(shared_path("zeek", "iot23", name))
        by_file[name] = df
    small, big = by_file["conn.log.calibration_60_40"], by_file["conn.log.calibration_90_10"]
    assert len(small) == 2_500 and len(big) == 10_000
    assert big.Label.value_counts().to_dict() == {0: 9_000, 1: 1_000}
    assert small.Label.value_counts().to_dict() == {0: 1_500, 1: 1_000}
    assert big.Attack.value_counts().to_dict() == {"Benign": 9_000, "DDoS": 688, "C&C": 310,
                                                   "PartOfAHorizontalPortScan": 2}
    key = ["IPV4_SRC_ADDR", "L4_SRC_PORT", "IPV4_DST_ADDR", "L4_DST_PORT", "FLOW_START_MILLISECONDS", "Attack"]
    bad_small = small[small.Label == 1][key].sort_values(key).reset_index(drop=True)
    bad_big = big[big.Label == 1][key].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(bad_small, bad_big)  # README: the two files share the same malicious rows
    proxy, _, _ = extract(shared_path("zeek", "rita", "proxy_rolling__conn.16-00-00-17-00-00.log.gz"))
    assert len(proxy) == 7_260
    icmp6 = extract(shared_path("zeek", "rita", "missing_host__2024-04-19__conn.12-00-00-13-00-00.log.gz"))[0]
    assert (icmp6.PROTOCOL == 58).any() and set(icmp6.IP_VERSION.unique()) == {4, 6}
