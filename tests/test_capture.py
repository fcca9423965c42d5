"""Live capture (``flowhawk capture``) in a lab of two network namespaces joined by a veth pair.

The namespaces, the veth pair and the addresses (10.254.213.0/30) exist only for the test: neither namespace
has a default route or any link to the root namespace, so nothing can leave them. They are torn down by name
(and the processes in them by PID). Skipped, with the reason, where namespaces cannot be created.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowhawk.cli.capture import parse_duration, parse_size
from flowhawk.lake.capture import CaptureConfig, TcpdumpStats
from flowhawk.lake.inbox import CAPTURE_STATS_SUFFIX, Inbox, InboxConfig, capture_totals, read_capture_stats

ROOT = Path(__file__).resolve().parents[1]
A_IP, B_IP, PORT, SENT = "10.254.213.1", "10.254.213.2", 40404, 400


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


def _teardown(namespaces: list[str]) -> None:
    for ns in namespaces:
        pids = _ip("netns", "pids", ns, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        _ip("netns", "del", ns, check=False)


@pytest.fixture
def lab():
    """Two namespaces ``fhc<pid>a`` / ``fhc<pid>b``, one veth pair between them; yields (ns_a, if_a, ns_b)."""
    if shutil.which("ip") is None or shutil.which("tcpdump") is None:
        pytest.skip("needs iproute2 (ip) and tcpdump")
    tag = f"fhc{os.getpid() % 100000}"
    ns_a, ns_b, if_a, if_b = f"{tag}a", f"{tag}b", f"{tag}a0", f"{tag}b0"
    probe = _ip("netns", "add", ns_a, check=False)
    if probe.returncode != 0:
        pytest.skip(f"network namespaces are not permitted here: {probe.stderr.strip()}")
    try:
        _ip("netns", "add", ns_b)
        _ip("-n", ns_a, "link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", ns_b)
        for ns, dev, addr in ((ns_a, if_a, A_IP), (ns_b, if_b, B_IP)):
            subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
                           check=True, timeout=30)
            _ip("-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", dev, "up")
            assert _ip("-n", ns, "route", "show", "default").stdout.strip() == "", "a default route in the lab"
        yield ns_a, if_a, ns_b
    finally:
        _teardown([ns_a, ns_b])


_SENDER = """
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[3])):
    s.sendto(struct.pack('!I', i) + b'flowhawk-capture-test', (sys.argv[1], int(sys.argv[2])))
    time.sleep(0.01)
"""


def _wait_capturing(capture: subprocess.Popen, timeout: float = 60.0) -> None:
    """Read the capture's stderr until it says tcpdump is listening (its signal handlers are set by then)."""
    capture.seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = capture.stderr.readline()
        capture.seen += line
        if "capturing on" in line:
            return
        if not line and capture.poll() is not None:
            break
    raise AssertionError(f"the capture did not start: {capture.seen}")


def _udp_sequence(pcaps: list[Path]) -> list[int]:
    """Sequence numbers of the test's UDP datagrams, in file order (Ethernet/IPv4/UDP, no options)."""
    from scapy.all import UDP, rdpcap

    out = []
    for path in pcaps:
        for packet in rdpcap(str(path)):
            if UDP in packet and packet[UDP].dport == PORT:
                out.append(struct.unpack("!I", bytes(packet[UDP].payload)[:4])[0])
    return out


