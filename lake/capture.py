"""Live capture into the inbox: one tcpdump, its pcap stream cut into closed, complete files.

Why tcpdump: libpcap counts the packets the kernel dropped (``pcap_stats``) and tcpdump prints those counters
on SIGUSR1 without stopping; scapy's sniffer has no such counter (its drops go unseen). tcpdump writes one
continuous pcap stream to its stdout (``-w - -U``); this module cuts it at packet boundaries, so no packet is
lost or duplicated between two files (two tcpdump processes, one per file, would leave a gap or an overlap).

Each file is written as a hidden temporary (``.tmp-<name>-<pid>-...``: the inbox ignores it) and renamed to
``<prefix>-<UTC start>.pcap`` once closed: on rotation (``rotate_seconds``), at the size cap
(``max_file_bytes``), when the disk guard trips, or at stop. Before the rename, its sidecar
``<name>.capture.json`` (packets, bytes, kernel drops during the file, packets discarded by the disk guard)
is written atomically; the inbox moves it with its capture. Below ``min_free_bytes`` free on the inbox's
filesystem, the open file is closed and further packets are discarded (and counted) until space returns.
"""

from __future__ import annotations

import logging
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

from flowhawk.common.files import atomic_write_json, remove_stale_temps, tmp_sibling
from flowhawk.lake.inbox import CAPTURE_STATS_SUFFIX

log = logging.getLogger(__name__)
_GLOBAL_HEADER = 24
_RECORD_HEADER = 16
_MAGICS = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}
_STAT = re.compile(r"(\d+) packets? (captured|received by filter|dropped by kernel|dropped by interface)")
_IFACE = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")


@dataclass(frozen=True)
class CaptureConfig:
    """``interface``: the one to capture on; ``inbox``: where closed pcaps appear; ``rotate_seconds``: a file
    is closed this long after it was opened; ``max_file_bytes``: ... or when it would grow past this;
    ``min_free_bytes``: the disk guard; ``snaplen``: bytes kept per packet; ``bpf_filter``: optional."""

    interface: str
    inbox: Path
    rotate_seconds: float = 60.0
    max_file_bytes: int = 512 * 2**20
    min_free_bytes: int = 1 * 2**30
    snaplen: int = 262_144
    bpf_filter: str = ""
    prefix: str = ""
    tcpdump: str = "tcpdump"

    def __post_init__(self) -> None:
        if not _IFACE.match(self.interface):
            raise ValueError(f"CaptureConfig.interface must be an interface name (1-15 of A-Z a-z 0-9 _.:@-), "
                             f"got {self.interface!r}")
        _check_range("rotate_seconds", self.rotate_seconds, 1, 86_400)
        _check_range("max_file_bytes", self.max_file_bytes, 2**16, 2**40)
        _check_range("min_free_bytes", self.min_free_bytes, 0, 2**50)
        _check_range("snaplen", self.snaplen, 64, 262_144)
        if self.prefix and not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", self.prefix):
            raise ValueError(f"CaptureConfig.prefix must be 1-64 of A-Z a-z 0-9 _.- (not starting with . or -), "
                             f"got {self.prefix!r}")
        object.__setattr__(self, "inbox", Path(self.inbox))
        object.__setattr__(self, "prefix", self.prefix or f"live-{self.interface.replace(':', '_')}")


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"CaptureConfig.{name} must be in [{low}, {high}], got {value!r}")


