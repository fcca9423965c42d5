"""Wire bytes for the capture synthesiser: Ethernet/IPv4 frames carrying TCP, UDP or ICMP with valid checksums,
DNS messages built by scapy once per name and patched per query, and a streaming classic-pcap writer.

Headers are packed with ``struct``: building a frame this way is ~270x faster than scapy's
``bytes(Ether()/IP()/TCP()/Raw())`` (benchmarks/bench_synth.py), so the synthesiser writes over ten thousand
packets per second. Checksums use the identity that the one's
complement sum of 16-bit words is the big integer of the bytes modulo 0xFFFF, which Python computes in C.
"""

from __future__ import annotations

import hashlib
import struct
from functools import lru_cache
from typing import BinaryIO

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
TCP, UDP, ICMP = 6, 17, 1
ETHERTYPE_IPV4 = b"\x08\x00"
# Linux-style SYN options: MSS 1460, NOP, NOP, SACK permitted, NOP, window scale 7 (a 32-byte TCP header).
SYN_OPTIONS = bytes.fromhex("020405b4" "01010402" "01030307")
NMAP_SYN_OPTIONS = bytes.fromhex("020405b4")  # nmap -sS probes carry MSS 1460 only
FlowKey = tuple[int, bytes, int, bytes, int]


def checksum(data: bytes) -> int:
    """Internet checksum (RFC 1071) of ``data``."""
    if len(data) & 1:
        data += b"\x00"
    total = int.from_bytes(data, "big")
    folded = total % 0xFFFF
    if folded == 0 and total:
        folded = 0xFFFF
    return ~folded & 0xFFFF


def flow_key(proto: int, a: bytes, a_port: int, b: bytes, b_port: int) -> FlowKey:
    """Direction-agnostic 5-tuple (ports 0 for ICMP, as nfstream keys it)."""
    if (a, a_port) <= (b, b_port):
        return (proto, a, a_port, b, b_port)
    return (proto, b, b_port, a, a_port)


class Host:
    """One IPv4 address on the wire: its MAC (derived from the address), TTL and IP-ID counter."""

    __slots__ = ("addr", "ip", "ip_id", "mac", "ttl")

    def __init__(self, addr: str, ttl: int = 64, ip_id: int = 0) -> None:
        self.addr = addr
        self.ip = bytes(int(part) for part in addr.split("."))
        self.mac = b"\x02\x00" + self.ip  # locally administered, unique per address
        self.ttl = ttl
        self.ip_id = ip_id & 0xFFFF

    def next_id(self) -> int:
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        return self.ip_id


def ipv4_frame(src: Host, dst: Host, proto: int, l4: bytes, ttl: int | None = None) -> bytes:
    """Ethernet + IPv4 (DF set, header checksum filled) around an already-checksummed L4 segment."""
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), src.next_id(), 0x4000,
                         src.ttl if ttl is None else ttl, proto, 0, src.ip, dst.ip)
    header = header[:10] + checksum(header).to_bytes(2, "big") + header[12:]
    return dst.mac + src.mac + ETHERTYPE_IPV4 + header + l4


def _pseudo(src: Host, dst: Host, proto: int, length: int) -> bytes:
    return src.ip + dst.ip + struct.pack("!BBH", 0, proto, length)


