"""Zeek conn.log -> flow frames (NF column names).

Accepted layouts (detected from content; gzip by its magic bytes): classic TSV (``#separator`` (escaped, e.g.
``\\x09``), ``#set_separator``, ``#empty_field``, ``#unset_field``, ``#path``, ``#fields``, ``#types``,
``#close``; a new ``#fields`` block mid-file, as in concatenated logs, restarts the header), JSON lines (Zeek
omits unset fields; ``ts`` as epoch seconds or ISO 8601 text), and the IoT-23 variants: ONE plain tab-separated
header line with empty strings for unset fields, or ``#fields`` whose last names are separated by three spaces.
Columns not used below (uid, local_orig, rita's ``_node_name``, ...) are ignored.

Mapping (Zeek -> schema): id.orig_h/id.orig_p -> IPV4_SRC_ADDR/L4_SRC_PORT, id.resp_h/id.resp_p -> DST;
proto tcp/udp/icmp -> 6/17/1 (icmp with IPv6 addresses -> 58; anything else null); service -> APPLICATION_NAME;
orig_ip_bytes/resp_ip_bytes -> IN/OUT_BYTES (IP level, as in NF); orig_pkts/resp_pkts -> IN/OUT_PKTS;
duration -> FLOW_DURATION_MILLISECONDS (unset duration: 0 when the flow has exactly one packet, else null);
ts -> FLOW_START_MILLISECONDS, ts + duration -> FLOW_END_MILLISECONDS. ICMP: Zeek stores the ICMP type in
id.orig_p, and in id.resp_p the code, except for request/reply types (echo, router/neighbor discovery, ...)
where it stores the counterpart type (the code of those is 0; Zeek's ICMP4/6_counterpart), so ICMP_TYPE =
type*256+code, ICMP_IPV4_TYPE = type (IPv4 only) and both ports are 0; non-ICMP flows get ICMP_TYPE and
ICMP_IPV4_TYPE 0 (the NF convention). L7_PROTO stays null (Zeek has no nDPI id). IoT-23 ``label`` and
``detailed-label`` -> Label/Attack: benign/normal -> 0/'Benign'; anything else -> 1 and Attack = detailed-label,
or the label text ('Malicious') when detailed-label is unset.

TCP flags (TCP only; non-TCP flows get 0 as in NF) are approximated from ``history``, whose letters record the
first occurrence of a packet kind, uppercase = originator (CLIENT_TCP_FLAGS), lowercase = responder
(SERVER_TCP_FLAGS): S -> SYN, H -> SYN|ACK, A -> ACK, D -> ACK|PSH (a payload segment; PSH is assumed), F -> FIN,
R -> RST, Q -> SYN (SYN+FIN or SYN+RST in one packet); C, G, I, T, W, ^ carry no flag. A direction with no
flag-bearing letter gets 0. When the history is unset or has no flag-bearing letter at all, ``conn_state``
decides (client, server): S0 (SYN, 0), S1 (SYN|ACK, SYN|ACK), SF (SYN|ACK|FIN both), REJ (SYN, RST|ACK),
S2 (SYN|ACK|FIN, SYN|ACK), S3 (SYN|ACK, SYN|ACK|FIN), RSTO (SYN|ACK|RST, SYN|ACK), RSTR (SYN|ACK,
SYN|ACK|RST), RSTOS0 (SYN|RST, 0), RSTRH (0, SYN|ACK|RST), SH (SYN|FIN, 0), SHR (0, SYN|ACK|FIN); OTH or unset
-> null. TCP_FLAGS = CLIENT | SERVER.

Damage: lines with the wrong field count, invalid JSON, unparsable numbers or an unset address/port are
skipped and counted in the notes (a last line without newline among them marks the notes truncated). A log
that is not a conn log -> BadInputError "not a conn log (path=dns)"; a conn log without the required fields ->
BadInputError naming them. ``zeek_pcap_to_conn`` runs a ``zeek`` binary (when on PATH) to make a conn.log.
"""

from __future__ import annotations

import codecs
import io
import json
import logging
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from flowhawk.common.config import config_from_mapping
from flowhawk.extractors.base import BadInputError, ExtractNotes
from flowhawk.extractors.decompress import open_binary

