"""What each synthetic source sends over time: a benign client's mix of web, DNS and ping sessions spread
over the whole capture, and each attack's units paced across its window. Each planner yields sessions in
start order, built lazily, so only the sessions currently in progress are ever in memory.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from flowhawk.extractors.synth_packets import Host, TcpConn
from flowhawk.extractors.synth_sessions import (
    Session,
    dns_session,
    http_flood_packets,
    http_flood_session,
    http_packets,
    http_session,
    icmp_flood_unit,
    ping_session,
    scan_probe,
    slowloris_conn,
    syn_flood_unit,
    udp_flood_unit,
)

BENIGN_LABEL = "BENIGN"
HTTP_FLOOD_PAGE = 8000  # bytes of the page ApacheBench hammers
SLOWLORIS_KEEPALIVES = 5  # header lines each held connection trickles in over the window
OPEN_PORTS = frozenset({22, 53, 80})  # what the scanned server answers SYN-ACK on
UDP_FLOOD_PORT, UDP_FLOOD_PAYLOAD = 53, b"X" * 120  # hping3 --udp -p 53 -d 120
AGENTS = ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
          "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
          "curl/8.5.0", "Wget/1.21.4", "python-requests/2.32.3")
PATHS = ("/", "/index.html", "/static/app.js", "/static/style.css", "/img/logo.png", "/api/items",
         "/docs/report.pdf", "/news", "/search", "/downloads/data.csv")
NAMES = ("www.example.com", "intranet.lab.internal", "mail.example.org", "updates.example.net",
         "cdn.example.com", "api.example.com", "time.example.org", "files.lab.internal")


@dataclass(frozen=True)
class AttackSpec:
    """How one attack kind is sized and paced."""

    weight: float  # share of the attack packet budget
    packets_per_unit: float  # packets one unit puts on the wire (for budgeting)
    rate: float  # units per second at the tool's pace (0: the window length is ``natural_s``)
    natural_s: float  # window length when ``rate`` is 0
    unit: str  # what one unit is
    max_units: int


ATTACKS: dict[str, AttackSpec] = {
    "portscan": AttackSpec(0.10, 2.0, 2000.0, 0.0, "ports probed (nmap -sS)", 65535),
    "synflood": AttackSpec(0.15, 3.0, 2000.0, 0.0, "SYNs (hping3 -S)", 10_000_000),
    "udpflood": AttackSpec(0.12, 1.0, 2000.0, 0.0, "datagrams (hping3 --udp)", 10_000_000),
    "httpflood": AttackSpec(0.15, float(http_flood_packets(HTTP_FLOOD_PAGE)), 400.0, 0.0,
                            "requests (ApacheBench)", 10_000_000),
    "slowloris": AttackSpec(0.08, 6.0 + 2 * SLOWLORIS_KEEPALIVES, 0.0, 30.0, "held connections", 50_000),
    "icmpflood": AttackSpec(0.10, 2.0, 2000.0, 0.0, "echo requests (hping3 --icmp)", 10_000_000),
}


def benign_client(rng: random.Random, client: Host, server: Host, t0: int, t1: int, t_end: int,
                  budget: int) -> Iterator[Session]:
    """Web sessions (1-3 keep-alive GETs of 200 B-64 KB), DNS lookups and short pings starting at random
    times in [t0, t1] (sessions end before ``t_end``) until about ``budget`` packets are planned."""
    rtt = int(math.exp(rng.uniform(math.log(300), math.log(40_000))))  # LAN to far WAN, per client
    agent = rng.choice(AGENTS)
    plan: list[tuple[str, object]] = []
    total = 0
    while total < budget:
        roll = rng.random()
        if roll < 0.55:
            reqs = [(rng.choice(PATHS), int(math.exp(rng.uniform(math.log(200), math.log(65536)))))
                    for _ in range(rng.choice((1, 1, 1, 2, 3)))]
            plan.append(("http", reqs))
            total += http_packets([size for _, size in reqs])
        elif roll < 0.9:
            plan.append(("dns", (rng.choice(NAMES), 28 if rng.random() < 0.25 else 1)))
            total += 2
        else:
            count = rng.randint(1, 4)
            plan.append(("ping", count))
            total += 2 * count
    starts = sorted(rng.randint(t0, t1) for _ in plan)
    starts[0] = t0  # the client is active from the start of the capture ...
    if len(starts) > 1:
        starts[-1] = t1  # ... to its end
    cport = rng.randint(32768, 60999)
    for start, (kind, params) in zip(starts, plan, strict=True):
        if kind == "http":
            cport = 32768 + (cport - 32768 + 1) % 28232
            conn = TcpConn(client, server, cport, 80, rng.getrandbits(32), rng.getrandbits(32))
            yield http_session(conn, start, rng, rtt, params, agent)  # type: ignore[arg-type]
        elif kind == "dns":
            qname, qtype = params  # type: ignore[misc]
            yield dns_session(client, server, rng.randint(32768, 60999), start, rng, qname, qtype)
        else:  # one echo a second: no more than fit before the end of the capture
            count = max(1, min(params, (t_end - start) // 1_000_000))  # type: ignore[call-overload]
            yield ping_session(client, server, start, rng, count)


def _paced(rng: random.Random, w0: int, w1: int, n: int) -> Iterator[int]:
    """``n`` nondecreasing times evenly spread over [w0, w1) with jitter (a flood's steady pace)."""
    step = (w1 - w0) / n
    for i in range(n):
        yield w0 + int(step * (i + rng.random() * 0.5))


def _next_port(base: int, i: int, low: int = 1024, high: int = 65535) -> int:
    return low + (base - low + i) % (high - low + 1)


def attack(kind: str, rng: random.Random, attacker: Host, server: Host, w0: int, w1: int,
           units: int) -> Iterator[Session]:
    """The sessions of one attack with ``units`` units in the window [w0, w1)."""
    if kind == "portscan":
        ports = list(range(1, units + 1))
        rng.shuffle(ports)
        sport = rng.randint(40000, 65000)
        for t, port in zip(_paced(rng, w0, w1, units), ports, strict=True):
            conn = TcpConn(attacker, server, sport, port, rng.getrandbits(32), rng.getrandbits(32))
            yield scan_probe(conn, t, rng, port in OPEN_PORTS)
    elif kind == "synflood":
        base = rng.randint(1024, 65535)
        for i, t in enumerate(_paced(rng, w0, w1, units)):
            conn = TcpConn(attacker, server, _next_port(base, i), 80, rng.getrandbits(32), rng.getrandbits(32))
            yield syn_flood_unit(conn, t, rng)
    elif kind == "udpflood":
        base = rng.randint(1024, 65535)
        for i, t in enumerate(_paced(rng, w0, w1, units)):
            yield udp_flood_unit(attacker, server, _next_port(base, i), UDP_FLOOD_PORT, t, UDP_FLOOD_PAYLOAD)
    elif kind == "icmpflood":
        ident = rng.getrandbits(16)
        for i, t in enumerate(_paced(rng, w0, w1, units)):
            yield icmp_flood_unit(attacker, server, ident, i, t, rng)
    elif kind == "httpflood":
        yield from _http_flood(rng, attacker, server, w0, w1, units)
    elif kind == "slowloris":
        yield from _slowloris(rng, attacker, server, w0, w1, units)
    else:
        raise ValueError(f"unknown attack kind {kind!r}; known: {', '.join(ATTACKS)}")


def _http_flood(rng: random.Random, attacker: Host, server: Host, w0: int, w1: int,
                units: int) -> Iterator[Session]:
    rtt, base = rng.randint(150, 600), rng.randint(32768, 60999)
    for i, t in enumerate(sorted(rng.randint(w0, w1) for _ in range(units))):
        conn = TcpConn(attacker, server, _next_port(base, i, 32768, 60999), 80, rng.getrandbits(32),
                       rng.getrandbits(32))
        yield http_flood_session(conn, t, rng, rtt, HTTP_FLOOD_PAGE)


def _slowloris(rng: random.Random, attacker: Host, server: Host, w0: int, w1: int,
               units: int) -> Iterator[Session]:
    """All sockets opened at the start of the window, a header line on each every window/6, reset at w1."""
    rtt, base = rng.randint(300, 3000), rng.randint(32768, 60999)
    interval = (w1 - w0) // (SLOWLORIS_KEEPALIVES + 1)
    keepalives = [w0 + k * interval for k in range(1, SLOWLORIS_KEEPALIVES + 1)]
    open_until = w0 + min(2_000_000, interval // 2)
    for i, t in enumerate(_paced(rng, w0, open_until, units)):
        conn = TcpConn(attacker, server, _next_port(base, i, 32768, 60999), 80, rng.getrandbits(32),
                       rng.getrandbits(32))
        yield slowloris_conn(conn, t, rng, rtt, keepalives, w1)
