"""Per-group windows of the last T flows, gathered batch by batch from index arrays.

Every flow gets a window: the T most recent flows of its group ending at (and including) itself, ordered
oldest first and left-padded when the group has fewer earlier flows; ``mask`` marks real positions (1) and
padding (0). Flows are ordered by FLOW_START_MILLISECONDS when the frame has it (ties and missing times keep
frame order), else by frame order (= flow_index within a source file, as in the NF CSVs).

Groups: ``source`` (IPV4_SRC_ADDR; a flow without a source address is a group of its own) or ``global``
(one sequence). No (N, T) array is ever built for the whole frame: ``WindowIndex`` keeps three int arrays of
length N (sorted order, rank in that order, depth in the group) and ``gather`` builds (B, T, F) on demand.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from flowhawk.extractors.schema import FLOW_START

GROUP_BY = ("source", "global")
TIME_COLUMN = FLOW_START
SOURCE_COLUMN = "IPV4_SRC_ADDR"
DESTINATION_COLUMN = "IPV4_DST_ADDR"


@dataclass(frozen=True)
class WindowIndex:
    """Index arrays for windows over one frame (positions are 0-based row positions, not labels)."""

    order: np.ndarray  # (N,) row positions sorted by (group, time, frame order)
    rank: np.ndarray   # (N,) position of each row within ``order``
    depth: np.ndarray  # (N,) number of earlier flows in the row's group
    window: int

    def __len__(self) -> int:
        return len(self.order)

    def index_matrix(self, rows: np.ndarray) -> np.ndarray:
        """(B, T) int64 row positions of each window, oldest first, -1 for padding; last column = ``rows``."""
        rows = np.asarray(rows, dtype=np.int64)
        offsets = np.arange(-(self.window - 1), 1, dtype=np.int64)
        positions = self.rank[rows][:, None] + offsets[None, :]
        valid = offsets[None, :] >= -self.depth[rows][:, None]
        return np.where(valid, self.order[np.maximum(positions, 0)], -1)

    def gather(self, features: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Windows for ``rows``: x (B, T, F) float32 (zeros at padding) and mask (B, T) float32."""
        if len(features) != len(self.order):
            raise ValueError(f"gather: features have {len(features)} rows, the index {len(self.order)}")
        index = self.index_matrix(rows)
        valid = index >= 0
        x = features[np.where(valid, index, 0)]
        x[~valid] = 0.0
        return x.astype(np.float32, copy=False), valid.astype(np.float32)

    def batches(self, features: np.ndarray, rows: np.ndarray, batch_size: int
                ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield (rows_batch, x, mask) over ``rows`` in order, ``batch_size`` at a time."""
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        rows = np.asarray(rows, dtype=np.int64)
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            x, mask = self.gather(features, chunk)
            yield chunk, x, mask


def group_codes(frame: pd.DataFrame, group_by: str) -> np.ndarray:
    """Integer group of every row; rows without a source address each get a group of their own."""
    if group_by not in GROUP_BY:
        raise ValueError(f"group_by: must be one of {GROUP_BY}, got {group_by!r}")
    n = len(frame)
    if group_by == "global":
        return np.zeros(n, dtype=np.int64)
    if SOURCE_COLUMN not in frame.columns:
        raise ValueError(f"group_by='source' needs column {SOURCE_COLUMN}; use group_by='global'")
    codes, uniques = pd.factorize(frame[SOURCE_COLUMN], use_na_sentinel=True)
    codes = codes.astype(np.int64)
    missing = codes < 0
    codes[missing] = len(uniques) + np.arange(int(missing.sum()))
    return codes


def time_key(frame: pd.DataFrame) -> np.ndarray | None:
    """Flow start times as float64 (missing ones take the previous known time in frame order); None if absent."""
    if TIME_COLUMN not in frame.columns:
        return None
    times = pd.to_numeric(frame[TIME_COLUMN], errors="coerce").astype("float64")
    if not times.notna().any():
        return None
    return times.ffill().bfill().to_numpy(dtype=np.float64)


def build_window_index(frame: pd.DataFrame, window: int = 16, group_by: str = "source") -> WindowIndex:
    """Index the windows of every row of ``frame`` (see module doc for order and grouping)."""
    if not (isinstance(window, int) and window >= 1):
        raise ValueError(f"window: must be an integer >= 1, got {window!r}")
    groups = group_codes(frame, group_by)
    n = len(groups)
    times = time_key(frame)
    keys = (groups,) if times is None else (np.arange(n), times, groups)
    order = np.lexsort(keys).astype(np.int64)  # lexsort is stable: ties keep frame order
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n, dtype=np.int64)
    sorted_groups = groups[order]
    starts = np.ones(n, dtype=bool)
    starts[1:] = sorted_groups[1:] != sorted_groups[:-1]
    run_start = np.maximum.accumulate(np.where(starts, np.arange(n), 0)) if n else np.zeros(0, np.int64)
    depth = np.empty(n, dtype=np.int64)
    depth[order] = np.arange(n, dtype=np.int64) - run_start
    return WindowIndex(order=order, rank=rank, depth=depth, window=window)


def _earlier(context: pd.DataFrame, frame: pd.DataFrame) -> np.ndarray:
    """Per row of ``context``: its source host is in ``frame`` and (with times in both) it starts no later than
    that host's first flow in ``frame``."""
    hosts = context[SOURCE_COLUMN]
    keep = hosts.notna().to_numpy() & hosts.isin(frame[SOURCE_COLUMN].dropna().unique()).to_numpy()
    times, frame_times = time_key(context), time_key(frame)
    if times is None or frame_times is None:
        return keep
    first = pd.Series(frame_times).groupby(frame[SOURCE_COLUMN].to_numpy()).min()
    with np.errstate(invalid="ignore"):
        return keep & (times <= hosts.map(first).to_numpy(dtype=np.float64, na_value=np.nan))


def with_history(frame: pd.DataFrame, context: pd.DataFrame | None, depth: int) -> tuple[pd.DataFrame, int]:
    """(``context``'s flows that can reach a window of ``frame`` followed by ``frame``, row position of ``frame``'s
    first row in it). Kept from ``context`` (e.g. the hosts' flows of earlier batches): flows of source hosts
    ``frame`` has that start no later than the host's first flow in ``frame`` (so a batch's own windows stay as
    they are past its first flows, also when captures overlap in time), each host's last ``depth`` in window
    order (time, then frame order): what one continuous frame would use."""
    if context is None or len(context) == 0 or len(frame) == 0 or depth <= 0:
        return frame, 0
    if SOURCE_COLUMN not in context.columns or SOURCE_COLUMN not in frame.columns:
        raise ValueError(f"context: scoring with context needs column {SOURCE_COLUMN} in both frames")
    context = context[_earlier(context, frame)]
    if not len(context):
        return frame, 0
    groups = group_codes(context, "source")
    rank = build_window_index(context, window=1).depth
    context = context[rank >= np.bincount(groups)[groups] - depth]
    return pd.concat([context, frame], ignore_index=True), len(context)