def tcp_frame(src: Host, dst: Host, sport: int, dport: int, seq: int, ack: int, flags: int, window: int,
              payload: bytes = b"", options: bytes = b"", ttl: int | None = None) -> bytes:
    header = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                         ((20 + len(options)) // 4) << 4, flags, window, 0, 0) + options
    segment = header + payload
    csum = checksum(_pseudo(src, dst, TCP, len(segment)) + segment)
    segment = segment[:16] + csum.to_bytes(2, "big") + segment[18:]
    return ipv4_frame(src, dst, TCP, segment, ttl)


def udp_frame(src: Host, dst: Host, sport: int, dport: int, payload: bytes) -> bytes:
    datagram = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    csum = checksum(_pseudo(src, dst, UDP, len(datagram)) + datagram) or 0xFFFF  # 0 means "no checksum"
    return ipv4_frame(src, dst, UDP, datagram[:6] + csum.to_bytes(2, "big") + datagram[8:])


def icmp_echo_frame(src: Host, dst: Host, icmp_type: int, ident: int, seq: int, payload: bytes) -> bytes:
    """ICMP echo request (type 8) or reply (type 0)."""
    message = struct.pack("!BBHHH", icmp_type, 0, 0, ident, seq) + payload
    message = message[:2] + checksum(message).to_bytes(2, "big") + message[4:]
    return ipv4_frame(src, dst, ICMP, message)


class TcpConn:
    """Sequence-number state of one TCP connection between a client and the server."""

    __slots__ = ("client", "cport", "cseq", "key", "server", "sport", "sseq")

    def __init__(self, client: Host, server: Host, cport: int, sport: int, cisn: int, sisn: int) -> None:
        self.client, self.server, self.cport, self.sport = client, server, cport, sport
        self.cseq, self.sseq = cisn, sisn
        self.key = flow_key(TCP, client.ip, cport, server.ip, sport)

    def c2s(self, flags: int, payload: bytes = b"", window: int = 502, options: bytes = b"",
            ttl: int | None = None) -> bytes:
        """Client-to-server segment acknowledging everything the server has sent so far."""
        frame = tcp_frame(self.client, self.server, self.cport, self.sport, self.cseq,
                          self.sseq if flags & ACK else 0, flags, window, payload, options, ttl)
        self.cseq += len(payload) + (1 if flags & (SYN | FIN) else 0)
        return frame

    def s2c(self, flags: int, payload: bytes = b"", window: int = 509, options: bytes = b"") -> bytes:
        frame = tcp_frame(self.server, self.client, self.sport, self.cport, self.sseq,
                          self.cseq if flags & ACK else 0, flags, window, payload, options)
        self.sseq += len(payload) + (1 if flags & (SYN | FIN) else 0)
        return frame


@lru_cache(maxsize=256)
def dns_templates(qname: str, qtype: int) -> tuple[bytes, bytes]:
    """(query, answer) DNS messages for ``qname`` built with scapy, transaction id 0 (patch bytes 0-1).

    The answer's address is derived from a hash of the name, so the same name always resolves the same way.
    """
    from scapy.layers.dns import DNS, DNSQR, DNSRR  # imported here: scapy's import costs ~0.4 s

    digest = hashlib.sha256(qname.encode()).digest()
    rdata = "2001:db8::" + digest[:2].hex() if qtype == 28 else f"198.51.100.{1 + digest[0] % 254}"
    query = DNS(id=0, rd=1, qd=DNSQR(qname=qname, qtype=qtype))
    answer = DNS(id=0, qr=1, aa=0, rd=1, ra=1, qd=DNSQR(qname=qname, qtype=qtype),
                 an=DNSRR(rrname=qname, type=qtype, ttl=300 + digest[1] * 10, rdata=rdata))
    return bytes(query), bytes(answer)


def with_dns_id(message: bytes, ident: int) -> bytes:
    return ident.to_bytes(2, "big") + message[2:]


class PcapWriter:
    """Classic little-endian microsecond pcap (linktype Ethernet), records written as they come."""

    def __init__(self, fh: BinaryIO, snaplen: int = 65535) -> None:
        self._fh = fh
        self._last_us = -1
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1))

    def write(self, ts_us: int, frame: bytes) -> None:
        if ts_us < self._last_us:
            raise ValueError(f"pcap timestamps must not decrease: {ts_us} after {self._last_us}")
        self._last_us = ts_us
        sec, usec = divmod(ts_us, 1_000_000)
        self._fh.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)))
        self._fh.write(frame)
