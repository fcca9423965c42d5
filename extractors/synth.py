"""Deterministic capture synthesiser: a labelled pcap of benign clients and attacks, like the lab capture.

``synthesize(SynthConfig(...), out_pcap, out_labels)`` writes a classic pcap (Ethernet, IPv4, valid
checksums, nondecreasing timestamps) and a labels CSV in the lab format (``src_ip,dst_ip,label,start_epoch,
end_epoch,tool,exit_code``: one row per benign client and per attacker). The same config (seed included)
gives byte-identical files. Benign clients talk to the server for the whole duration; each attack comes from
its own address in its own time window. Packets are streamed: only sessions in progress are in memory.

Each label row spans the source's conversations: from its first packet to the last packet it sends or
receives, so every flow of that source lies inside its row's window.
"""

from __future__ import annotations

import heapq
import ipaddress
import os
import random
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from flowhawk.common.config import config_from_mapping
from flowhawk.extractors.base import BadInputError
from flowhawk.extractors.synth_packets import FlowKey, Host, PcapWriter
from flowhawk.extractors.synth_sources import ATTACKS, BENIGN_LABEL, Session, attack, benign_client

DEFAULT_ATTACKS = ("portscan", "synflood", "udpflood", "httpflood", "slowloris")
IDLE_TIMEOUT_S = ACTIVE_TIMEOUT_S = 120  # the nfstream timeouts ``flows_expected`` is computed for
TOOL = "flowhawk-synth"
_MAX_EPOCH = 2**32 - 1  # pcap record seconds are unsigned 32-bit


