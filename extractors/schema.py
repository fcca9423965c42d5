"""The canonical flow table: the data contract every flowhawk stage imports.

Column names follow nProbe / the NF-* datasets (Sarhan et al.), so a flow from a pcap, a Zeek conn.log or an
NF dataset CSV lands in the same columns. Each column is declared once here with its Arrow type, unit and
meaning; ``conform`` turns any extractor's pandas frame into a table of exactly this schema, filling what a
source cannot derive with nulls (never zeros that would look like measurements).

Addresses: ``IPV4_SRC_ADDR`` / ``IPV4_DST_ADDR`` keep their NF names for compatibility but hold the address
text of either family; ``IP_VERSION`` says which (IPv6 flows are kept, not dropped).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

from flowhawk.extractors.community_id import community_ids

SCHEMA_VERSION = 2  # 2: community_id added (flows of version 1 read with it null, filled by ``conform``)
READABLE_SCHEMA_VERSIONS: tuple[int, ...] = (1, 2)  # lake batches / models this code can still read


@dataclass(frozen=True)
class Column:
    """One column of the flow table."""

    name: str
    type: pa.DataType
    unit: str
    doc: str
    group: str  # "nf-v1", "nf-v2", "nf-v3", "extra", "label", "provenance"


_I64, _I32, _I16, _I8, _F64, _STR = pa.int64(), pa.int32(), pa.int16(), pa.int8(), pa.float64(), pa.string()

COLUMNS: tuple[Column, ...] = (
    # --- NF-v1 (the 12 features of NF-BoT-IoT v1) ---
    Column("IPV4_SRC_ADDR", _STR, "address", "Source (client) address; IPv4 or IPv6 text", "nf-v1"),
    Column("L4_SRC_PORT", _I32, "port", "Source transport port (0 when the protocol has none)", "nf-v1"),
    Column("IPV4_DST_ADDR", _STR, "address", "Destination (server) address; IPv4 or IPv6 text", "nf-v1"),
    Column("L4_DST_PORT", _I32, "port", "Destination transport port (0 when the protocol has none)", "nf-v1"),
    Column("PROTOCOL", _I16, "IANA number", "IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6)", "nf-v1"),
    Column("L7_PROTO", _F64, "nDPI id", "nDPI protocol as master.app (e.g. 91.126 = TLS.Google); null if unknown",
           "nf-v1"),
    Column("IN_BYTES", _I64, "bytes", "Bytes source to destination, IP level (headers included)", "nf-v1"),
    Column("OUT_BYTES", _I64, "bytes", "Bytes destination to source, IP level", "nf-v1"),
    Column("IN_PKTS", _I64, "packets", "Packets source to destination", "nf-v1"),
    Column("OUT_PKTS", _I64, "packets", "Packets destination to source", "nf-v1"),
    Column("TCP_FLAGS", _I32, "bitmask", "OR of TCP flags seen in both directions (FIN=1 SYN=2 RST=4 PSH=8 "
           "ACK=16 URG=32 ECE=64 CWR=128)", "nf-v1"),
    Column("FLOW_DURATION_MILLISECONDS", _I64, "ms", "Last packet time minus first packet time", "nf-v1"),
    # --- NF-v2 additions ---
    Column("CLIENT_TCP_FLAGS", _I32, "bitmask", "OR of TCP flags sent by the source", "nf-v2"),
    Column("SERVER_TCP_FLAGS", _I32, "bitmask", "OR of TCP flags sent by the destination", "nf-v2"),
    Column("DURATION_IN", _I64, "ms", "Duration of the source-to-destination direction", "nf-v2"),
    Column("DURATION_OUT", _I64, "ms", "Duration of the destination-to-source direction", "nf-v2"),
    Column("MIN_TTL", _I16, "hops", "Minimum IP TTL seen", "nf-v2"),
    Column("MAX_TTL", _I16, "hops", "Maximum IP TTL seen", "nf-v2"),
    Column("LONGEST_FLOW_PKT", _I32, "bytes", "Longest packet (IP level)", "nf-v2"),
    Column("SHORTEST_FLOW_PKT", _I32, "bytes", "Shortest packet (IP level)", "nf-v2"),
    Column("MIN_IP_PKT_LEN", _I32, "bytes", "Shortest IP packet length", "nf-v2"),
    Column("MAX_IP_PKT_LEN", _I32, "bytes", "Longest IP packet length", "nf-v2"),
    Column("SRC_TO_DST_SECOND_BYTES", _F64, "bytes/s", "Source-to-destination bytes per second", "nf-v2"),
    Column("DST_TO_SRC_SECOND_BYTES", _F64, "bytes/s", "Destination-to-source bytes per second", "nf-v2"),
    Column("RETRANSMITTED_IN_BYTES", _I64, "bytes", "Retransmitted bytes, source to destination", "nf-v2"),
    Column("RETRANSMITTED_IN_PKTS", _I64, "packets", "Retransmitted packets, source to destination", "nf-v2"),
    Column("RETRANSMITTED_OUT_BYTES", _I64, "bytes", "Retransmitted bytes, destination to source", "nf-v2"),
    Column("RETRANSMITTED_OUT_PKTS", _I64, "packets", "Retransmitted packets, destination to source", "nf-v2"),
    Column("SRC_TO_DST_AVG_THROUGHPUT", _F64, "bits/s", "Average throughput source to destination", "nf-v2"),
    Column("DST_TO_SRC_AVG_THROUGHPUT", _F64, "bits/s", "Average throughput destination to source", "nf-v2"),
    Column("NUM_PKTS_UP_TO_128_BYTES", _I64, "packets", "Packets with IP length <= 128", "nf-v2"),
    Column("NUM_PKTS_128_TO_256_BYTES", _I64, "packets", "Packets with 128 < IP length <= 256", "nf-v2"),
    Column("NUM_PKTS_256_TO_512_BYTES", _I64, "packets", "Packets with 256 < IP length <= 512", "nf-v2"),
    Column("NUM_PKTS_512_TO_1024_BYTES", _I64, "packets", "Packets with 512 < IP length <= 1024", "nf-v2"),
    Column("NUM_PKTS_1024_TO_1514_BYTES", _I64, "packets", "Packets with 1024 < IP length <= 1514", "nf-v2"),
    Column("TCP_WIN_MAX_IN", _I64, "bytes", "Largest TCP window advertised by the source", "nf-v2"),
    Column("TCP_WIN_MAX_OUT", _I64, "bytes", "Largest TCP window advertised by the destination", "nf-v2"),
    Column("ICMP_TYPE", _I32, "type*256+code", "ICMP type * 256 + code", "nf-v2"),
    Column("ICMP_IPV4_TYPE", _I32, "type", "ICMP (IPv4) type", "nf-v2"),
    Column("DNS_QUERY_ID", _I64, "id", "DNS query transaction id", "nf-v2"),
    Column("DNS_QUERY_TYPE", _I32, "qtype", "DNS query type (1 A, 28 AAAA, ...)", "nf-v2"),
    Column("DNS_TTL_ANSWER", _I64, "s", "TTL of the first DNS answer", "nf-v2"),
    Column("FTP_COMMAND_RET_CODE", _F64, "code", "FTP command return code", "nf-v2"),
    # --- NF-v3 timing fields (needed for time ordering) ---
    Column("FLOW_START_MILLISECONDS", _I64, "ms since epoch", "Time of the first packet", "nf-v3"),
    Column("FLOW_END_MILLISECONDS", _I64, "ms since epoch", "Time of the last packet", "nf-v3"),
    Column("SRC_TO_DST_IAT_MIN", _F64, "ms", "Minimum inter-arrival time, source to destination", "nf-v3"),
    Column("SRC_TO_DST_IAT_MAX", _F64, "ms", "Maximum inter-arrival time, source to destination", "nf-v3"),
    Column("SRC_TO_DST_IAT_AVG", _F64, "ms", "Mean inter-arrival time, source to destination", "nf-v3"),
    Column("SRC_TO_DST_IAT_STDDEV", _F64, "ms", "Std. dev. of inter-arrival time, source to destination", "nf-v3"),
    Column("DST_TO_SRC_IAT_MIN", _F64, "ms", "Minimum inter-arrival time, destination to source", "nf-v3"),
    Column("DST_TO_SRC_IAT_MAX", _F64, "ms", "Maximum inter-arrival time, destination to source", "nf-v3"),
    Column("DST_TO_SRC_IAT_AVG", _F64, "ms", "Mean inter-arrival time, destination to source", "nf-v3"),
    Column("DST_TO_SRC_IAT_STDDEV", _F64, "ms", "Std. dev. of inter-arrival time, destination to source", "nf-v3"),
    # --- extra (not NF, but needed to read the rest) ---
    Column("IP_VERSION", _I8, "4 or 6", "IP version of the addresses", "extra"),
    Column("APPLICATION_NAME", _STR, "text", "Application as text (nDPI name, Zeek service, or NF id)", "extra"),
    Column("community_id", _STR, "text", "Community ID v1 of the 5-tuple (same hash as Zeek, Suricata, Arkime); "
           "null for ICMP without a type and for flows without addresses", "extra"),
    # --- labels (optional; null when unknown) ---
    Column("Label", _I8, "0/1", "1 = attack, 0 = benign, null = unlabelled", "label"),
    Column("Attack", _STR, "class", "Attack class name ('Benign' for benign flows), null = unlabelled", "label"),
    # --- provenance ---
    Column("batch_id", _STR, "id", "Ingest batch the flow belongs to (also the lake partition)", "provenance"),
    Column("source_file", _STR, "path", "Input file name the flow was read from", "provenance"),
    Column("source_sha256", _STR, "hex", "SHA-256 of the input file's bytes", "provenance"),
    Column("extractor", _STR, "name", "Extractor and version that produced the flow", "provenance"),
    Column("flow_index", _I64, "row", "Order of the flow within its source file (0-based)", "provenance"),
)

COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}
FLOW_SCHEMA: pa.Schema = pa.schema(
    [pa.field(c.name, c.type, nullable=True) for c in COLUMNS],
    metadata={"flowhawk.schema_version": str(SCHEMA_VERSION)},
)
NF_V1_FEATURES: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.group == "nf-v1")
PROVENANCE: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.group == "provenance")
LABELS: tuple[str, ...] = ("Label", "Attack")
BENIGN = "Benign"
FLOW_START = "FLOW_START_MILLISECONDS"  # a flow's time: windows are ordered by it, manifests record its range


def conform(frame: pd.DataFrame, **constants: object) -> pa.Table:
    """Return ``frame`` as a table of exactly FLOW_SCHEMA (column order, types; absent columns null).

    ``constants`` set whole columns (provenance, e.g. ``batch_id="b1"``). Unknown columns in ``frame`` are
    dropped. ``community_id`` is computed from the 5-tuple where the frame lacks it (absent column or null rows).
    Raises ``ValueError`` naming the column when a value cannot be represented.
    """
    unknown = set(constants) - set(COLUMN_NAMES)
    if unknown:
        raise ValueError(f"conform: unknown column(s) {sorted(unknown)}")
    n = len(frame)
    if "community_id" not in constants:
        frame = _with_community_id(frame)
    arrays = []
    for col in COLUMNS:
        if col.name in constants:
            arrays.append(pa.array([constants[col.name]] * n, type=col.type))
        elif col.name in frame.columns:
            arrays.append(_to_arrow(frame[col.name], col))
        else:
            arrays.append(pa.nulls(n, type=col.type))
    return pa.Table.from_arrays(arrays, schema=FLOW_SCHEMA)


def _with_community_id(frame: pd.DataFrame) -> pd.DataFrame:
    if "community_id" not in frame.columns:
        return frame.assign(community_id=community_ids(frame))
    missing = frame["community_id"].isna()
    if not missing.any():
        return frame
    filled = frame["community_id"].astype(object).copy()
    filled[missing] = community_ids(frame[missing])
    return frame.assign(community_id=filled)


def _to_arrow(series: pd.Series, col: Column) -> pa.Array:
    try:
        if pa.types.is_integer(col.type) and series.dtype.kind == "f":
            series = series.round()
        return pa.array(series, type=col.type, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as exc:
        raise ValueError(f"column {col.name}: cannot convert to {col.type}: {exc}") from exc


def empty_table() -> pa.Table:
    """A zero-row table of the flow schema."""
    return FLOW_SCHEMA.empty_table()


def markdown_table() -> str:
    """The column reference (name, type, unit, group, meaning) as a Markdown table, for the README."""
    rows = ["| column | type | unit | group | meaning |", "|---|---|---|---|---|"]
    rows += [f"| `{c.name}` | {c.type} | {c.unit} | {c.group} | {c.doc} |" for c in COLUMNS]
    return "\n".join(rows)