class TcpdumpStats:
    """Cumulative libpcap counters, read from tcpdump's stderr (printed on SIGUSR1 and at exit)."""

    def __init__(self, stderr: IO[bytes]) -> None:
        self.counters: dict[str, int] = {}
        self.reports = 0  # complete reports seen (each ends with the "dropped by kernel" line)
        self.lines: list[str] = []
        self.listening = threading.Event()  # tcpdump said "listening on ..."
        self.exited = threading.Event()  # its stderr closed: tcpdump is gone (every line is read by then)
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stderr,), daemon=True)
        self._thread.start()

    def _read(self, stderr: IO[bytes]) -> None:
        # SIGUSR1: one line "N packets captured, N packets received by filter, N packets dropped by kernel";
        # at exit the same counters one per line
        for raw in stderr:
            line = raw.decode(errors="replace").strip()
            found = _STAT.findall(line)
            with self._changed:
                if not found:
                    self.lines = [*self.lines, line][-20:]
                    if "listening on" in line:
                        self.listening.set()
                for count, name in found:
                    self.counters[name] = int(count)
                if any(name == "dropped by kernel" for _, name in found):
                    self.reports += 1
                    self._changed.notify_all()
        self.exited.set()

    def started(self, timeout: float) -> bool:
        """Wait until tcpdump says it is listening (True), or exits first, or ``timeout`` s pass (False): a
        mistyped interface fails at once, not after the timeout."""
        deadline = time.monotonic() + timeout
        while not self.listening.wait(0.05):
            if self.exited.is_set() or time.monotonic() >= deadline:
                return self.listening.is_set()
        return True

    def refresh(self, process: subprocess.Popen, timeout: float = 2.0) -> dict[str, int]:
        """Ask the running tcpdump for its counters (SIGUSR1) and wait for the answer."""
        with self._changed:
            seen = self.reports
            if process.poll() is None:
                process.send_signal(signal.SIGUSR1)
                self._changed.wait_for(lambda: self.reports > seen, timeout)
            return dict(self.counters)

    def final(self, timeout: float = 5.0) -> dict[str, int]:
        self._thread.join(timeout)
        with self._changed:
            return dict(self.counters)


class _OpenFile:
    def __init__(self, config: CaptureConfig, header: bytes) -> None:
        self.started = datetime.now(timezone.utc)
        self.opened = time.monotonic()
        self.final = config.inbox / f"{config.prefix}-{self.started.strftime('%Y%m%dT%H%M%S.%fZ')}.pcap"
        self.tmp = tmp_sibling(self.final)
        self.handle = open(self.tmp, "wb")  # noqa: SIM115 - closed in LiveCapture._close
        self.handle.write(header)
        self.size = len(header)
        self.packets = 0


