"""Inputs that are not what they claim (issue 11): links, FIFOs, devices, directories, files that change while
being read. Each is refused with a one-line reason and never read; manual ingest leaves the user's files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowhawk.extractors.base import BadInputError
from flowhawk.lake.inbox import Inbox, InboxConfig
from flowhawk.lake.ingest import IngestConfig, ingest_paths
from flowhawk.lake.inputs import check_unchanged, open_input
from flowhawk.lake.store import Lake
from tests.test_ingest import ROOT, make_pcap

SECRET = b"root:SECRET-4f1c9e:0:0:not a capture\n"


def _cli_ingest(paths: list[Path], lake: Path, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real command in a subprocess: a reader that blocks on a FIFO or /dev/zero fails by timeout."""
    cmd = [sys.executable, "-m", "flowhawk.cli", "ingest", *map(str, paths), "--lake", str(lake), "--no-progress",
           *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _lake_bytes(lake: Path) -> bytes:
    return b"".join(p.read_bytes() for p in lake.rglob("*") if p.is_file())


def test_symlink_is_refused_and_its_target_never_read(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    (tmp_path / "link.pcap").symlink_to(secret)
    (tmp_path / "passwd.pcap").symlink_to("/etc/passwd")
    good = make_pcap(tmp_path / "good.pcap")
    lake = tmp_path / "lake"
    done = _cli_ingest([tmp_path / "link.pcap", tmp_path / "passwd.pcap", good], lake)
    assert done.returncode == 1, done.stderr
    assert f"QUARANTINED {tmp_path / 'link.pcap'}: is a symbolic link (-> {secret}); links are never followed" \
        in done.stderr
    assert "passwd.pcap: is a symbolic link (-> /etc/passwd)" in done.stderr
    assert b"SECRET-4f1c9e" not in _lake_bytes(lake) and b"root:x:0:0" not in _lake_bytes(lake)
    assert len(Lake(lake).read_flows()) == 8  # the good file landed
    assert (tmp_path / "link.pcap").is_symlink()  # left where it was


@pytest.fixture
def alarm():
    """Fail (SIGALRM -> exception) instead of hanging when a reader blocks on a FIFO or reads /dev/zero."""
    def ring(signum, frame):
        raise TimeoutError("the ingest blocked on a non-regular file")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_fifo_device_and_directory_refused_without_blocking(tmp_path, alarm):
    fifo = tmp_path / "pipe.pcap"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.pcap"
    folder.mkdir()
    (tmp_path / "to-fifo.pcap").symlink_to(fifo)  # following it would block forever
    paths = [fifo, Path("/dev/zero"), Path("/dev/null"), folder, tmp_path / "to-fifo.pcap"]
    summary = ingest_paths(paths, IngestConfig(lake=tmp_path / "lake"))  # /dev/zero: would hash forever
    reasons = [f.reason for f in summary.files]
    assert reasons == ["is a FIFO (named pipe), not a regular file", "is a character device, not a regular file",
                       "is a character device, not a regular file", "is a directory, not a regular file",
                       f"is a symbolic link (-> {fifo}); links are never followed"]
    assert fifo.exists() and folder.is_dir()
    quarantined = sorted(p.name for p in (tmp_path / "lake" / "quarantine").iterdir())
    assert all(name.endswith(".reason.txt") for name in quarantined)  # nothing non-regular copied


def test_cli_does_not_hang_on_a_fifo_in_a_folder(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    os.mkfifo(folder / "pipe")
    make_pcap(folder / "good.pcap")
    done = _cli_ingest([folder], tmp_path / "lake", timeout=120)
    assert done.returncode == 1 and "pipe: is a FIFO" in done.stderr, done.stderr


def test_manual_ingest_copies_bad_files_and_leaves_the_originals(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a capture\n")
    done = _cli_ingest([bad, make_pcap(tmp_path / "good.pcap")], tmp_path / "lake")
    assert done.returncode == 1
    assert bad.read_text() == "not a capture\n"  # still where the user put it
    copies = list((tmp_path / "lake" / "quarantine").glob("*-notes.txt"))
    assert len(copies) == 1 and copies[0].read_text() == "not a capture\n"
    done = _cli_ingest([bad], tmp_path / "lake2", "--move-bad")
    assert done.returncode == 1 and not bad.exists()


def test_file_growing_while_hashed_or_read_is_refused(tmp_path):
    path = make_pcap(tmp_path / "grow.pcap")
    hashed = open_input(path)
    check_unchanged(hashed)
    with path.open("ab") as fh:
        fh.write(b"\0" * 16)
    with pytest.raises(BadInputError, match="changed while being read"):
        check_unchanged(hashed)
    path.unlink()
    path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(BadInputError, match="now a symbolic link"):
        check_unchanged(hashed)


def test_file_changed_between_hash_and_extraction_is_quarantined(tmp_path):
    first, second = make_pcap(tmp_path / "a.pcap"), make_pcap(tmp_path / "b.pcap", base_port=50000)

    def grow_the_next(result, done, total):
        if done == 1:
            with second.open("ab") as fh:
                fh.write(b"\0" * 16)  # appended after b.pcap was hashed, before it is extracted

    summary = ingest_paths([first, second], IngestConfig(lake=tmp_path / "lake"), progress=grow_the_next)
    assert [f.status for f in summary.files] == ["ingested", "quarantined"]
    assert "changed while being read" in summary.files[1].reason
    assert Lake(tmp_path / "lake").batch_manifest(summary.batch_id)["rows"] == 8


def test_inbox_never_follows_links_and_files_odd_entries_away(tmp_path):
    inbox_dir = tmp_path / "inbox"
    inbox_dir.mkdir()
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    (inbox_dir / "link.pcap").symlink_to(secret)
    (inbox_dir / "link.pcap.labels.csv").symlink_to(secret)
    os.mkfifo(inbox_dir / "pipe.pcap")
    (inbox_dir / "sub").mkdir()
    make_pcap(inbox_dir / "good.pcap")
    past = time.time() - 60
    for entry in inbox_dir.iterdir():
        os.utime(entry, (past, past), follow_symlinks=False)
    inbox = Inbox(InboxConfig(root=inbox_dir, settle_seconds=1))
    [claim] = inbox.claim()
    assert [p.name for p in claim.captures] == ["good.pcap"] and claim.labels == {}
    assert set(claim.refused) == {"link.pcap", "link.pcap.labels.csv", "pipe.pcap", "sub"}
    record = inbox.finish(claim, {"good.pcap": {"status": "ingested"}})
    bad = inbox_dir / "quarantine" / claim.claim_id
    assert (bad / "link.pcap").is_symlink() and (bad / "pipe.pcap").exists() and (bad / "sub").is_dir()
    assert "links are never followed" in (bad / "link.pcap.reason.txt").read_text()
    assert record["files"]["pipe.pcap"]["status"] == "quarantined"
    assert (inbox_dir / "done" / claim.claim_id / "good.pcap").is_file()
    assert sorted(p.name for p in inbox_dir.iterdir()) == ["done", "processing", "quarantine"]
