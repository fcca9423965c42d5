"""Format sniffing, one-line errors, atomic writes, stale-temp cleanup, schema conformance."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from flowhawk.common.files import (
    atomic_write_json,
    exclusive_lock,
    remove_stale_temps,
    replace_dir,
    sha256_file,
    tmp_sibling,
)
from flowhawk.extractors.base import BadInputError, sniff_format
from flowhawk.extractors.schema import COLUMN_NAMES, FLOW_SCHEMA, conform, markdown_table
from flowhawk.lake.store import Lake, validate_batch_id


def _one_line_naming(exc: BadInputError, path) -> None:
    text = str(exc)
    assert "\n" not in text and str(path) in text and exc.reason


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"\x00" + os.urandom(4095), "unrecognised binary"),  # a NUL in the sniffed head, never a magic
        (b"hello, this is just a text file\nwith two lines\n", "unrecognised text"),
    ],
)
def test_sniff_rejects_with_one_line(tmp_path, content, reason):
    path = tmp_path / "input.pcap"
    path.write_bytes(content)
    with pytest.raises(BadInputError) as info:
        sniff_format(path)
    assert reason in info.value.reason
    _one_line_naming(info.value, path)


def test_sniff_missing_and_directory(tmp_path):
    with pytest.raises(BadInputError, match="no such file"):
        sniff_format(tmp_path / "absent.pcap")
    with pytest.raises(BadInputError, match="directory"):
        sniff_format(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_sniff_unreadable(tmp_path):
    path = tmp_path / "secret.pcap"
    path.write_bytes(b"\xd4\xc3\xb2\xa1" + b"\x00" * 20)
    path.chmod(0)
    with pytest.raises(BadInputError, match="permission denied"):
        sniff_format(path)


def test_sniff_from_content_not_extension(tmp_path):
    cases = {
        "a.log": b"\x0a\x0d\x0d\x0a" + b"\x00" * 24,  # pcapng named .log
        "b.pcapng": b"\xd4\xc3\xb2\xa1" + b"\x00" * 20,  # pcap named .pcapng
        "c.txt": b"#separator \\x09\n#fields\tts\tuid\tid.orig_h\n",
        "d.csv": b"IPV4_SRC_ADDR,L4_SRC_PORT,IPV4_DST_ADDR\n1.2.3.4,1,5.6.7.8\n",
    }
    expected = {"a.log": "pcapng", "b.pcapng": "pcap", "c.txt": "zeek", "d.csv": "nf-csv"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        assert sniff_format(tmp_path / name) == expected[name]
    gz = tmp_path / "conn.bin"
    gz.write_bytes(gzip.compress(cases["c.txt"]))
    assert sniff_format(gz) == "zeek"


def test_sha256_is_content_not_path(tmp_path):
    (tmp_path / "x").write_bytes(b"same")
    (tmp_path / "y").write_bytes(b"same")
    assert sha256_file(tmp_path / "x") == sha256_file(tmp_path / "y")


def test_conform_fills_types_and_nulls():
    frame = pd.DataFrame({"IPV4_SRC_ADDR": ["10.0.0.1", "fe80::1"], "IN_BYTES": [10.0, np.nan],
                          "PROTOCOL": [6, 17], "not_a_column": [1, 2]})
    table = conform(frame, batch_id="b1")
    assert table.schema.equals(FLOW_SCHEMA, check_metadata=False)
    assert table.column("IN_BYTES").to_pylist() == [10, None]
    assert table.column("batch_id").to_pylist() == ["b1", "b1"]
    assert table.column("OUT_BYTES").null_count == 2
    with pytest.raises(ValueError, match="IN_PKTS"):
        conform(pd.DataFrame({"IN_PKTS": ["many"]}))
    with pytest.raises(ValueError, match="unknown column"):
        conform(frame, nonsense=1)


def test_schema_doc_lists_every_column():
    doc = markdown_table()
    assert all(f"`{name}`" in doc for name in COLUMN_NAMES)


def test_atomic_json_and_dir(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert (tmp_path / "a.json").read_text().strip().startswith("{")
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    tmp = tmp_sibling(tmp_path / "final")
    tmp.mkdir()
    replace_dir(tmp, tmp_path / "final")
    other = tmp_sibling(tmp_path / "final")
    other.mkdir()
    with pytest.raises(FileExistsError):
        replace_dir(other, tmp_path / "final")


def test_stale_temps_removed_only_for_dead_writers(tmp_path):
    mine = tmp_sibling(tmp_path / "batch=x")  # this (live) process
    mine.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".tmp-batch=y-{dead.stdout.strip()}-abcdef123456"
    stale.mkdir()
    assert remove_stale_temps(tmp_path) == 1
    assert mine.exists() and not stale.exists()


def test_empty_lake_reads_as_empty_schema(tmp_path):
    lake = Lake(tmp_path)
    assert lake.batches() == [] and lake.ledger() == {}
    assert lake.read_table().schema.equals(FLOW_SCHEMA, check_metadata=False)
    assert isinstance(lake.read_table(columns=["IN_BYTES"]), pa.Table)


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "-lead", "x" * 65, "sp ace"])
def test_batch_id_validation(bad):
    with pytest.raises(ValueError, match="batch id"):
        validate_batch_id(bad)


def test_exclusive_lock_excludes_another_process_until_it_dies(tmp_path):
    lock = tmp_path / "models" / ".train.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path\n"
         "from flowhawk.common.files import exclusive_lock\n"
         "with exclusive_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)", str(lock)],
        stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TimeoutError, match="still locked"), exclusive_lock(lock, timeout=0.3):
            pass
    finally:
        holder.kill()  # SIGKILL: the kernel drops the lock with the process
        holder.wait()
    # a second open of the same file, even in one process, waits too
    with exclusive_lock(lock, timeout=5), pytest.raises(TimeoutError), exclusive_lock(lock, timeout=0.1):
        pass
