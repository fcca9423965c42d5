"""``flowhawk capture``: live capture into the inbox (closed, complete pcaps; ``process_inbox`` picks them up)."""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
from types import FrameType

from flowhawk.cli.paths import add_path_options

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}
_SIZE_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``5m``, ``1h`` -> seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r}: not a duration (examples: 60s, 5m, 1h)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_size(text: str) -> int:
    """``512M``, ``2G``, ``65536`` -> bytes."""
    match = re.fullmatch(r"(\d+)([kmg]?)b?", text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r}: not a size (examples: 512M, 2G)")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("capture", help="capture an interface continuously into the inbox (rotated pcaps)",
                       description="Capture INTERFACE with tcpdump and drop closed, complete pcaps into the inbox "
                       "(written under a hidden temporary name, renamed when closed), each with a "
                       "<name>.capture.json sidecar counting the packets the kernel dropped. Stops on SIGINT or "
                       "SIGTERM, closing the current file. Needs root or CAP_NET_RAW.")
    p.add_argument("--interface", "-i", required=True, help="interface to capture on")
    add_path_options(p, "inbox")
    p.add_argument("--rotate", type=parse_duration, default=60.0, metavar="DURATION",
                   help="close a file after this long (default 60s; 5m, 1h...)")
    p.add_argument("--max-file-size", type=parse_size, default=512 * 2**20, metavar="SIZE",
                   help="close a file before it grows past this (default 512M)")
    p.add_argument("--min-free", type=parse_size, default=2**30, metavar="SIZE",
                   help="disk guard: below this free on the inbox's filesystem, packets are discarded and "
                   "counted (default 1G)")
    p.add_argument("--snaplen", type=int, default=262_144, help="bytes kept per packet (default 262144)")
    p.add_argument("--filter", default="", help="BPF filter (tcpdump syntax)")
    p.add_argument("--max-files", type=int, default=None,
                   help="stop after this many files (packets still in flight at the stop go into one last file)")
    p.set_defaults(func=run_capture)


def run_capture(args: argparse.Namespace) -> int:
    from flowhawk.cli.paths import resolve_path
    from flowhawk.lake.capture import CaptureConfig, LiveCapture

    inbox = resolve_path(args, "inbox")
    try:
        config = CaptureConfig(interface=args.interface, inbox=inbox, rotate_seconds=args.rotate,
                               max_file_bytes=args.max_file_size, min_free_bytes=args.min_free,
                               snaplen=args.snaplen, bpf_filter=args.filter)
    except ValueError as exc:
        print(f"flowhawk capture: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        files = LiveCapture(config, on_file=lambda p: print(p, flush=True)).run(stop, args.max_files)
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"flowhawk capture: {exc}", file=sys.stderr)
        return 2
    print(f"flowhawk capture: {len(files)} file(s) dropped into {inbox}", file=sys.stderr)
    return 0
