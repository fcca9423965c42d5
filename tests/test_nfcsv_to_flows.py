"""NF dataset CSV extraction: column selection by name, the cleaning rules, damage, and the real NF-BoT-IoT-v2."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flowhawk.extractors.base import BadInputError, ExtractNotes
from flowhawk.extractors.nfcsv_to_flows import WRAP_MS, NfCsvConfig, NfCsvExtractor
from flowhawk.extractors.schema import FLOW_SCHEMA, NF_V1_FEATURES, conform
from tests.helpers import shared_path

V1 = ["IPV4_SRC_ADDR", "L4_SRC_PORT", "IPV4_DST_ADDR", "L4_DST_PORT", "PROTOCOL", "L7_PROTO", "IN_BYTES",
      "OUT_BYTES", "IN_PKTS", "OUT_PKTS", "TCP_FLAGS", "FLOW_DURATION_MILLISECONDS", "Label", "Attack"]
V2_ORDER = ["IPV4_SRC_ADDR", "L4_SRC_PORT", "IPV4_DST_ADDR", "L4_DST_PORT", "PROTOCOL", "L7_PROTO", "IN_BYTES",
            "IN_PKTS", "OUT_BYTES", "OUT_PKTS", "TCP_FLAGS", "FLOW_DURATION_MILLISECONDS", "DURATION_IN",
            "DURATION_OUT", "SRC_TO_DST_SECOND_BYTES", "DST_TO_SRC_SECOND_BYTES", "Label", "Attack", "Dataset"]


def row(src: str = "192.168.100.149", duration: int = 4293498, din: int = 1469, dout: int = 0,
        rate: float = 140140.0, attack: str = "DoS", label: int = 1, l7: float = 7.178) -> dict:
    return {"IPV4_SRC_ADDR": src, "L4_SRC_PORT": 43600, "IPV4_DST_ADDR": "192.168.100.6", "L4_DST_PORT": 80,
            "PROTOCOL": 6, "L7_PROTO": l7, "IN_BYTES": 280, "IN_PKTS": 2, "OUT_BYTES": 40, "OUT_PKTS": 1,
            "TCP_FLAGS": 22, "FLOW_DURATION_MILLISECONDS": duration, "DURATION_IN": din, "DURATION_OUT": dout,
            "SRC_TO_DST_SECOND_BYTES": rate, "DST_TO_SRC_SECOND_BYTES": 40.0, "Label": label, "Attack": attack,
            "Dataset": "NF-BoT-IoT-v2"}


def write_csv(path: Path, rows: list[dict], columns: list[str], gz: bool = False) -> Path:
    text = pd.DataFrame(rows)[columns].to_csv(index=False)
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def extract(path: Path, config: NfCsvConfig | None = None) -> tuple[pd.DataFrame, ExtractNotes, list]:
    notes = ExtractNotes()
    frames = list(NfCsvExtractor(config).frames(path, notes))
    for frame in frames:
        assert conform(frame).schema == FLOW_SCHEMA
    return pd.concat(frames, ignore_index=True), notes, frames


def test_v2_cleaning_rules(tmp_path: Path) -> None:
    rows = [row(), row(src="10.0.0.1", duration=0, din=0, rate=8.17e18, attack="benign", label=0),
            row(src="10.0.0.2", duration=4294966, din=0, dout=1, attack="BENIGN", label=0, l7=188.0)]
    df, notes, _ = extract(write_csv(tmp_path / "nf.csv.gz", rows, V2_ORDER, gz=True))
    assert "Dataset" not in df.columns and len(df) == 3
    assert df.FLOW_DURATION_MILLISECONDS.tolist() == [1469, 0, 1]  # max(DURATION_IN, DURATION_OUT)
    assert df.SRC_TO_DST_SECOND_BYTES[0] == 140140.0 and pd.isna(df.SRC_TO_DST_SECOND_BYTES[1])
    assert df.L7_PROTO.tolist() == [7.178, 7.178, 188.0] and df.L7_PROTO.dtype == np.float64
    assert df.Attack.tolist() == ["DoS", "Benign", "Benign"] and df.Label.tolist() == [1, 0, 0]
    assert df.flow_index.tolist() == [0, 1, 2]
    assert "wrapped -> max(DURATION_IN, DURATION_OUT): 2" in notes.messages[0]
    assert "SRC_TO_DST_SECOND_BYTES > 1.25e+10 set null: 1" in notes.messages[0]


def test_v1_order_selected_by_name_and_unwrapped_without_directions(tmp_path: Path) -> None:
    rows = [row(), row(src="10.0.0.9", duration=0)]
    v1, _, _ = extract(write_csv(tmp_path / "v1.csv", rows, V1))
    v2, _, _ = extract(write_csv(tmp_path / "v2.csv", rows, V2_ORDER))
    shared = [c for c in V1 if c != "FLOW_DURATION_MILLISECONDS"]
    pd.testing.assert_frame_equal(v1[shared], v2[shared])
    assert v1.FLOW_DURATION_MILLISECONDS.tolist() == [round(WRAP_MS - 4293498), 0]  # no DURATION_IN/OUT in v1
    assert set(v1.columns) == {*V1, "flow_index"}


def test_duplicates_dropped_across_chunks(tmp_path: Path) -> None:
    rows = [row(), row(src="10.0.0.1"), row(), row(src="10.0.0.2"), row(src="10.0.0.1"), row()]
    path = write_csv(tmp_path / "dup.csv", rows, V2_ORDER)
    df, notes, frames = extract(path, NfCsvConfig(chunk_rows=2))
    assert df.flow_index.tolist() == [0, 1, 3] and [len(f) for f in frames] == [2, 1]
    assert "duplicate rows dropped: 3" in notes.messages[0]
    kept, _, _ = extract(path, NfCsvConfig(drop_duplicates=False))
    assert len(kept) == 6


def test_missing_columns_is_one_line_error(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "few.csv", [row()], [c for c in V2_ORDER if c not in ("IN_PKTS", "TCP_FLAGS")])
    with pytest.raises(BadInputError) as err:
        extract(path)
    assert str(err.value) == f"{path}: NF CSV lacks required column(s): IN_PKTS, TCP_FLAGS"
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(BadInputError, match=r"empty\.csv: unreadable NF CSV header"):
        extract(empty)


def test_garbled_rows_skipped_and_counted(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "bad.csv", [row(), row(src="10.0.0.1"), row(src="10.0.0.2")], V2_ORDER)
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace(",43600,", ",port43600,")      # unparsable number
    lines.insert(3, lines[1] + ",extra")                         # too many fields
    lines.append("10.0.0.3,1,10.0.0.4")                          # too few: NF-v1 features missing
    path.write_text("\n".join(lines) + "\n")
    df, notes, _ = extract(path)
    assert df.IPV4_SRC_ADDR.tolist() == ["192.168.100.149", "10.0.0.2"]
    assert df.L4_SRC_PORT.dtype.kind == "i"
    assert "rejected lines: 1" in notes.messages[0]
    assert "rows with unparsable or missing values: 2" in notes.messages[0]


def _with_values(path: Path, column: str, values: list[str]) -> Path:
    """A v2 CSV of len(values) + 1 rows; row i+1 holds values[i] in ``column`` (row 0 stays clean)."""
    write_csv(path, [row(src=f"10.0.0.{i}") for i in range(len(values) + 1)], V2_ORDER)
    lines = path.read_text().splitlines()
    at = V2_ORDER.index(column)
    for i, value in enumerate(values, start=2):
        cells = lines[i].split(",")
        cells[at] = value
        lines[i] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("column", ["IN_BYTES", "OUT_PKTS", "L4_DST_PORT", "TCP_FLAGS"])
def test_inf_nan_negative_and_overflowing_counters_cost_their_row(tmp_path: Path, column: str) -> None:
    """A required counter holding inf, nan, a negative or a 23-digit number drops that row (counted), never
    the file (issue 11: ``inf`` in IN_BYTES raised OverflowError and killed the whole ingest)."""
    bad = ["inf", "-inf", "nan", "-5", "12345678901234567890123", "-1e30", "18446744073709551615"]
    df, notes, _ = extract(_with_values(tmp_path / "bad.csv", column, bad))
    assert df.IPV4_SRC_ADDR.tolist() == ["10.0.0.0"]
    assert f"{column} out of range (inf, negative or too large) set null: 6" in notes.messages[0]
    assert f"rows with unparsable or missing values: {len(bad)}" in notes.messages[0]


def test_bad_optional_values_cost_only_the_value(tmp_path: Path) -> None:
    df, notes, _ = extract(_with_values(tmp_path / "opt.csv", "DURATION_IN", ["inf", "-3", "1e25"]))
    assert len(df) == 4 and df.DURATION_IN.isna().tolist() == [False, True, True, True]
    df, notes, _ = extract(_with_values(tmp_path / "lab.csv", "Label", ["7", "-1"]))
    assert len(df) == 3 and df.Label.isna().sum() == 2 and "Label out of range" in notes.messages[0]


def test_inf_in_one_csv_does_not_stop_the_ingest_of_the_others(tmp_path: Path) -> None:
    from flowhawk.lake.ingest import IngestConfig, ingest_paths

    bad = _with_values(tmp_path / "inf.csv", "IN_BYTES", ["inf", "12345678901234567890123"])
    good = write_csv(tmp_path / "good.csv", [row(src="10.9.9.9")], V2_ORDER)
    summary = ingest_paths([bad, good], IngestConfig(lake=tmp_path / "lake"))
    assert [f.status for f in summary.files] == ["ingested", "ingested"] and summary.flows == 2
    assert "IN_BYTES out of range" in summary.files[0].notes[0]


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="chunk_rows"):
        NfCsvConfig(chunk_rows=0)
    with pytest.raises(ValueError, match="wrap_window_ms"):
        NfCsvConfig(wrap_window_ms=-1)
    with pytest.raises(ValueError, match="max_bytes_per_second"):
        NfCsvConfig(max_bytes_per_second=0)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['chunk'\]"):
        NfCsvConfig.from_mapping({"chunk": 5})
    assert NfCsvConfig.from_mapping({"chunk_rows": 5}).chunk_rows == 5


@pytest.mark.realdata
def test_real_nf_bot_iot_v2() -> None:
    path = shared_path("nf", "NF-BoT-IoT-v2_reduced_c2dc.csv.gz")
    df, notes, frames = extract(path)
    raw = pd.read_csv(path).drop(columns="Dataset")
    assert len(raw) == 278_781
    unique = raw.drop_duplicates()
    assert len(df) == len(unique) == 278_781 - 2
    assert df.Attack.value_counts().to_dict() == unique.Attack.value_counts().to_dict()
    assert sorted(df.Attack.unique()) == ["Benign", "DDoS", "DoS", "Reconnaissance", "Theft"]
    readme = {"DoS": 167_004, "DDoS": 84_552, "Reconnaissance": 25_907, "Benign": 1_285, "Theft": 33}
    assert raw.Attack.value_counts().to_dict() == readme
    assert (df.Label == 0).sum() == 1_285 and max(len(f) for f in frames) <= NfCsvConfig().chunk_rows
    # every duration is now max(DURATION_IN, DURATION_OUT); none near the 2^32/1000 wrap remains
    longest = df[["DURATION_IN", "DURATION_OUT"]].max(axis=1)
    assert df.FLOW_DURATION_MILLISECONDS.eq(longest).all()
    assert df.FLOW_DURATION_MILLISECONDS.max() <= 3_500
    assert df.SRC_TO_DST_SECOND_BYTES.max() <= 1.25e10 and df.SRC_TO_DST_SECOND_BYTES.isna().sum() == 74
    assert df.DST_TO_SRC_SECOND_BYTES.isna().sum() == 33
    assert df.flow_index.is_monotonic_increasing and df.flow_index.max() == 278_780
    assert df[list(NF_V1_FEATURES)].notna().all().all()
    assert "duplicate rows dropped: 2" in notes.messages[0]
