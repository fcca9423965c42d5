"""nfstream flows to frames of flow-table columns: a lean per-flow record, then numpy per chunk.

nfstream's meter processes send each finished flow to the reading process as a pickled ``NFlow``: all of its
~100 slots, field names included, ~2.2 kB a flow, which costs the meter (pickling, in the same process
that meters packets) and the reader (unpickling) more than everything flowhawk does with the flow. The
meters we start (``pcap_meters``) pickle a ``LeanFlow`` instead: the three texts we keep and the 51
numbers we use packed into one ``struct`` (~210 bytes). ``FlowBatch.add`` then costs two appends, and
``to_frame`` reads a whole chunk of packed records as one numpy structured array.

A plain ``NFlow`` (e.g. from an ``NFStreamer`` not started through ``pcap_meters``) is accepted too; it
is packed in the reader. Column semantics: ``extractors.pcap_to_flows``.
"""

from __future__ import annotations

import struct
from operator import attrgetter

import numpy as np
import pandas as pd

from flowhawk.extractors.ndpi_protocols import l7_proto

# TCP flag bit (nProbe / NF order) for each nfstream per-flag packet counter
FLAG_BITS = {"fin": 1, "syn": 2, "rst": 4, "psh": 8, "ack": 16, "urg": 32, "ece": 64, "cwr": 128}
_DIRS = ("bidirectional", "src2dst", "dst2src")
TEXT_FIELDS = ("src_ip", "dst_ip", "application_name")
_INT = (
    "src_port", "dst_port", "protocol", "ip_version",
    "src2dst_bytes", "dst2src_bytes", "src2dst_packets", "dst2src_packets",
    "bidirectional_first_seen_ms", "bidirectional_last_seen_ms", "bidirectional_duration_ms",
    "src2dst_duration_ms", "dst2src_duration_ms",
    "bidirectional_min_ps", "bidirectional_max_ps",
    *(f"{d}_{f}_packets" for d in _DIRS for f in FLAG_BITS),
)
_IAT = tuple(f"{d}_{s}_piat_ms" for d in ("src2dst", "dst2src") for s in ("min", "max", "mean", "stddev"))
_IAT_COLUMNS = tuple(f"{p}_IAT_{s}" for p in ("SRC_TO_DST", "DST_TO_SRC") for s in ("MIN", "MAX", "AVG", "STDDEV"))
NUMBER_FIELDS = _INT + _IAT
_PACK = struct.Struct(f"<{len(_INT)}q{len(_IAT)}d")
_RECORD = np.dtype([(name, "<i8") for name in _INT] + [(name, "<f8") for name in _IAT])
_get_text = attrgetter(*TEXT_FIELDS)
_get_numbers = attrgetter(*NUMBER_FIELDS)

_DIRECT = {  # flow-table column <- nfstream integer attribute, and the numpy type it is stored in
    "L4_SRC_PORT": ("src_port", np.int32),
    "L4_DST_PORT": ("dst_port", np.int32),
    "PROTOCOL": ("protocol", np.int16),
    "IP_VERSION": ("ip_version", np.int8),
    "IN_BYTES": ("src2dst_bytes", np.int64),
    "OUT_BYTES": ("dst2src_bytes", np.int64),
    "IN_PKTS": ("src2dst_packets", np.int64),
    "OUT_PKTS": ("dst2src_packets", np.int64),
    "FLOW_DURATION_MILLISECONDS": ("bidirectional_duration_ms", np.int64),
    "DURATION_IN": ("src2dst_duration_ms", np.int64),
    "DURATION_OUT": ("dst2src_duration_ms", np.int64),
    "FLOW_START_MILLISECONDS": ("bidirectional_first_seen_ms", np.int64),
    "FLOW_END_MILLISECONDS": ("bidirectional_last_seen_ms", np.int64),
    "MIN_IP_PKT_LEN": ("bidirectional_min_ps", np.int32),
    "MAX_IP_PKT_LEN": ("bidirectional_max_ps", np.int32),
    "SHORTEST_FLOW_PKT": ("bidirectional_min_ps", np.int32),
    "LONGEST_FLOW_PKT": ("bidirectional_max_ps", np.int32),
}