log = logging.getLogger(__name__)
VERSION = "zeek-conn/1"

# Zeek type -> pandas dtype (as the zat project does; time/interval stay float seconds, since the schema wants
# milliseconds anyway). Containers (table[...], set[...], vector[...]) are kept as their text.
ZEEK_TYPES: dict[str, str] = {
    "time": "float64", "interval": "float64", "double": "float64", "count": "UInt64", "int": "Int64",
    "port": "Int64", "addr": "string", "subnet": "string", "string": "string", "enum": "string",
    "bool": "boolean", "pattern": "string",
}
_NUMERIC = {"float64", "UInt64", "Int64"}
# exclusive upper bounds of a sane value (every numeric conn field is >= 0): ports, epoch seconds before the year
# 5000 and intervals under 30 years keep milliseconds inside int64; counts must fit int64
_HIGH = {"port": 65536.0, "time": 1e11, "interval": 1e9}
MAX_LINE = 1 << 20  # characters: a longer line is skipped (counted), never held whole
# Types of the conn fields when the log has no #types (JSON lines, IoT-23 plain header).
CONN_FIELD_TYPES: dict[str, str] = {
    "ts": "time", "id.orig_h": "addr", "id.orig_p": "port", "id.resp_h": "addr", "id.resp_p": "port",
    "proto": "enum", "service": "string", "duration": "interval", "conn_state": "string", "history": "string",
    "orig_pkts": "count", "orig_ip_bytes": "count", "resp_pkts": "count", "resp_ip_bytes": "count",
    "label": "string", "detailed-label": "string",
}
REQUIRED = ("ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto")
_CONN_MARKERS = {"conn_state", "orig_pkts", "orig_ip_bytes", "resp_pkts", "history"}
_PATH_SIGNATURES = (  # (log path, fields only that log has), to name a non-conn log that has no #path
    ("dns", {"query", "qtype", "trans_id"}), ("http", {"method", "uri", "user_agent"}),
    ("ssl", {"server_name", "cipher"}), ("x509", {"certificate.subject"}), ("files", {"fuid", "mime_type"}),
    ("ssh", {"auth_success"}), ("smtp", {"mailfrom", "rcptto"}), ("dhcp", {"assigned_addr"}),
    ("notice", {"note"}), ("weird", {"peer", "name"}),
)
_PROTO = {"tcp": 6, "udp": 17, "icmp": 1}
# ICMP types whose id.resp_p is the counterpart type rather than the code (Zeek ICMP4/ICMP6_counterpart)
_ICMP_PAIRED = {4: {0, 8, 9, 10, 13, 14, 15, 16, 17, 18},
                6: {128, 129, 130, 131, 133, 134, 135, 136, 139, 140, 144, 145}}
FIN, SYN, RST, PSH, ACK = 1, 2, 4, 8, 16
_LETTER_FLAGS = {"s": SYN, "h": SYN | ACK, "a": ACK, "d": ACK | PSH, "f": FIN, "r": RST, "q": SYN}
_STATE_FLAGS: dict[str, tuple[int, int]] = {
    "S0": (SYN, 0), "S1": (SYN | ACK, SYN | ACK), "SF": (SYN | ACK | FIN, SYN | ACK | FIN), "REJ": (SYN, RST | ACK),
    "S2": (SYN | ACK | FIN, SYN | ACK), "S3": (SYN | ACK, SYN | ACK | FIN), "RSTO": (SYN | ACK | RST, SYN | ACK),
    "RSTR": (SYN | ACK, SYN | ACK | RST), "RSTOS0": (SYN | RST, 0), "RSTRH": (0, SYN | ACK | RST),
    "SH": (SYN | FIN, 0), "SHR": (0, SYN | ACK | FIN),
}
_BENIGN_WORDS = {"benign", "normal"}


