"""One conversation at a time for the capture synthesiser: TCP/HTTP sessions, DNS exchanges, pings and the
attack units (a flood packet, a scan probe, a slowloris connection), as time-sorted packet lists.

Times are integer microseconds seen at the server (the capture point): the server answers after a short
processing delay ``sd``, the client's next packet arrives one round trip ``rtt`` after the server's.
A session is ``(start_us, flow_key, [(t_us, frame), ...])`` with the packets sorted by time.
"""

from __future__ import annotations

import random
from operator import itemgetter

from flowhawk.extractors.synth_packets import (
    ACK,
    FIN,
    ICMP,
    NMAP_SYN_OPTIONS,
    PSH,
    RST,
    SYN,
    SYN_OPTIONS,
    UDP,
    FlowKey,
    Host,
    TcpConn,
    dns_templates,
    flow_key,
    icmp_echo_frame,
    udp_frame,
    with_dns_id,
)

Packets = list[tuple[int, bytes]]
Session = tuple[int, FlowKey, Packets]
MSS = 1448
HTTP_HEADER_LEN = 130  # approximate length of the response headers below, for packet-count estimates


def _filler(size: int) -> bytes:
    """Deterministic HTML-like body text (the same for every run: content is not what the seed varies)."""
    rng = random.Random("flowhawk-synth-body")
    words = ("flow", "packet", "report", "server", "client", "window", "status", "record", "table", "index")
    parts, total = [], 0
    while total < size:
        line = f"<li id=\"r{total}\">{' '.join(rng.choices(words, k=6))} {rng.getrandbits(32):08x}</li>\n"
        parts.append(line)
        total += len(line)
    return "".join(parts).encode()[:size]


BODY = _filler(1 << 18)


def _done(key: FlowKey, out: Packets) -> Session:
    out.sort(key=itemgetter(0))  # stable: packets built at the same microsecond keep their causal order
    return out[0][0], key, out


def http_response(body_len: int, version: str = "1.1") -> bytes:
    head = (f"HTTP/{version} 200 OK\r\nServer: nginx/1.24.0\r\nContent-Type: text/html\r\n"
            f"Content-Length: {body_len}\r\nConnection: {'keep-alive' if version == '1.1' else 'close'}\r\n\r\n")
    return head.encode() + BODY[:body_len]


def http_get(path: str, host: str, agent: str, version: str = "1.1") -> bytes:
    return (f"GET {path} HTTP/{version}\r\nHost: {host}\r\nUser-Agent: {agent}\r\nAccept: */*\r\n"
            f"{'Connection: keep-alive' + chr(13) + chr(10) if version == '1.1' else ''}\r\n").encode()