class LeanFlow:
    """What crosses the process boundary per flow. ``id`` is there for nfstream's reader loop, which
    compares it with its event codes and then overwrites it with the flow's sequence number."""

    __slots__ = ("id", "numbers", "text")

    def __init__(self, text: tuple, numbers: bytes) -> None:
        self.id, self.text, self.numbers = 0, text, numbers


def lean_reduce(flow: object) -> tuple:
    """``NFlow.__reduce__`` inside our meter processes: pickle the flow as a ``LeanFlow``."""
    return LeanFlow, (_get_text(flow), _PACK.pack(*_get_numbers(flow)))


class FlowBatch:
    """Accumulates flows; ``to_frame`` empties it into one frame."""

    def __init__(self) -> None:
        self._text: list[tuple] = []
        self._numbers = bytearray()
        self._l7: dict[str | None, float] = {}  # application name -> L7_PROTO, memoised across chunks

    def __len__(self) -> int:
        return len(self._text)

    def add(self, flow: object) -> None:
        if type(flow) is LeanFlow:
            self._text.append(flow.text)
            self._numbers += flow.numbers
        else:  # a full NFlow
            self._text.append(_get_text(flow))
            self._numbers += _PACK.pack(*_get_numbers(flow))

    def to_frame(self, first_index: int = 0) -> pd.DataFrame:
        """The batched flows as a frame (``flow_index`` counting from ``first_index``); empties the batch."""
        rec = np.frombuffer(self._numbers, dtype=_RECORD)  # a view: the bytearray is replaced just below
        src, dst, app = (list(c) for c in zip(*self._text, strict=True)) if self._text else ([], [], [])
        self._text, self._numbers = [], bytearray()
        cols: dict[str, object] = {"flow_index": np.arange(first_index, first_index + len(rec), dtype=np.int64),
                                   "IPV4_SRC_ADDR": src, "IPV4_DST_ADDR": dst}
        for column, (attr, dtype) in _DIRECT.items():
            cols[column] = rec[attr].astype(dtype)
        cols["TCP_FLAGS"] = _flags(rec, "bidirectional")
        cols["CLIENT_TCP_FLAGS"] = _flags(rec, "src2dst")
        cols["SERVER_TCP_FLAGS"] = _flags(rec, "dst2src")
        for prefix, direction in (("SRC_TO_DST", "src2dst"), ("DST_TO_SRC", "dst2src")):
            rate = _bytes_per_second(rec[f"{direction}_bytes"], rec[f"{direction}_packets"],
                                     rec[f"{direction}_duration_ms"])
            cols[f"{prefix}_SECOND_BYTES"] = rate
            cols[f"{prefix}_AVG_THROUGHPUT"] = rate * 8.0
        for name, column in zip(_IAT, _IAT_COLUMNS, strict=True):  # no interval with fewer than 2 packets
            few = rec[f"{name[:7]}_packets"] < 2
            cols[column] = np.where(few, np.nan, rec[name])
        cols["APPLICATION_NAME"] = app
        cols["L7_PROTO"] = np.array([self._l7_of(name) for name in app], dtype=np.float64)
        return pd.DataFrame(cols)

    def _l7_of(self, name: str | None) -> float:
        value = self._l7.get(name)
        if value is None:
            value = self._l7[name] = l7_proto(name)
        return value


def _flags(rec: np.ndarray, direction: str) -> np.ndarray:
    out = np.zeros(len(rec), dtype=np.int32)
    for flag, bit in FLAG_BITS.items():
        out |= (rec[f"{direction}_{flag}_packets"] > 0).astype(np.int32) * bit
    return out


def _bytes_per_second(nbytes: np.ndarray, packets: np.ndarray, duration_ms: np.ndarray) -> np.ndarray:
    """bytes/s; 0.0 without packets, NaN (null) with packets but zero duration (see module docs)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = nbytes * 1000.0 / duration_ms
    rate[duration_ms == 0] = np.nan
    rate[packets == 0] = 0.0
    return rate
