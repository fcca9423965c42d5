"""Host-behaviour features: what a flow's source host did in its window of the last T flows.

A single flow of a port scan looks like any refused connection; the host's window does not. For every flow,
over the same window the detector sees (``model.windows``: the source host's T most recent flows ending at this
one, fewer at the start of a host's history), this module computes:

==================  =============================================================================
HOST_FLOWS          flows in the window (1..T)
HOST_DST_HOSTS      distinct destination addresses (fan-out; a horizontal scan reaches T)
HOST_DST_PORTS      distinct destination ports (a vertical scan reaches T)
HOST_UNANSWERED     share of flows with no reply packets (OUT_PKTS == 0)
HOST_RST            share of TCP flows with RST seen
HOST_SYN_ONLY       share of TCP flows with SYN but never ACK (half-open / refused)
HOST_PORT_SPREAD    standard deviation of the destination ports
HOST_SIZE_SPREAD    standard deviation of log1p(IN_BYTES + OUT_BYTES)
HOST_RATE           flows per second: (flows - 1) / (last start - first start), NaN without timestamps
==================  =============================================================================

``HOST_FEATURE_SOURCES`` names, per feature, the flow-schema columns its value is computed from (read off
``_per_flow`` and ``_window_stats``). Every feature also depends on which flows form the window (the source
address and the start-time order, ``model.windows``); that grouping is common to all and not listed.

Missing inputs count as absent evidence (a flow without OUT_PKTS is not "unanswered"). The values are raw
measurements; ``FeaturePipeline(extra_numeric=HOST_FEATURES)`` scales them like every other counter. Work is done
``chunk`` windows at a time from ``WindowIndex.index_matrix``, so memory stays O(chunk * T) beyond the output.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from flowhawk.model.features import column_floats
from flowhawk.model.windows import TIME_COLUMN, WindowIndex, build_window_index

HOST_FEATURES: tuple[str, ...] = ("HOST_FLOWS", "HOST_DST_HOSTS", "HOST_DST_PORTS", "HOST_UNANSWERED", "HOST_RST",
                                  "HOST_SYN_ONLY", "HOST_PORT_SPREAD", "HOST_SIZE_SPREAD", "HOST_RATE")
# The flow-schema columns each feature is computed from (``_per_flow`` -> ``_window_stats``). HOST_RST and
# HOST_SYN_ONLY read PROTOCOL as well as TCP_FLAGS: only flows with PROTOCOL 6 and a TCP_FLAGS value count, in the
# numerator and in the share's denominator. HOST_FLOWS counts the window's flows and reads no field of them.
HOST_FEATURE_SOURCES: dict[str, tuple[str, ...]] = {
    "HOST_FLOWS": (),
    "HOST_DST_HOSTS": ("IPV4_DST_ADDR",),
    "HOST_DST_PORTS": ("L4_DST_PORT",),
    "HOST_UNANSWERED": ("OUT_PKTS",),
    "HOST_RST": ("TCP_FLAGS", "PROTOCOL"),
    "HOST_SYN_ONLY": ("TCP_FLAGS", "PROTOCOL"),
    "HOST_PORT_SPREAD": ("L4_DST_PORT",),
    "HOST_SIZE_SPREAD": ("IN_BYTES", "OUT_BYTES"),
    "HOST_RATE": (TIME_COLUMN,),
}
SYN, RST, ACK = 2, 4, 16
DEFAULT_CHUNK = 65_536


def _codes(frame: pd.DataFrame, name: str) -> np.ndarray:
    """Integer code per row (>= 0); missing values share one code of their own."""
    if name not in frame.columns:
        return np.zeros(len(frame), dtype=np.int64)
    codes, uniques = pd.factorize(frame[name], use_na_sentinel=True)
    return np.where(codes < 0, len(uniques), codes).astype(np.int64)


def _per_flow(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The per-flow inputs the window statistics aggregate."""
    ports = column_floats(frame, "L4_DST_PORT")
    out_pkts = column_floats(frame, "OUT_PKTS")
    flags = column_floats(frame, "TCP_FLAGS")
    tcp = (column_floats(frame, "PROTOCOL") == 6) & np.isfinite(flags)
    bits = np.where(np.isfinite(flags), flags, 0).astype(np.int64)
    size = np.nansum(np.stack([column_floats(frame, "IN_BYTES"), column_floats(frame, "OUT_BYTES")]), axis=0)
    return {
        "dst": _codes(frame, "IPV4_DST_ADDR"),
        "port_code": np.where(np.isfinite(ports), ports, 65536).astype(np.int64),
        "port": np.where(np.isfinite(ports), ports, 0.0),
        "unanswered": (out_pkts == 0).astype(np.float64),
        "tcp": tcp.astype(np.float64),
        "rst": (tcp & ((bits & RST) > 0)).astype(np.float64),
        "syn_only": (tcp & ((bits & SYN) > 0) & ((bits & ACK) == 0)).astype(np.float64),
        "size": np.log1p(np.maximum(size, 0.0)),
        "time": column_floats(frame, TIME_COLUMN),
    }