def segments(n_bytes: int) -> int:
    return max(1, -(-n_bytes // MSS))


def handshake(conn: TcpConn, out: Packets, t: int, rtt: int, sd: int, options: bytes = SYN_OPTIONS) -> int:
    out.append((t, conn.c2s(SYN, window=64240, options=options)))
    out.append((t + sd, conn.s2c(SYN | ACK, window=65160, options=SYN_OPTIONS)))
    t += sd + rtt
    out.append((t, conn.c2s(ACK)))
    return t


def server_send(conn: TcpConn, out: Packets, t: int, data: bytes, rtt: int) -> int:
    """Server data in slow-start bursts (10, 20, 40 ... segments at ~100 Mbit/s), the client acking every
    second segment one round trip later. Returns the time of the last client ACK."""
    chunks = [data[i:i + MSS] for i in range(0, len(data), MSS)]
    cwnd, i, last_ack = 10, 0, t
    while i < len(chunks):
        burst = chunks[i:i + cwnd]
        for j, chunk in enumerate(burst):
            final = i + j == len(chunks) - 1
            out.append((t, conn.s2c(ACK | (PSH if final or j == len(burst) - 1 else 0), chunk)))
            if (i + j) % 2 == 1 or final:
                last_ack = t + rtt
                out.append((last_ack, conn.c2s(ACK)))
            t += 1 + len(chunk) // 12
        i += len(burst)
        cwnd *= 2
        t = max(t, last_ack + 5)
    return last_ack


def client_close(conn: TcpConn, out: Packets, t: int, rtt: int, sd: int) -> int:
    out.append((t, conn.c2s(FIN | ACK)))
    out.append((t + sd, conn.s2c(FIN | ACK)))
    t += sd + rtt
    out.append((t, conn.c2s(ACK)))
    return t


def http_session(conn: TcpConn, t: int, rng: random.Random, rtt: int, requests: list[tuple[str, int]],
                 agent: str) -> Session:
    """A benign browser-like connection: handshake, one or more keep-alive GETs, client FIN."""
    out: Packets = []
    sd = rng.randint(20, 120)
    t = handshake(conn, out, t, rtt, sd)
    host = conn.server.addr
    for path, size in requests:
        t += rng.randint(30, 400)
        out.append((t, conn.c2s(PSH | ACK, http_get(path, host, agent))))
        t += rng.randint(150, 3000) + size // 40  # server think time grows with the object
        t = server_send(conn, out, t, http_response(size), rtt) + rng.randint(200, 40_000)
    client_close(conn, out, t, rtt, sd)
    return _done(conn.key, out)


def http_packets(sizes: list[int]) -> int:
    """Packets ``http_session`` writes for responses of these body sizes (handshake 3, close 3)."""
    total = 6
    for size in sizes:
        n = segments(size + HTTP_HEADER_LEN)
        total += 1 + n + -(-n // 2)
    return total


def dns_session(client: Host, server: Host, cport: int, t: int, rng: random.Random, qname: str,
                qtype: int) -> Session:
    query, answer = dns_templates(qname, qtype)
    ident = rng.getrandbits(16)
    delay = rng.randint(150, 2500) if rng.random() < 0.85 else rng.randint(15_000, 120_000)  # cached / recursed
    out = [(t, udp_frame(client, server, cport, 53, with_dns_id(query, ident))),
           (t + delay, udp_frame(server, client, 53, cport, with_dns_id(answer, ident)))]
    return t, flow_key(UDP, client.ip, cport, server.ip, 53), out


def ping_payload(t: int) -> bytes:
    """Linux ping's 56 data bytes: a 16-byte timeval then the 0x10.. pattern."""
    sec, usec = divmod(t, 1_000_000)
    return sec.to_bytes(8, "little") + usec.to_bytes(8, "little") + bytes(range(0x10, 0x38))


def ping_session(client: Host, server: Host, t: int, rng: random.Random, count: int) -> Session:
    ident, out = rng.getrandbits(16), []
    for seq in range(1, count + 1):
        payload = ping_payload(t)
        out.append((t, icmp_echo_frame(client, server, 8, ident, seq, payload)))
        out.append((t + rng.randint(30, 150), icmp_echo_frame(server, client, 0, ident, seq, payload)))
        t += 1_000_000 + rng.randint(0, 2000)
    return out[0][0], flow_key(ICMP, client.ip, 0, server.ip, 0), out


# --- attack units ---------------------------------------------------------------------------------------

def syn_flood_unit(conn: TcpConn, t: int, rng: random.Random) -> Session:
    """hping3 -S: a bare SYN; the server's SYN-ACK is answered by the attacker kernel's RST."""
    sd = rng.randint(15, 80)
    out = [(t, conn.c2s(SYN, window=512)), (t + sd, conn.s2c(SYN | ACK, window=65160, options=SYN_OPTIONS))]
    out.append((t + sd + rng.randint(10, 60), conn.c2s(RST, window=0)))
    return _done(conn.key, out)


def scan_probe(conn: TcpConn, t: int, rng: random.Random, is_open: bool) -> Session:
    """nmap -sS: SYN; a closed port answers RST-ACK, an open one SYN-ACK which the scanner resets."""
    sd = rng.randint(15, 80)
    out = [(t, conn.c2s(SYN, window=1024, options=NMAP_SYN_OPTIONS))]
    if is_open:
        out.append((t + sd, conn.s2c(SYN | ACK, window=65160, options=SYN_OPTIONS)))
        out.append((t + sd + rng.randint(10, 60), conn.c2s(RST, window=0)))
    else:
        out.append((t + sd, conn.s2c(RST | ACK, window=0)))
    return _done(conn.key, out)


def udp_flood_unit(attacker: Host, server: Host, sport: int, dport: int, t: int, payload: bytes) -> Session:
    """hping3 --udp: one datagram per source port, no answer (the server drops it)."""
    return t, flow_key(UDP, attacker.ip, sport, server.ip, dport), [
        (t, udp_frame(attacker, server, sport, dport, payload))]


def icmp_flood_unit(attacker: Host, server: Host, ident: int, seq: int, t: int, rng: random.Random) -> Session:
    payload = bytes(56)
    return t, flow_key(ICMP, attacker.ip, 0, server.ip, 0), [
        (t, icmp_echo_frame(attacker, server, 8, ident, seq & 0xFFFF, payload)),
        (t + rng.randint(10, 60), icmp_echo_frame(server, attacker, 0, ident, seq & 0xFFFF, payload))]


def http_flood_session(conn: TcpConn, t: int, rng: random.Random, rtt: int, page: int) -> Session:
    """ApacheBench: handshake, HTTP/1.0 GET /, the whole page, server closes, client closes."""
    out: Packets = []
    sd = rng.randint(20, 100)
    t = handshake(conn, out, t, rtt, sd) + rng.randint(5, 50)
    out.append((t, conn.c2s(PSH | ACK, http_get("/", conn.server.addr, "ApacheBench/2.3", "1.0"))))
    out.append((t + sd, conn.s2c(ACK)))
    t = server_send(conn, out, t + sd + rng.randint(100, 600), http_response(page, "1.0"), rtt)
    out.append((t + sd, conn.s2c(FIN | ACK)))
    t += sd + rtt
    out.append((t, conn.c2s(FIN | ACK)))
    out.append((t + sd, conn.s2c(ACK)))
    return _done(conn.key, out)


def http_flood_packets(page: int) -> int:
    n = segments(page + HTTP_HEADER_LEN)
    return 3 + 2 + n + -(-n // 2) + 3


def slowloris_conn(conn: TcpConn, t: int, rng: random.Random, rtt: int, keepalives: list[int],
                   end: int) -> Session:
    """slowloris: a partial request, one more header line at each keep-alive time, never the blank line;
    the connection is reset when the attack stops at ``end``."""
    out: Packets = []
    sd = rng.randint(20, 100)
    t = handshake(conn, out, t, rtt, sd) + rng.randint(20, 200)
    partial = (f"GET /?{rng.randint(0, 2000)} HTTP/1.1\r\nUser-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; "
               f"x64)\r\nAccept-language: en-US,en,q=0.5\r\n").encode()
    out.append((t, conn.c2s(PSH | ACK, partial)))
    out.append((t + sd, conn.s2c(ACK)))
    for when in keepalives:
        when = max(when, t + sd + 1) + rng.randint(0, 20_000)
        out.append((when, conn.c2s(PSH | ACK, f"X-a: {rng.randint(1, 5000)}\r\n".encode())))
        out.append((when + sd, conn.s2c(ACK)))
        t = when + sd
    out.append((max(end + rng.randint(0, 3000), t + 1), conn.c2s(RST, window=0)))
    return _done(conn.key, out)