class LiveCapture:
    """Run ``tcpdump`` on ``config.interface`` and drop closed pcaps into ``config.inbox`` until ``stop`` is
    set (or ``max_files`` were dropped). ``on_file`` is called with each closed pcap's path."""

    def __init__(self, config: CaptureConfig, on_file: Callable[[Path], None] | None = None) -> None:
        self.config = config
        self.on_file = on_file
        self.files: list[Path] = []
        self._header = b""
        self._buffer = bytearray()  # bytes of the stream not yet written (an incomplete record)
        self._endian = "<"
        self._current: _OpenFile | None = None
        self._kernel_dropped = 0
        self._iface_dropped = 0
        self._discarded = 0
        self._last_guard = 0.0
        self._low_disk = False

    def command(self) -> list[str]:
        c = self.config
        exe = shutil.which(c.tcpdump)
        if exe is None:
            raise FileNotFoundError(f"{c.tcpdump}: not found (apt-get install tcpdump); it is the capture engine "
                                    "because it reports the kernel's packet drops")
        # --immediate-mode: each packet is handed over as it arrives (not when a 1 s ring block retires), so
        # the file cut at rotation and the packets still in the ring at stop are both within milliseconds.
        # -Z root: keep writing to our pipe as the user that started it (no switch to the tcpdump user)
        cmd = [exe, "-i", c.interface, "-n", "-U", "--immediate-mode", "-s", str(c.snaplen), "-w", "-"]
        if os.geteuid() == 0:
            cmd += ["-Z", "root"]
        return cmd + ([c.bpf_filter] if c.bpf_filter else [])

    def run(self, stop: threading.Event, max_files: int | None = None) -> list[Path]:
        self.config.inbox.mkdir(parents=True, exist_ok=True)
        removed = remove_stale_temps(self.config.inbox)
        if removed:
            log.info("%s: removed %d temporary file(s) of a dead capture", self.config.inbox, removed)
        process = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stats = TcpdumpStats(process.stderr)
        if stats.started(30):
            log.info("capturing on %s into %s (files of %g s)", self.config.interface, self.config.inbox,
                     self.config.rotate_seconds)
        try:
            self._pump(process, stats, stop, max_files)
        finally:
            if process.poll() is None:
                process.terminate()
            remaining = process.stdout.read() if process.stdout else b""  # to EOF: tcpdump flushed all
            process.wait(timeout=10)
            if remaining:
                self._buffer = self._feed(self._buffer + remaining, None)
            if self._current is not None:
                self._close("stop", stats.final())
        if process.returncode not in (0, -signal.SIGTERM) and not self._header:
            raise RuntimeError(f"tcpdump on {self.config.interface} failed (exit {process.returncode}): "
                               f"{' | '.join(stats.lines[-3:])}")
        return self.files

    def _pump(self, process: subprocess.Popen, stats: TcpdumpStats, stop: threading.Event,
              max_files: int | None) -> None:
        fd = process.stdout.fileno()
        while not stop.is_set() and (max_files is None or len(self.files) < max_files):
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break  # tcpdump exited
                self._buffer = self._feed(self._buffer + chunk, process, stats)
            now = time.monotonic()
            if self._current is not None and now - self._current.opened >= self.config.rotate_seconds:
                self._close("rotate", stats.refresh(process))

    def _feed(self, buffer: bytearray, process: subprocess.Popen | None,
              stats: TcpdumpStats | None = None) -> bytearray:
        """Write every complete record of ``buffer``; return the incomplete tail."""
        view, pos = memoryview(buffer), 0
        if not self._header:
            if len(buffer) < _GLOBAL_HEADER:
                return buffer
            magic = bytes(buffer[:4])
            if magic not in _MAGICS:
                raise RuntimeError(f"tcpdump on {self.config.interface}: not a pcap stream (magic {magic.hex()})")
            self._header, self._endian, pos = bytes(buffer[:_GLOBAL_HEADER]), _MAGICS[magic], _GLOBAL_HEADER
        fmt = f"{self._endian}I"
        while len(buffer) - pos >= _RECORD_HEADER:
            caplen = struct.unpack_from(fmt, buffer, pos + 8)[0]
            end = pos + _RECORD_HEADER + caplen
            if end > len(buffer):
                break
            self._write(view[pos:end], process, stats)
            pos = end
        tail = bytearray(view[pos:])
        view.release()
        return tail

    def _write(self, record: memoryview, process: subprocess.Popen | None, stats: TcpdumpStats | None) -> None:
        if not self._disk_ok(process, stats):
            self._discarded += 1
            return
        current = self._current
        if current is not None and current.size + len(record) > self.config.max_file_bytes and current.packets:
            self._close("size", stats.refresh(process) if stats and process else {})
            current = None
        if current is None:
            current = self._current = _OpenFile(self.config, self._header)
        current.handle.write(record)
        current.size += len(record)
        current.packets += 1

    def _disk_ok(self, process: subprocess.Popen | None, stats: TcpdumpStats | None) -> bool:
        """The disk guard, checked at most once a second."""
        now = time.monotonic()
        if now - self._last_guard >= 1.0:
            self._last_guard = now
            free = shutil.disk_usage(self.config.inbox).free
            low = free < self.config.min_free_bytes
            if low != self._low_disk:
                log.warning("%s: %d MB free, %s", self.config.inbox, free // 2**20,
                            f"below {self.config.min_free_bytes // 2**20} MB: discarding packets" if low
                            else "capture resumed")
            self._low_disk = low
            if low and self._current is not None:
                self._close("low disk", stats.refresh(process) if stats and process else {})
        return not self._low_disk

    def _close(self, reason: str, counters: dict[str, int]) -> None:
        current, self._current = self._current, None
        if current is None:
            return
        current.handle.flush()
        os.fsync(current.handle.fileno())
        current.handle.close()
        kernel = counters.get("dropped by kernel", self._kernel_dropped)
        iface = counters.get("dropped by interface", self._iface_dropped)
        sidecar = {
            "capture": current.final.name, "interface": self.config.interface, "engine": "tcpdump (libpcap)",
            "started_utc": current.started.isoformat(), "ended_utc": datetime.now(timezone.utc).isoformat(),
            "closed_because": reason, "packets": current.packets, "bytes": current.size,
            "kernel_dropped": kernel - self._kernel_dropped, "interface_dropped": iface - self._iface_dropped,
            "discarded_low_disk": self._discarded,
        }
        self._kernel_dropped, self._iface_dropped, self._discarded = kernel, iface, 0
        atomic_write_json(current.final.with_name(current.final.name + CAPTURE_STATS_SUFFIX), sidecar)
        os.replace(current.tmp, current.final)  # the capture last: the inbox never sees it without its sidecar
        self.files.append(current.final)
        log.info("%s: %d packets, %d dropped by the kernel (%s)", current.final.name, current.packets,
                 sidecar["kernel_dropped"], reason)
        if self.on_file is not None:
            self.on_file(current.final)