@pytest.mark.slow
def test_capture_in_namespaces_drops_closed_rotated_pcaps(lab, tmp_path):
    ns_a, if_a, ns_b = lab
    inbox = tmp_path / "inbox"
    capture = subprocess.Popen(
        ["ip", "netns", "exec", ns_a, sys.executable, "-m", "flowhawk.cli", "capture", "--interface", if_a,
         "--inbox", str(inbox), "--rotate", "2s", "--min-free", "0", "--filter", "udp"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        _wait_capturing(capture)
        subprocess.run(["ip", "netns", "exec", ns_b, sys.executable, "-c", _SENDER, A_IP, str(PORT), str(SENT)],
                       check=True, timeout=60)
        time.sleep(0.5)
    finally:
        capture.send_signal(signal.SIGTERM)
        out, err = capture.communicate(timeout=30)
    assert capture.returncode == 0, err
    pcaps = sorted(inbox.glob("*.pcap"))
    assert [Path(line) for line in out.split()] == pcaps
    assert len(pcaps) >= 2, f"4 s of traffic rotated every 2 s gave {len(pcaps)} file(s)"
    assert not [p for p in inbox.iterdir() if p.name.startswith(".")], "a temporary file was left behind"
    seq = _udp_sequence(pcaps)
    # cut at packet boundaries: no datagram lost or duplicated between two files
    assert seq == list(range(seq[0], seq[0] + len(seq)))
    assert seq[-1] == SENT - 1 and len(seq) >= SENT // 2
    for pcap in pcaps:
        stats = json.loads(pcap.with_name(pcap.name + CAPTURE_STATS_SUFFIX).read_text())
        assert stats["capture"] == pcap.name and stats["interface"] == if_a
        assert stats["packets"] == len(_udp_sequence([pcap])) and stats["bytes"] == pcap.stat().st_size
        assert stats["kernel_dropped"] == 0 and stats["discarded_low_disk"] == 0
    # the inbox takes the captures (not the sidecars) and moves each sidecar with its capture
    box = Inbox(InboxConfig(inbox, settle_seconds=0))
    claim = box.claim()[0]
    assert sorted(p.name for p in claim.captures) == [p.name for p in pcaps]
    totals = capture_totals(read_capture_stats(claim))
    assert totals["packets"] == len(seq) and totals["kernel_dropped"] == 0 and len(totals["files"]) == len(pcaps)
    box.finish(claim, {p.name: {"status": "ingested"} for p in pcaps})
    done = sorted(p.name for p in (inbox / "done" / claim.claim_id).iterdir())
    assert done == sorted([p.name for p in pcaps] + [p.name + CAPTURE_STATS_SUFFIX for p in pcaps] + ["_outcome.json"])


@pytest.mark.slow
def test_capture_stops_writing_below_the_disk_guard(lab, tmp_path):
    ns_a, if_a, ns_b = lab
    inbox = tmp_path / "inbox"
    free = shutil.disk_usage(tmp_path).free
    capture = subprocess.Popen(
        ["ip", "netns", "exec", ns_a, sys.executable, "-m", "flowhawk.cli", "capture", "-i", if_a, "--inbox",
         str(inbox), "--rotate", "60s", "--min-free", str(free * 2), "--filter", "udp"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        _wait_capturing(capture)
        subprocess.run(["ip", "netns", "exec", ns_b, sys.executable, "-c", _SENDER, A_IP, str(PORT), "50"],
                       check=True, timeout=60)
        time.sleep(0.5)
    finally:
        capture.send_signal(signal.SIGTERM)
        _, rest = capture.communicate(timeout=30)
        err = capture.seen + rest
    assert capture.returncode == 0, err
    assert not list(inbox.iterdir()), "a file was written although the disk guard was below its floor"
    assert "discarding packets" in err


def test_capture_options_are_validated(tmp_path):
    assert parse_duration("90s") == 90 and parse_duration("5m") == 300 and parse_duration("1h") == 3600
    assert parse_size("512M") == 512 * 2**20 and parse_size("2g") == 2 * 2**30
    with pytest.raises(ValueError, match="rotate_seconds"):
        CaptureConfig("eth0", tmp_path, rotate_seconds=0)
    with pytest.raises(ValueError, match="interface"):
        CaptureConfig("eth0; rm -rf /", tmp_path)
    with pytest.raises(ValueError, match="max_file_bytes"):
        CaptureConfig("eth0", tmp_path, max_file_bytes=10)
    assert CaptureConfig("eth0", tmp_path).prefix == "live-eth0"


def test_tcpdump_that_exits_before_listening_is_seen_at_once():
    """tcpdump on a mistyped interface prints its error and exits: the capture must fail then, with that line,
    not wait out the 30 s it allows a slow start (it did: 35 s for a typo)."""
    read, write = os.pipe()
    os.write(write, b"tcpdump: nosuchif0: No such device exists\n(No such device exists)\n")
    os.close(write)
    with os.fdopen(read, "rb") as stderr:
        stats = TcpdumpStats(stderr)
        assert stats.started(timeout=30) is False
        assert stats.exited.is_set() and stats.lines[0] == "tcpdump: nosuchif0: No such device exists"
    read, write = os.pipe()
    os.write(write, b"tcpdump: listening on veth0, link-type EN10MB (Ethernet)\n")
    with os.fdopen(read, "rb") as stderr:
        stats = TcpdumpStats(stderr)
        assert stats.started(timeout=30) is True and not stats.exited.is_set()
        os.close(write)
        stats.final()
        assert stats.exited.is_set()


def test_capture_cli_reports_a_bad_interface(tmp_path):
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed")
    proc = subprocess.run([sys.executable, "-m", "flowhawk.cli", "capture", "-i", "nosuchif0", "--inbox",
                           str(tmp_path), "--min-free", "0"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2 and "nosuchif0" in proc.stderr and proc.stderr.count("\n") <= 2, proc.stderr
