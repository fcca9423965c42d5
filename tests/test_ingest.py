"""Ingest into the lake: readers (pandas, pyarrow, DuckDB), idempotency, quarantine, exit codes, atomicity."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.dataset as ds
import pytest
from scapy.all import IP, TCP, UDP, Ether, wrpcap

from flowhawk.cli.main import main as cli_main
from flowhawk.lake.ingest import IngestConfig, ingest_paths
from flowhawk.lake.store import Lake

ROOT = Path(__file__).resolve().parents[1]


def make_pcap(path: Path, n_flows: int = 6, base_port: int = 40000, t0: float = 1_700_000_000.0) -> Path:
    """A tiny valid capture: ``n_flows`` 4-packet TCP flows and two 1-packet UDP flows."""
    packets = []
    for i in range(n_flows):
        c, s = f"10.0.0.{i + 1}", "10.0.1.1"
        sport = base_port + i
        for j, (src, dst, sp, dp, flags) in enumerate([(c, s, sport, 80, "S"), (s, c, 80, sport, "SA"),
                                                       (c, s, sport, 80, "A"), (c, s, sport, 80, "FA")]):
            pkt = Ether() / IP(src=src, dst=dst) / TCP(sport=sp, dport=dp, flags=flags)
            pkt.time = t0 + i + j * 0.01
            packets.append(pkt)
    for j in range(2):
        pkt = Ether() / IP(src="10.0.0.9", dst="10.0.1.53") / UDP(sport=5353 + j, dport=53) / (b"x" * 20)
        pkt.time = t0 + 50 + j
        packets.append(pkt)
    wrpcap(str(path), sorted(packets, key=lambda p: p.time))
    return path


@pytest.fixture
def good_pcaps(tmp_path):
    return [make_pcap(tmp_path / "one.pcap"), make_pcap(tmp_path / "two.bin", n_flows=3, base_port=50000)]


def test_lake_reads_as_one_table(tmp_path, good_pcaps):
    lake_dir = tmp_path / "lake"
    summary = ingest_paths(good_pcaps, IngestConfig(lake=lake_dir))
    assert summary.ok and summary.count("ingested") == 2
    assert summary.flows == (6 + 2) + (3 + 2)
    lake = Lake(lake_dir)
    frame = lake.read_flows()
    assert len(frame) == summary.flows and set(frame["batch_id"]) == {summary.batch_id}
    assert (frame["IN_PKTS"] + frame["OUT_PKTS"]).sum() == summary.packets == 6 * 4 + 2 + 3 * 4 + 2
    assert len(pd.read_parquet(lake_dir / "flows")) == summary.flows
    assert lake.dataset().to_table(filter=ds.field("batch") == summary.batch_id).num_rows == summary.flows
    rows = duckdb.sql(f"select count(*), count(distinct source_sha256) from read_parquet("
                      f"'{lake_dir}/flows/*/*.parquet', hive_partitioning=true)").fetchall()[0]
    assert rows == (summary.flows, 2)
    manifest = lake.batch_manifest(summary.batch_id)
    assert [f["rows"] for f in manifest["files"]] == [8, 5]


def test_reingest_is_a_noop(tmp_path, good_pcaps):
    config = IngestConfig(lake=tmp_path / "lake")
    first = ingest_paths(good_pcaps, config)
    again = ingest_paths(list(reversed(good_pcaps)), config)
    assert again.batch_id is None and again.count("duplicate") == 2 and again.ok
    assert Lake(config.lake).batches() == [first.batch_id]
    copy = tmp_path / "renamed-copy.pcap"  # same content under another name: still a duplicate
    copy.write_bytes(good_pcaps[0].read_bytes())
    assert ingest_paths([copy], config).count("duplicate") == 1


def _bad_corpus(tmp_path: Path, good: Path) -> dict[str, Path]:
    bad = {
        "random": tmp_path / "random.pcap",
        "text": tmp_path / "notes.pcap",
        "empty": tmp_path / "empty.pcap",
        "header-only": tmp_path / "header.pcap",
        "missing": tmp_path / "absent.pcap",
        "csv-no-cols": tmp_path / "flows.csv",
    }
    bad["random"].write_bytes(bytes(range(256)) * 16)
    bad["text"].write_text("not a capture\n" * 10)
    bad["empty"].write_bytes(b"")
    bad["header-only"].write_bytes(good.read_bytes()[:24])  # a pcap with no packets: no flows
    bad["csv-no-cols"].write_text("IPV4_SRC_ADDR,foo\n1.2.3.4,1\n")
    return bad


def test_bad_files_quarantined_rest_lands(tmp_path, good_pcaps, capsys):
    lake_dir = tmp_path / "lake"
    bad = _bad_corpus(tmp_path, good_pcaps[0])
    args = [str(p) for p in [good_pcaps[0], *bad.values(), good_pcaps[1]]]
    code = cli_main(["ingest", *args, "--lake", str(lake_dir), "--no-progress"])
    _, err = capsys.readouterr()
    assert code == 1
    lake = Lake(lake_dir)
    assert len(lake.read_flows()) == 13
    reasons = {p.name: p.read_text() for p in lake.quarantine_dir.glob("*.reason.txt")}
    assert len(reasons) == len(bad)
    for name, path in bad.items():
        line = next(text for fname, text in reasons.items() if fname.endswith(path.name + ".reason.txt"))
        assert line.count("\n") == 1 and str(path) in line, name
        assert f"QUARANTINED {path}" in err
        if name != "missing":
            assert path.exists(), f"{name}: a manual ingest copies bad files, leaving the user's original"
    for reason in ("unrecognised binary", "unrecognised text", "empty file", "no such file", "no IP flows",
                   "lacks required column"):
        assert reason in err


def test_forced_source_mismatch_is_quarantined(tmp_path, good_pcaps):
    summary = ingest_paths(good_pcaps[:1], IngestConfig(lake=tmp_path / "lake", source="zeek", quarantine="copy"))
    assert summary.count("quarantined") == 1 and "content is pcap" in summary.files[0].reason
    assert good_pcaps[0].exists()  # copy mode leaves the input in place


def test_explicit_batch_id_is_immutable(tmp_path, good_pcaps):
    config = IngestConfig(lake=tmp_path / "lake", batch_id="monday")
    assert ingest_paths(good_pcaps[:1], config).batch_id == "monday"
    with pytest.raises(FileExistsError, match="monday"):
        ingest_paths(good_pcaps[1:], config)


def test_killed_ingest_leaves_no_partial_batch(tmp_path):
    """SIGKILL an ingest while it writes: no batch becomes visible; the next run completes and cleans up."""
    inputs = [make_pcap(tmp_path / f"in{i}.pcap", n_flows=30, base_port=20000 + 100 * i) for i in range(8)]
    lake_dir = tmp_path / "lake"
    cmd = [sys.executable, "-m", "flowhawk.cli", "ingest", *map(str, inputs), "--lake", str(lake_dir), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not list((lake_dir / "flows").glob(".tmp-*/part-00001.parquet")):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list((lake_dir / "flows").glob(".tmp-*")), "the kill should have landed mid-write"
    assert Lake(lake_dir).batches() == [] and len(pd.read_parquet(lake_dir / "flows")) == 0
    summary = ingest_paths(inputs, IngestConfig(lake=lake_dir))
    assert summary.ok and summary.flows == 8 * 32
    assert not list((lake_dir / "flows").glob(".tmp-*")), "stale temp of the killed writer is cleaned"
    manifest = json.loads((Lake(lake_dir).batch_dir(summary.batch_id) / "_manifest.json").read_text())
    assert manifest["rows"] == summary.flows
