"""lake/inbox.py on its own (no Prefect): what is pending, claims, resuming a dead run's claim, concurrent
claimers, and filing away to done/ and quarantine/. Other processes are real subprocesses (flock, SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowhawk.lake.inbox import Inbox, InboxConfig, read_outcome

ROOT = Path(__file__).resolve().parents[1]
# A claimer in another process: waits for <inbox>/../go, claims until nothing is left, prints the claims
# as JSON ({claim_id: [file names]}), then (with "hold") sleeps with its claims still held.
CLAIMER = """
import json, sys, time
from pathlib import Path
from flowhawk.lake.inbox import Inbox, InboxConfig
root, max_files, hold = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "hold"
while not (root.parent / "go").exists():
    time.sleep(0.005)
inbox, claims = Inbox(InboxConfig(root, settle_seconds=0, max_files=max_files)), []
while new := inbox.claim():
    claims += new
print(json.dumps({c.claim_id: sorted(p.name for p in c.captures) for c in claims}), flush=True)
if hold:
    time.sleep(600)
"""


def _inbox(root: Path, settle: float = 0.0, max_files: int = 100) -> Inbox:
    return Inbox(InboxConfig(root, settle_seconds=settle, max_files=max_files))


def _drop(root: Path, *names: str, age_s: float = 3600.0) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).write_bytes(name.encode())
        past = time.time() - age_s
        os.utime(root / name, (past, past))


def _claimer(root: Path, max_files: int, hold: bool) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CLAIMER, str(root), str(max_files), "hold" if hold else "exit"],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_pending_skips_hidden_partial_sidecars_reserved_and_unsettled(tmp_path: Path) -> None:
    root = tmp_path / "inbox"
    _drop(root, "b.pcap", "a.pcap", "a.labels.csv", ".hidden.pcap", "c.pcap.part", "d.PARTIAL", "e.crdownload",
          "f.tmp", "g.filepart")
    _drop(root, "fresh.pcap", age_s=0.0)
    (root / "done").mkdir()
    (root / "subfolder").mkdir()
    assert [p.name for p in _inbox(root, settle=30).pending()] == ["a.pcap", "b.pcap"]
    # a folder is claimed too, to be refused with a reason (issue 11), never left lying in the inbox
    assert [p.name for p in _inbox(root, settle=0).pending()] == ["a.pcap", "b.pcap", "fresh.pcap", "subfolder"]
    assert _inbox(tmp_path / "absent").pending() == []


def test_a_file_still_being_written_waits_until_it_settles(tmp_path: Path) -> None:
    root = tmp_path / "inbox"
    _drop(root, "slow.pcap", age_s=0.0)
    inbox = _inbox(root, settle=60)
    assert inbox.claim() == [] and (root / "slow.pcap").exists()
    past = time.time() - 61
    os.utime(root / "slow.pcap", (past, past))
    [claim] = inbox.claim()
    assert [p.name for p in claim.captures] == ["slow.pcap"]
    claim.release()


def test_claim_moves_files_and_their_sidecars_and_respects_max_files(tmp_path: Path) -> None:
    root = tmp_path / "inbox"
    _drop(root, "a.pcap", "a.labels.csv", "b.pcap", "b.pcap.labels.csv", "c.pcap")
    inbox = _inbox(root, max_files=2)
    [first] = inbox.claim()
    assert first.directory == root / "processing" / first.claim_id and not first.resumed
    assert [p.name for p in first.captures] == ["a.pcap", "b.pcap"]
    assert first.labels == {"a.pcap": first.directory / "a.labels.csv", "b.pcap": first.directory / "b.pcap.labels.csv"}
    assert sorted(p.name for p in root.iterdir()) == ["c.pcap", "processing"]
    [second] = inbox.claim()  # the first claim is held by this (live) process: not resumed, not re-claimed
    assert [p.name for p in second.captures] == ["c.pcap"] and second.labels == {}
    assert inbox.claim() == []
    for claim in (first, second):
        claim.release()


def test_finish_files_away_to_done_and_quarantine_with_reasons(tmp_path: Path) -> None:
    root = tmp_path / "inbox"
    _drop(root, "good.pcap", "good.labels.csv", "bad.pcap", "odd.pcap")
    inbox = _inbox(root)
    [claim] = inbox.claim()
    record = inbox.finish(claim, {"good.pcap": {"status": "ingested", "flows": 7},
                                  "bad.pcap": {"status": "quarantined", "reason": "bad.pcap: not a capture"}})
    done, bad = root / "done" / claim.claim_id, root / "quarantine" / claim.claim_id
    assert sorted(p.name for p in done.iterdir()) == ["_outcome.json", "good.labels.csv", "good.pcap", "odd.pcap"]
    assert sorted(p.name for p in bad.iterdir()) == ["bad.pcap", "bad.pcap.reason.txt"]
    assert (bad / "bad.pcap.reason.txt").read_text() == "bad.pcap: not a capture\n"
    assert (bad / "bad.pcap").read_bytes() == b"bad.pcap"
    assert read_outcome(root, claim.claim_id) == record
    assert record["files"]["good.pcap"] == {"status": "ingested", "flows": 7, "moved_to": str(done / "good.pcap")}
    assert record["files"]["odd.pcap"]["status"] == "unknown"  # no outcome given: filed as done, said so
    assert list((root / "processing").iterdir()) == []  # the claim folder is gone
    assert inbox.claim() == []


def test_a_dead_runs_claim_is_resumed_and_a_live_runs_is_not(tmp_path: Path) -> None:
    root = tmp_path / "inbox"
    _drop(root, "a.pcap", "a.labels.csv", "b.pcap")
    (tmp_path / "go").touch()
    child = _claimer(root, 100, hold=True)
    try:
        claimed = json.loads(child.stdout.readline())
        [(claim_id, names)] = claimed.items()
        assert names == ["a.pcap", "b.pcap"]
        assert _inbox(root).claim() == []  # its owner lives: the claim is left alone
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
    [resumed] = _inbox(root).claim()  # the kernel dropped the dead owner's flock
    assert resumed.resumed and resumed.claim_id == claim_id
    assert [p.name for p in resumed.captures] == ["a.pcap", "b.pcap"]
    assert resumed.labels == {"a.pcap": resumed.directory / "a.labels.csv"}
    resumed.release()


def test_an_abandoned_empty_claim_folder_is_removed(tmp_path: Path) -> None:
    root = tmp_path / "inbox"
    staging = root / "processing" / ".claim-c-20260101t000000-abcdef"  # a run died between mkdir and rename
    staging.mkdir(parents=True)
    empty = root / "processing" / "c-20260101t000000-123456"  # a run died after its files were moved out
    empty.mkdir()
    assert _inbox(root).claim() == []
    assert not empty.exists() and staging.exists()  # too young: may be a live run about to lock it
    past = time.time() - 120
    os.utime(staging, (past, past))
    assert _inbox(root).claim() == [] and list((root / "processing").iterdir()) == []


def test_two_claimers_started_together_never_take_the_same_file(tmp_path: Path) -> None:
    root = tmp_path / "inbox"
    names = [f"f{i:03d}.pcap" for i in range(120)]
    _drop(root, *names)
    # both hold their claims until both have reported: a claimer that exited would leave its claims to be
    # resumed (correctly) by the other, which would then report those files too
    children = [_claimer(root, 3, hold=True) for _ in range(2)]
    taken: list[str] = []
    try:
        time.sleep(1.0)  # both are importing / waiting for the go file
        (tmp_path / "go").touch()
        for child in children:
            claims = json.loads(child.stdout.readline())
            taken += [name for files in claims.values() for name in files]
    finally:
        for child in children:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
            child.stdout.close()
    assert sorted(taken) == names, "every file claimed exactly once"


@pytest.mark.parametrize(("kwargs", "field"), [({"settle_seconds": -1}, "settle_seconds"),
                                              ({"settle_seconds": "5"}, "settle_seconds"),
                                              ({"max_files": 0}, "max_files"), ({"max_files": 2.5}, "max_files")])
def test_config_errors_name_the_parameter(tmp_path: Path, kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"InboxConfig.{field}"):
        InboxConfig(tmp_path, **kwargs)