def _distinct(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Distinct non-padding values per row of a (B, T) matrix of codes >= 0."""
    ordered = np.sort(np.where(valid, values, -1), axis=1)
    changes = (ordered[:, 1:] != ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    return changes.sum(axis=1) + (ordered[:, 0] >= 0)


def _spread(values: np.ndarray, valid: np.ndarray, n: np.ndarray) -> np.ndarray:
    mean = (values * valid).sum(axis=1) / n
    return np.sqrt((valid * (values - mean[:, None]) ** 2).sum(axis=1) / n)


def _share(values: np.ndarray, valid: np.ndarray, n: np.ndarray) -> np.ndarray:
    return (values * valid).sum(axis=1) / n


def _window_stats(flow: dict[str, np.ndarray], index: np.ndarray) -> np.ndarray:
    """(B, len(HOST_FEATURES)) statistics of the windows given by a (B, T) index matrix (-1 = padding)."""
    valid = index >= 0
    at = np.where(valid, index, 0)
    n = valid.sum(axis=1).astype(np.float64)
    tcp = flow["tcp"][at] * valid
    n_tcp = np.maximum(tcp.sum(axis=1), 1.0)
    times = np.where(valid, flow["time"][at], np.nan)
    timed = np.isfinite(times)
    with np.errstate(invalid="ignore", divide="ignore"):  # nanmax/nanmin, without their all-NaN warning
        last = np.where(timed, times, -np.inf).max(axis=1)
        first = np.where(timed, times, np.inf).min(axis=1)
        span_s = np.where(timed.any(axis=1), (last - first) / 1000.0, np.nan)
        rate = np.where(n > 1, (n - 1) / np.maximum(span_s, 1e-3), 0.0)
    rate = np.where(np.isnan(span_s), np.nan, rate)
    return np.stack([
        n,
        _distinct(flow["dst"][at], valid),
        _distinct(flow["port_code"][at], valid),
        _share(flow["unanswered"][at], valid, n),
        (flow["rst"][at] * valid).sum(axis=1) / n_tcp,
        (flow["syn_only"][at] * valid).sum(axis=1) / n_tcp,
        _spread(flow["port"][at], valid, n),
        _spread(flow["size"][at], valid, n),
        rate,
    ], axis=1)


def context_depth(window: int) -> int:
    """Earlier flows per host that reach a flow's score when flows carry host features: its window holds
    ``window - 1`` of them, and each of those carries host features of its own window, ``window - 1`` further back."""
    return 2 * (window - 1)


def history_depth(window: int, host_features: bool) -> int:
    """Earlier flows per host a supervised model's scores reach back to: ``window - 1``, or ``context_depth`` when
    its flows carry host features (``TrainConfig.host_features``)."""
    return context_depth(window) if host_features else window - 1


def host_window_features(frame: pd.DataFrame, index: WindowIndex, chunk: int = DEFAULT_CHUNK) -> pd.DataFrame:
    """One row per flow of ``frame`` (same index): the HOST_FEATURES of its window in ``index``."""
    if len(index) != len(frame):
        raise ValueError(f"host_window_features: index covers {len(index)} rows, the frame has {len(frame)}")
    if chunk < 1:
        raise ValueError(f"host_window_features: chunk must be >= 1, got {chunk}")
    flow = _per_flow(frame)
    out = np.empty((len(frame), len(HOST_FEATURES)), dtype=np.float64)
    for start in range(0, len(frame), chunk):
        rows = np.arange(start, min(start + chunk, len(frame)), dtype=np.int64)
        out[rows] = _window_stats(flow, index.index_matrix(rows))
    return pd.DataFrame(out, columns=list(HOST_FEATURES), index=frame.index)


def with_host_features(frame: pd.DataFrame, window: int, group_by: str = "source",
                       columns: list[str] | None = None) -> tuple[pd.DataFrame, WindowIndex]:
    """``frame``'s ``columns`` (all when None) plus the HOST_FEATURES columns, and the window index used."""
    index = build_window_index(frame, window=window, group_by=group_by)
    hosts = host_window_features(frame, index)
    base = frame if columns is None else frame[[c for c in columns if c in frame.columns]]
    return pd.concat([base, hosts], axis=1), index


def window_inputs(frame: pd.DataFrame, window: int, group_by: str, host_features: bool
                  ) -> tuple[pd.DataFrame, WindowIndex]:
    """What a model's feature pipeline transforms, and its windows: ``frame`` with the HOST_FEATURES columns of
    its windows added when ``host_features`` (``TrainConfig.host_features``), else ``frame`` itself."""
    if host_features:
        return with_host_features(frame, window, group_by)
    return frame, build_window_index(frame, window=window, group_by=group_by)