@dataclass(frozen=True)
class ZeekConfig:
    """``chunk_rows``: rows per yielded frame (1..10,000,000)."""

    chunk_rows: int = 50_000

    def __post_init__(self) -> None:
        if not isinstance(self.chunk_rows, int) or not 1 <= self.chunk_rows <= 10_000_000:
            raise ValueError(f"ZeekConfig.chunk_rows must be an int in 1..10000000, got {self.chunk_rows!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> ZeekConfig:
        return config_from_mapping(cls, values)  # type: ignore[return-value]


@dataclass
class _Layout:
    """What the header said: field names and types, separators and unset markers."""

    fields: list[str]
    types: dict[str, str]
    split: re.Pattern[str] | str
    unset: frozenset[str]
    log_path: str | None = None


# Zeek's header / footer lines; once the header is read, any other line starting with '#' is a data row whose
# first field begins with '#' (garbled: counted, not silently taken for a comment)
DIRECTIVES = frozenset({"separator", "set_separator", "empty_field", "unset_field", "path", "open", "close",
                        "fields", "types"})


@dataclass
class _Damage:
    wrong_count: int = 0
    bad_json: int = 0
    bad_value: int = 0
    bad_fields: Counter[str] = field(default_factory=Counter)  # rows per field that failed (a row may fail twice)
    truncated_last: bool = False


class ZeekConnExtractor:
    """Zeek conn.log (TSV, JSON lines, IoT-23 variants, gzip) -> frames of schema columns."""

    name = VERSION

    def __init__(self, config: ZeekConfig | None = None) -> None:
        self.config = config or ZeekConfig()

    def frames(self, path: Path, notes: ExtractNotes) -> Iterator[pd.DataFrame]:
        path = Path(path)
        damage = _Damage()
        try:
            with _open_text(path) as fh:
                for raw, index, layout in _raw_chunks(path, fh, self.config.chunk_rows, damage):
                    _check_conn(path, layout)
                    frame = _to_flows(raw, index, layout, damage)
                    if len(frame):
                        yield frame
        except (OSError, EOFError, UnicodeError) as exc:
            raise BadInputError(path, f"unreadable Zeek log: {exc}") from None
        _report(path, damage, notes)


def _open_text(path: Path) -> io.TextIOBase:
    if not path.is_file():
        raise BadInputError(path, "no such file" if not path.exists() else "not a regular file")
    return io.TextIOWrapper(open_binary(path), encoding="utf-8", errors="replace", newline="\n")


def _raw_chunks(path: Path, fh: io.TextIOBase, chunk: int,
                damage: _Damage) -> Iterator[tuple[pd.DataFrame, list[int], _Layout]]:
    """Yield (raw frame of field texts/JSON values, data-row numbers, layout) per chunk of data lines."""
    meta: dict[str, str] = {}
    layout: _Layout | None = None
    rows: list = []
    index: list[int] = []
    n_data = 0
    for line in _lines(fh, damage):
        complete = line.endswith("\n")
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        if line.startswith("#") and (layout is None or _directive(line) in DIRECTIVES):  # else a data row
            new = _header_line(line, meta)
            if new is not None:
                if rows and layout is not None:
                    yield _frame(rows, layout), index, layout
                    rows, index = [], []
                layout = new
            continue
        if layout is None:  # JSON lines or the IoT-23 one-line plain header
            if line.lstrip().startswith("{"):
                layout = _Layout([], dict(CONN_FIELD_TYPES), "json", frozenset())
            else:
                layout = _Layout(line.split("\t"), dict(CONN_FIELD_TYPES), "\t", frozenset({"", "-"}))
                continue
        row = _parse_line(line, layout, damage)
        if row is None:
            damage.truncated_last = not complete  # only the last line can lack its newline
        else:
            rows.append(row)
            index.append(n_data)
        n_data += 1
        if len(rows) >= chunk:
            yield _frame(rows, layout), index, layout
            rows, index = [], []
    if layout is None:
        raise BadInputError(path, "no Zeek header (#fields), JSON records or header line found")
    if rows or n_data == 0:
        yield _frame(rows, layout), index, layout


def _lines(fh: io.TextIOBase, damage: _Damage) -> Iterator[str]:
    """The lines of ``fh``; one longer than MAX_LINE is read in pieces, counted as garbled and skipped."""
    while line := fh.readline(MAX_LINE):
        if len(line) < MAX_LINE or line.endswith("\n"):
            yield line
            continue
        while (rest := fh.readline(MAX_LINE)) and not rest.endswith("\n"):
            pass
        damage.wrong_count += 1


def _directive(line: str) -> str:
    """The key of a ``#key value`` line (``fields``, ``close``...)."""
    return line[1:].split(None, 1)[0] if len(line) > 1 and not line[1].isspace() else ""


def _header_line(line: str, meta: dict[str, str]) -> _Layout | None:
    """Record one ``#key value`` header line; return a new layout at ``#fields`` and again at ``#types``
    (a log without ``#types`` gets the default conn field types)."""
    key = _directive(line)
    rest = line[1 + len(key):]
    if key == "separator":
        meta["separator"] = codecs.decode(rest.strip(), "unicode_escape") or "\t"
        return None
    sep = meta.get("separator", "\t")
    meta[key] = rest[len(sep):] if rest.startswith(sep) else rest.lstrip()
    if key == "fields":
        meta.pop("types", None)
    if key not in ("fields", "types") or "fields" not in meta:
        return None
    spaced = "   " in meta["fields"]  # IoT-23 original: last columns separated by three spaces
    split: re.Pattern[str] | str = re.compile(re.escape(sep) + "| {3}") if spaced else sep
    names, types = _split(meta["fields"], split), _split(meta.get("types", ""), split)
    unset = frozenset({meta.get("unset_field", "-")})
    return _Layout(names, dict(zip(names, types, strict=False)), split, unset, meta.get("path"))


def _split(text: str, split: re.Pattern[str] | str) -> list[str]:
    return split.split(text) if isinstance(split, re.Pattern) else text.split(split)


def _parse_line(line: str, layout: _Layout, damage: _Damage) -> list[str] | dict | None:
    if layout.split == "json":
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            damage.bad_json += 1
            return None
        return record
    parts = _split(line, layout.split)
    if len(parts) != len(layout.fields):
        damage.wrong_count += 1
        return None
    return parts


def _frame(rows: list, layout: _Layout) -> pd.DataFrame:
    if layout.split == "json":
        frame = pd.DataFrame.from_records(rows) if rows else pd.DataFrame()
        if not layout.fields:
            layout.fields = list(frame.columns)
            paths = frame["_path"].dropna() if "_path" in frame.columns else ()
            layout.log_path = str(paths.iloc[0]) if len(paths) else None
        return frame
    return pd.DataFrame(rows, columns=layout.fields, dtype=object)


def _check_conn(path: Path, layout: _Layout) -> None:
    fields = set(layout.fields)
    name = layout.log_path
    if name is None and not fields & _CONN_MARKERS:
        name = next((p for p, sig in _PATH_SIGNATURES if fields & sig), "unknown")
    if name is not None and not (name.startswith("conn") or name == "open_conn"):
        raise BadInputError(path, f"not a conn log (path={name})")
    missing = [f for f in REQUIRED if f not in fields]
    if missing:
        raise BadInputError(path, f"Zeek conn log lacks required field(s): {', '.join(missing)}")


def convert(values: pd.Series, zeek_type: str, unset: frozenset[str]) -> tuple[pd.Series, pd.Series]:
    """One column of texts (or JSON values) as the pandas dtype of its Zeek type; also the mask of values
    that were set but did not parse (those rows are garbled)."""
    base = zeek_type.split("[", 1)[0]
    dtype = ZEEK_TYPES.get(base, "string")
    if base in ("table", "set", "vector"):
        values = values.map(lambda v: ",".join(map(str, v)) if isinstance(v, list) else v)
    is_unset = values.isna() | values.isin(list(unset))
    kept = values.where(~is_unset)
    if dtype == "boolean":
        out = kept.map({"T": True, "F": False, True: True, False: False})
        return out.astype("boolean"), out.isna() & ~is_unset
    if dtype not in _NUMERIC:
        return kept.astype("string"), pd.Series(False, index=values.index)
    out = pd.to_numeric(kept, errors="coerce").astype("float64")
    failed = out.isna() & ~is_unset
    if base == "time" and failed.any():  # JSON logs written with JSON::TS_FORMAT = ISO8601
        stamps = pd.to_datetime(kept[failed].astype(str), utc=True, errors="coerce", format="ISO8601")
        out[failed] = (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    ok = out.notna() | is_unset
    ok &= out.isna() | ((out >= 0) & (out < _HIGH.get(base, 2.0**63)))  # no inf, no negative, fits its column
    if dtype != "float64":
        ok &= out.isna() | (out == out.round())
        return out.where(ok).astype("Float64").astype(dtype), ~ok
    return out.where(ok), ~ok


def _typed(raw: pd.DataFrame, layout: _Layout, damage: _Damage) -> tuple[dict[str, pd.Series], pd.Series]:
    cols: dict[str, pd.Series] = {}
    bad = pd.Series(False, index=raw.index)
    raw = raw.loc[:, ~raw.columns.duplicated()]  # a #fields line naming a field twice: the first one counts
    for name in CONN_FIELD_TYPES:
        if name not in raw.columns:
            continue
        zeek_type = layout.types.get(name) or CONN_FIELD_TYPES[name]
        cols[name], col_bad = convert(raw[name], zeek_type, layout.unset)
        damage.bad_fields[name] += int(col_bad.sum())
        bad |= col_bad
    for name in REQUIRED:
        missing = cols[name].isna() & ~bad if name in cols else ~bad
        damage.bad_fields[name] += int(missing.sum())
        bad |= missing
    damage.bad_value += int(bad.sum())
    return {k: v[~bad].reset_index(drop=True) for k, v in cols.items()}, bad


def _to_flows(raw: pd.DataFrame, index: list[int], layout: _Layout, damage: _Damage) -> pd.DataFrame:
    cols, bad = _typed(raw, layout, damage)
    n = int((~bad).sum())
    empty = pd.Series(pd.NA, index=range(n), dtype="object")
    get = lambda name: cols.get(name, empty)  # noqa: E731
    src, dst = get("id.orig_h").astype("string"), get("id.resp_h").astype("string")
    v6 = src.str.contains(":", regex=False).fillna(False).to_numpy(bool)
    proto = get("proto").astype("string").str.lower()
    number = proto.map(_PROTO).astype("Int16")
    is_icmp = (number == 1).fillna(False).to_numpy(bool)
    number = number.mask(pd.Series(is_icmp & v6), 58)
    sport, dport = get("id.orig_p").astype("Int64"), get("id.resp_p").astype("Int64")
    in_pkts, out_pkts = get("orig_pkts").astype("Int64"), get("resp_pkts").astype("Int64")
    duration_ms = (get("duration").astype("Float64") * 1000).round().astype("Int64")
    one_packet = ((in_pkts.fillna(0) + out_pkts.fillna(0)) == 1) & in_pkts.notna()
    duration_ms = duration_ms.mask(duration_ms.isna() & one_packet, 0)
    start = (get("ts").astype("Float64") * 1000).round().astype("Int64")
    frame = pd.DataFrame({
        "IPV4_SRC_ADDR": src, "L4_SRC_PORT": sport.mask(pd.Series(is_icmp), 0),
        "IPV4_DST_ADDR": dst, "L4_DST_PORT": dport.mask(pd.Series(is_icmp), 0),
        "PROTOCOL": number, "IN_BYTES": get("orig_ip_bytes").astype("Int64"),
        "OUT_BYTES": get("resp_ip_bytes").astype("Int64"), "IN_PKTS": in_pkts, "OUT_PKTS": out_pkts,
        "FLOW_DURATION_MILLISECONDS": duration_ms, "FLOW_START_MILLISECONDS": start,
        "FLOW_END_MILLISECONDS": start + duration_ms,
        "ICMP_TYPE": (sport * 256 + _icmp_code(sport, dport, v6)).where(is_icmp, 0),
        "ICMP_IPV4_TYPE": sport.where(is_icmp & ~v6, pd.NA).where(is_icmp, 0),
        "IP_VERSION": pd.Series(np.where(v6, 6, 4), dtype="Int8"),
        "APPLICATION_NAME": get("service").astype("string"),
    })
    client, server = _tcp_flags(get("history"), get("conn_state"), (number == 6).fillna(False))
    frame["CLIENT_TCP_FLAGS"], frame["SERVER_TCP_FLAGS"] = client, server
    frame["TCP_FLAGS"] = client | server
    if "label" in cols:
        frame["Label"], frame["Attack"] = _labels(cols["label"], cols.get("detailed-label", empty))
    frame["flow_index"] = pd.Series(index, dtype="int64")[~bad.to_numpy()].reset_index(drop=True)
    return frame


def _icmp_code(icmp_type: pd.Series, resp_p: pd.Series, v6: np.ndarray) -> pd.Series:
    paired = np.where(v6, icmp_type.isin(_ICMP_PAIRED[6]), icmp_type.isin(_ICMP_PAIRED[4]))
    return resp_p.mask(pd.Series(paired, index=resp_p.index), 0)


def history_flags(history: str | None, conn_state: str | None) -> tuple[int | None, int | None]:
    """(client, server) TCP flag masks of one TCP connection, by the rule in the module docstring."""
    client = server = 0
    for letter in history or "":
        flag = _LETTER_FLAGS.get(letter.lower(), 0)
        if letter.isupper():
            client |= flag
        else:
            server |= flag
    if client or server:
        return client, server
    return _STATE_FLAGS.get(conn_state or "", (None, None))


def _tcp_flags(history: pd.Series, state: pd.Series, is_tcp: pd.Series) -> tuple[pd.Series, pd.Series]:
    keys = history.astype("object").fillna("?") + "|" + state.astype("object").fillna("?")
    pairs = {key: history_flags(*(None if part == "?" else part for part in key.split("|")))
             for key in keys.unique()}
    tcp = is_tcp.to_numpy(bool)
    client = keys.map({k: v[0] for k, v in pairs.items()}).astype("Int32").where(tcp, 0)
    server = keys.map({k: v[1] for k, v in pairs.items()}).astype("Int32").where(tcp, 0)
    return client.reset_index(drop=True), server.reset_index(drop=True)


def _labels(label: pd.Series, detailed: pd.Series) -> tuple[pd.Series, pd.Series]:
    text = label.astype("string").str.strip()
    benign = text.str.lower().isin(_BENIGN_WORDS)
    detail = detailed.astype("string").str.strip().replace("", pd.NA)
    attack = detail.fillna(text).where(~benign, "Benign").where(text.notna(), pd.NA)
    return benign.map({True: 0, False: 1}).astype("Int8").where(text.notna(), pd.NA), attack


def _report(path: Path, damage: _Damage, notes: ExtractNotes) -> None:
    skipped = damage.wrong_count + damage.bad_json + damage.bad_value
    if damage.truncated_last:
        notes.truncated = True
    if skipped:
        message = (f"skipped {skipped} garbled line(s) (wrong field count {damage.wrong_count}, "
                   f"invalid JSON {damage.bad_json}, unparsable/unset required values {damage.bad_value}"
                   + "".join(f"; {name} {n}" for name, n in damage.bad_fields.most_common(3) if n) + ")"
                   + ("; the last line is truncated" if damage.truncated_last else ""))
        notes.add(message)
        log.warning("%s: %s", path.name, message)


def zeek_pcap_to_conn(pcap: Path, workdir: Path, timeout_s: float = 3600) -> Path:
    """Run ``zeek -C -r <pcap>`` in ``workdir`` and return the conn.log it wrote.

    Raises RuntimeError when no ``zeek`` binary is on PATH, BadInputError when zeek rejects the capture or
    writes no conn.log (a capture without IP connections).
    """
    zeek = shutil.which("zeek")
    if zeek is None:
        raise RuntimeError("zeek is not on PATH; install Zeek to extract captures with it")
    pcap, workdir = Path(pcap).resolve(), Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([zeek, "-C", "-r", str(pcap)], cwd=workdir, capture_output=True, text=True,
                          timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise BadInputError(pcap, f"zeek failed (exit {done.returncode}): {done.stderr.strip()[-300:]}")
    conn = workdir / "conn.log"
    if not conn.is_file():
        raise BadInputError(pcap, "zeek wrote no conn.log (no IP connections in the capture)")
    return conn


class ZeekPcapExtractor:
    """A capture through a local ``zeek`` binary, then through ZeekConnExtractor (temporary workdir)."""

    name = "zeek-pcap/1"

    def __init__(self, config: ZeekConfig | None = None) -> None:
        self.config = config or ZeekConfig()

    def frames(self, path: Path, notes: ExtractNotes) -> Iterator[pd.DataFrame]:
        with tempfile.TemporaryDirectory(prefix="flowhawk-zeek-") as tmp:
            conn = zeek_pcap_to_conn(Path(path), Path(tmp))
            yield from ZeekConnExtractor(self.config).frames(conn, notes)
