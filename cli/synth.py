"""``flowhawk synth``: write a deterministic labelled capture (benign clients + attacks) and its labels CSV."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Kept in step with extractors.synth (importing it here would load scapy/pandas just to build the parser).
_KINDS = "portscan, synflood, udpflood, httpflood, slowloris, icmpflood"
_DEFAULT = "portscan,synflood,udpflood,httpflood,slowloris"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="synthesise a labelled pcap (benign clients + attacks) for tests and demos",
        description="Write a deterministic pcap of benign clients (HTTP GETs of varied size, DNS lookups, pings) "
        "talking to one server for the whole duration, and attacks each from its own address in its own time "
        "window, plus a labels CSV in the lab format (src_ip,dst_ip,label,start_epoch,end_epoch,tool,exit_code). "
        "The same options give byte-identical files. Prints a one-line summary with the flows nfstream should "
        "find per label (120 s idle/active timeouts).",
    )
    p.add_argument("out", type=Path, metavar="OUT.pcap", help="capture to write (replaced atomically)")
    p.add_argument("--labels", type=Path, metavar="OUT.csv",
                   help="labels CSV to write (default: OUT with the suffix replaced by .labels.csv)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--packets", type=int, default=20_000, help="approximate total packets (default 20000)")
    p.add_argument("--duration", type=float, default=300.0, metavar="S", help="capture length in seconds "
                   "(default 300)")
    p.add_argument("--start-epoch", type=float, default=1_700_000_000.0, metavar="T",
                   help="time of the first packet, epoch seconds (default 1700000000)")
    p.add_argument("--clients", type=int, default=6, help="benign clients (default 6)")
    p.add_argument("--attacks", default=_DEFAULT, metavar="A,B,...",
                   help=f"attacks in time order, comma-separated, or 'none' (known: {_KINDS}; default {_DEFAULT})")
    p.add_argument("--size", action="append", default=[], metavar="ATTACK=N",
                   help="units of one attack instead of its share of --packets (ports, SYNs, datagrams, requests, "
                   "held connections, echoes); repeatable")
    p.set_defaults(func=run)


def _sizes(items: list[str]) -> dict[str, int]:
    sizes = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not value.strip().lstrip("-").isdigit():
            raise ValueError(f"--size {item!r}: expected ATTACK=N, e.g. synflood=5000")
        sizes[name.strip()] = int(value)
    return sizes


def run(args: argparse.Namespace) -> int:
    from flowhawk.extractors.base import BadInputError
    from flowhawk.extractors.synth import SynthConfig, synthesize

    labels = args.labels or args.out.with_suffix(".labels.csv")
    attacks = () if args.attacks.strip().lower() == "none" else tuple(
        a.strip() for a in args.attacks.split(",") if a.strip())
    try:
        config = SynthConfig(seed=args.seed, packets=args.packets, duration_s=args.duration,
                             start_epoch=args.start_epoch, n_benign_clients=args.clients, attacks=attacks,
                             sizes=_sizes(args.size))
        result = synthesize(config, args.out, labels)
    except (ValueError, BadInputError, OSError) as exc:
        print(f"flowhawk synth: {exc}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0
