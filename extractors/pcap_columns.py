"""nfstream ``NFlow`` objects to a frame of flow-table columns, vectorised per chunk.

``FlowBatch.add`` reads each flow with three C-level ``attrgetter`` calls, keeps the numbers in flat
``array.array`` buffers (8 bytes per value, no Python int objects kept alive) and the text in lists;
``to_frame`` turns a chunk into numpy columns at once. Column semantics: ``extractors.pcap_to_flows``.
"""

from __future__ import annotations

from array import array
from operator import attrgetter

import numpy as np
import pandas as pd

from extractors.ndpi_protocols import l7_proto

# TCP flag bit (nProbe / NF order) for each nfstream per-flag packet counter
FLAG_BITS = {"fin": 1, "syn": 2, "rst": 4, "psh": 8, "ack": 16, "urg": 32, "ece": 64, "cwr": 128}
_DIRS = ("bidirectional", "src2dst", "dst2src")
_STR = ("src_ip", "dst_ip", "application_name")
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
_I = {name: i for i, name in enumerate(_INT)}

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


class FlowBatch:
    """Accumulates nfstream flows; ``to_frame`` empties it into one frame."""

    _get_str = attrgetter(*_STR)
    _get_int = attrgetter(*_INT)
    _get_iat = attrgetter(*_IAT)

    def __init__(self) -> None:
        self._str: list[tuple] = []
        self._int = array("q")
        self._iat = array("d")
        self._l7: dict[str | None, float] = {}  # application name -> L7_PROTO, memoised across chunks

    def __len__(self) -> int:
        return len(self._str)

    def add(self, flow: object) -> None:
        self._str.append(self._get_str(flow))
        self._int.extend(self._get_int(flow))
        self._iat.extend(self._get_iat(flow))

    def to_frame(self, first_index: int = 0) -> pd.DataFrame:
        """The batched flows as a frame (``flow_index`` counting from ``first_index``); empties the batch."""
        ints = np.frombuffer(self._int, dtype=np.int64).reshape(-1, len(_INT)).copy()
        iat = np.frombuffer(self._iat, dtype=np.float64).reshape(-1, len(_IAT)).copy()
        src, dst, app = (list(c) for c in zip(*self._str, strict=True)) if self._str else ([], [], [])
        self._str, self._int, self._iat = [], array("q"), array("d")
        cols: dict[str, object] = {"flow_index": np.arange(first_index, first_index + len(ints), dtype=np.int64),
                                   "IPV4_SRC_ADDR": src, "IPV4_DST_ADDR": dst}
        for column, (attr, dtype) in _DIRECT.items():
            cols[column] = ints[:, _I[attr]].astype(dtype)
        cols["TCP_FLAGS"] = _flags(ints, "bidirectional")
        cols["CLIENT_TCP_FLAGS"] = _flags(ints, "src2dst")
        cols["SERVER_TCP_FLAGS"] = _flags(ints, "dst2src")
        for prefix, direction in (("SRC_TO_DST", "src2dst"), ("DST_TO_SRC", "dst2src")):
            rate = _bytes_per_second(ints[:, _I[f"{direction}_bytes"]], ints[:, _I[f"{direction}_packets"]],
                                     ints[:, _I[f"{direction}_duration_ms"]])
            cols[f"{prefix}_SECOND_BYTES"] = rate
            cols[f"{prefix}_AVG_THROUGHPUT"] = rate * 8.0
        few = np.concatenate([np.repeat(ints[:, [_I[f"{d}_packets"]]] < 2, 4, axis=1)
                              for d in ("src2dst", "dst2src")], axis=1)
        iat[few] = np.nan
        for i, column in enumerate(_IAT_COLUMNS):
            cols[column] = iat[:, i]
        cols["APPLICATION_NAME"] = app
        cols["L7_PROTO"] = np.array([self._l7_of(name) for name in app], dtype=np.float64)
        return pd.DataFrame(cols)

    def _l7_of(self, name: str | None) -> float:
        value = self._l7.get(name)
        if value is None:
            value = self._l7[name] = l7_proto(name)
        return value


def _flags(ints: np.ndarray, direction: str) -> np.ndarray:
    out = np.zeros(len(ints), dtype=np.int32)
    for flag, bit in FLAG_BITS.items():
        out |= (ints[:, _I[f"{direction}_{flag}_packets"]] > 0).astype(np.int32) * bit
    return out


def _bytes_per_second(nbytes: np.ndarray, packets: np.ndarray, duration_ms: np.ndarray) -> np.ndarray:
    """bytes/s; 0.0 without packets, NaN (null) with packets but zero duration (see module docs)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = nbytes * 1000.0 / duration_ms
    rate[duration_ms == 0] = np.nan
    rate[packets == 0] = 0.0
    return rate