def _require(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ValueError(f"SynthConfig.{name}: {message}")


def _ipv4(name: str, value: object) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(str(value))
    except ValueError:
        raise ValueError(f"SynthConfig.{name}: {value!r} is not an IPv4 address (dotted quad)") from None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class SynthConfig:
    """What to synthesise. Sizes come from ``packets`` (the approximate total) unless ``sizes`` fixes the
    number of units of an attack (ports probed, SYNs, datagrams, requests, held connections, echoes)."""

    seed: int = 0
    start_epoch: float = 1_700_000_000.0
    duration_s: float = 300.0
    n_benign_clients: int = 6
    server: str = "10.200.0.10"
    client_base: str = "10.200.0.21"  # benign clients take consecutive addresses from here
    attackers: tuple[str, ...] = ()  # one per attack, in ``attacks`` order; () = 10.200.0.101, .102, ...
    attacks: tuple[str, ...] = DEFAULT_ATTACKS  # also the order of the attack windows in time
    sizes: tuple[tuple[str, int], ...] = ()  # (attack, units) overrides
    packets: int = 20_000
    benign_share: float = 0.4  # share of ``packets`` sent by/to benign clients (all of it without attacks)

    def __post_init__(self) -> None:
        for name in ("attackers", "attacks"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        sizes = self.sizes.items() if isinstance(self.sizes, Mapping) else self.sizes
        object.__setattr__(self, "sizes", tuple((str(k), v) for k, v in sizes))
        self._validate_numbers()
        self._validate_attacks()
        self._validate_addresses()

    def _validate_numbers(self) -> None:
        _require(_is_int(self.seed) and 0 <= self.seed < 2**63, "seed", f"must be an int in [0, 2**63), got "
                 f"{self.seed!r}")
        _require(isinstance(self.duration_s, int | float) and 10 <= self.duration_s <= 86_400, "duration_s",
                 f"must be a number of seconds in [10, 86400], got {self.duration_s!r}")
        _require(isinstance(self.start_epoch, int | float)
                 and 0 <= self.start_epoch <= _MAX_EPOCH - self.duration_s - 60, "start_epoch",
                 f"must be in [0, 2**32 - 1 - duration_s - 60] (pcap seconds are 32-bit), got {self.start_epoch!r}")
        _require(_is_int(self.n_benign_clients) and 0 <= self.n_benign_clients <= 200, "n_benign_clients",
                 f"must be an int in [0, 200], got {self.n_benign_clients!r}")
        _require(_is_int(self.packets) and 100 <= self.packets <= 5_000_000, "packets",
                 f"must be an int in [100, 5000000], got {self.packets!r}")
        _require(isinstance(self.benign_share, int | float) and 0.05 <= self.benign_share <= 0.95,
                 "benign_share", f"must be in [0.05, 0.95], got {self.benign_share!r}")

    def _validate_attacks(self) -> None:
        for kind in self.attacks:
            _require(kind in ATTACKS, "attacks", f"unknown attack {kind!r}; valid: {', '.join(ATTACKS)}")
        _require(len(set(self.attacks)) == len(self.attacks), "attacks", f"lists an attack twice: {self.attacks}")
        _require(bool(self.attacks) or self.n_benign_clients > 0, "attacks",
                 "is empty and n_benign_clients is 0: nothing to synthesise (need >= 1 source)")
        for kind, units in self.sizes:
            _require(kind in self.attacks, "sizes", f"{kind!r} is not among attacks {self.attacks}")
            top = ATTACKS[kind].max_units
            _require(_is_int(units) and 1 <= units <= top, "sizes",
                     f"{kind} must be an int in [1, {top}] ({ATTACKS[kind].unit}), got {units!r}")
        _require(len({k for k, _ in self.sizes}) == len(self.sizes), "sizes", "names an attack twice")

    def _validate_addresses(self) -> None:
        server = _ipv4("server", self.server)
        base = _ipv4("client_base", self.client_base)
        _require(int(base) + self.n_benign_clients <= 0xFFFFFFFF, "client_base",
                 f"{base} + {self.n_benign_clients} clients runs past 255.255.255.255")
        if self.attackers:
            _require(len(self.attackers) == len(self.attacks), "attackers",
                     f"must give one address per attack ({len(self.attacks)}), got {len(self.attackers)}")
        attackers = [_ipv4("attackers", a) for a in self.attacker_addresses()]
        clients = {int(base) + i for i in range(self.n_benign_clients)}
        everyone = [int(server), *clients, *(int(a) for a in attackers)]
        _require(len(set(everyone)) == len(everyone), "attackers",
                 "server, benign clients and attackers must all have different addresses")

    def attacker_addresses(self) -> tuple[str, ...]:
        if self.attackers:
            return self.attackers
        return tuple(f"10.200.0.{101 + i}" for i in range(len(self.attacks)))

    def client_addresses(self) -> tuple[str, ...]:
        base = int(ipaddress.IPv4Address(self.client_base))
        return tuple(str(ipaddress.IPv4Address(base + i)) for i in range(self.n_benign_clients))

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> SynthConfig:
        """Build from a plain mapping (e.g. parsed JSON), rejecting unknown keys."""
        return config_from_mapping(cls, values)  # type: ignore[return-value]


@dataclass(frozen=True)
class SynthResult:
    pcap: Path
    labels: Path
    packets: int
    bytes: int  # frame bytes written (pcap record payloads)
    packets_by_label: dict[str, int]  # packets of each label's conversations (both directions)
    flows_expected: dict[str, int]  # bidirectional flows per label under nfstream 120 s idle/active timeouts
    units: dict[str, int]  # per attack: units sent (see ATTACKS[kind].unit)
    seconds: float  # wall-clock time synthesize() took

    def summary(self) -> str:
        flows = ", ".join(f"{k} {v}" for k, v in sorted(self.flows_expected.items()))
        return (f"{self.pcap}: {self.packets} packets, {self.bytes} bytes, expected flows: {flows}; "
                f"labels {self.labels}; {self.seconds:.2f} s")


@dataclass(frozen=True)
class _Source:
    label: str
    host: Host
    sessions: Iterator[Session]


def _plan(config: SynthConfig) -> tuple[list[_Source], dict[str, int]]:
    """Sources in label-row order (attacks by time, then benign clients) and the units of each attack."""
    t0 = round(config.start_epoch * 1_000_000)
    dur = round(config.duration_s * 1_000_000)
    server = Host(config.server, 64, random.Random(f"{config.seed}/server").getrandbits(16))
    attack_budget = config.packets * (1.0 - config.benign_share if config.n_benign_clients else 1.0)
    weights = sum(ATTACKS[k].weight for k in config.attacks)
    overrides = dict(config.sizes)
    sources: list[_Source] = []
    units: dict[str, int] = {}
    slot = 0.8 * dur / max(1, len(config.attacks))
    for j, (kind, addr) in enumerate(zip(config.attacks, config.attacker_addresses(), strict=True)):
        spec = ATTACKS[kind]
        rng = random.Random(f"{config.seed}/attack/{kind}")
        n = overrides.get(kind) or max(1, round(attack_budget * spec.weight / weights / spec.packets_per_unit))
        units[kind] = n = min(n, spec.max_units)
        natural = 1e6 * (n / spec.rate if spec.rate else spec.natural_s)
        length = int(max(1000.0, min(natural, 0.7 * slot)))
        w0 = t0 + int(0.1 * dur + j * slot + rng.uniform(0.05, 0.95) * (slot - length))
        host = Host(addr, 64, rng.getrandbits(16))
        sources.append(_Source(kind, host, attack(kind, rng, host, server, w0, w0 + length, n)))
    if config.n_benign_clients:
        share = config.benign_share if config.attacks else 1.0
        budget = max(1, round(config.packets * share / config.n_benign_clients))
        for i, addr in enumerate(config.client_addresses()):
            rng = random.Random(f"{config.seed}/benign/{i}")
            host = Host(addr, 64, rng.getrandbits(16))
            start = t0 + rng.randint(0, 500_000)
            last_start = t0 + dur - min(6_000_000, dur // 5)  # room for the last session to finish
            sources.append(_Source(BENIGN_LABEL, host, benign_client(rng, host, server, start, last_start,
                                                                     t0 + dur - 1_000_000, budget)))
    return sources, units


def _tagged(index: int, sessions: Iterator[Session]) -> Iterator[tuple[int, int, FlowKey, list]]:
    for start, key, packets in sessions:
        yield start, index, key, packets


def _merged(sources: list[_Source]) -> Iterator[tuple[int, bytes, FlowKey, int]]:
    """All packets of all sources in time order: ``(t_us, frame, flow key, source index)``.

    Sessions arrive in start order; a session joins the heap of sessions in progress when the clock
    reaches its start, so memory holds only the sessions currently in progress."""
    pending = heapq.merge(*(_tagged(i, s.sessions) for i, s in enumerate(sources)), key=lambda x: x[0])
    heap: list = []
    order = 0
    nxt = next(pending, None)
    while heap or nxt is not None:
        while nxt is not None and (not heap or nxt[0] <= heap[0][0]):
            _, index, key, packets = nxt
            it = iter(packets)
            t, frame = next(it)
            heapq.heappush(heap, (t, order, frame, key, index, it))
            order += 1
            nxt = next(pending, None)
        t, _, frame, key, index, it = heapq.heappop(heap)
        yield t, frame, key, index
        following = next(it, None)
        if following is not None:
            heapq.heappush(heap, (following[0], order, following[1], key, index, it))
            order += 1


def _epoch(t_us: int) -> str:
    return f"{t_us // 1_000_000}.{t_us % 1_000_000:06d}"


def _write_pcap(sources: list[_Source], fh: BinaryIO) -> tuple[int, int, list[list[int]], list[int]]:
    """Stream every packet to ``fh``; returns packets, bytes, per-source [first, last, packets], flows."""
    writer = PcapWriter(fh)
    spans = [[-1, -1, 0] for _ in sources]
    flows = [0] * len(sources)
    state: dict[FlowKey, list[int]] = {}
    idle, active = IDLE_TIMEOUT_S * 1000, ACTIVE_TIMEOUT_S * 1000
    n_packets = n_bytes = 0
    for t, frame, key, index in _merged(sources):
        writer.write(t, frame)
        n_packets += 1
        n_bytes += len(frame)
        span = spans[index]
        if span[0] < 0:
            span[0] = t
        span[1] = t
        span[2] += 1
        ms = t // 1000
        seen = state.get(key)
        if seen is None or ms - seen[1] >= idle or ms - seen[0] >= active:
            state[key] = [ms, ms]
            flows[index] += 1
        else:
            seen[1] = ms
    return n_packets, n_bytes, spans, flows


def _temp_for(path: Path, temps: list[Path]) -> Path:
    """A fresh hidden sibling of ``path`` (same file system, so ``os.replace`` is atomic; umask applies),
    recorded in ``temps`` for clean-up."""
    if not path.parent.is_dir():
        raise BadInputError(path, "output directory does not exist")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.open("xb").close()
    temps.append(tmp)
    return tmp


def synthesize(config: SynthConfig, out_pcap: Path, out_labels: Path) -> SynthResult:
    """Write the capture and its labels (each via a temp file then ``os.replace``: never a partial file)."""
    began = time.perf_counter()
    out_pcap, out_labels = Path(out_pcap), Path(out_labels)
    if out_pcap.resolve() == out_labels.resolve():
        raise BadInputError(out_labels, "labels path is the same as the pcap path")
    sources, units = _plan(config)
    temps: list[Path] = []
    try:
        tmp_pcap = _temp_for(out_pcap, temps)
        tmp_labels = _temp_for(out_labels, temps)
        with tmp_pcap.open("wb") as fh:
            n_packets, n_bytes, spans, flows = _write_pcap(sources, fh)
        rows = ["src_ip,dst_ip,label,start_epoch,end_epoch,tool,exit_code"]
        rows += [f"{s.host.addr},{config.server},{s.label},{_epoch(first)},{_epoch(last)},{TOOL},0"
                 for s, (first, last, _) in zip(sources, spans, strict=True)]
        tmp_labels.write_text("\n".join(rows) + "\n", encoding="utf-8")
        os.replace(tmp_pcap, out_pcap)
        os.replace(tmp_labels, out_labels)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
    by_label: dict[str, int] = {}
    flows_by_label: dict[str, int] = {}
    for source, (_, _, count), n_flows in zip(sources, spans, flows, strict=True):
        by_label[source.label] = by_label.get(source.label, 0) + count
        flows_by_label[source.label] = flows_by_label.get(source.label, 0) + n_flows
    return SynthResult(out_pcap, out_labels, n_packets, n_bytes, by_label, flows_by_label, units,
                       time.perf_counter() - began)
