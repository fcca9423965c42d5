"""Windows: order, grouping, left padding, masks, every flow gets a window; splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flowhawk.model.splits import capped_subsample, split_rows
from flowhawk.model.windows import build_window_index


def _frame(sources, starts=None) -> pd.DataFrame:
    data = {"IPV4_SRC_ADDR": sources, "IN_BYTES": np.arange(len(sources))}
    if starts is not None:
        data["FLOW_START_MILLISECONDS"] = starts
    return pd.DataFrame(data)


def test_source_windows_padding_and_mask_in_file_order():
    frame = _frame(["a", "b", "a", "a", "b", "a"])
    index = build_window_index(frame, window=3, group_by="source")
    rows = np.arange(6)
    assert index.index_matrix(rows).tolist() == [
        [-1, -1, 0], [-1, -1, 1], [-1, 0, 2], [0, 2, 3], [-1, 1, 4], [2, 3, 5]]
    features = np.arange(6, dtype=np.float32)[:, None] + 10.0
    x, mask = index.gather(features, rows)
    assert x.shape == (6, 3, 1) and x.dtype == np.float32 and mask.dtype == np.float32
    assert mask.tolist() == [[0, 0, 1], [0, 0, 1], [0, 1, 1], [1, 1, 1], [0, 1, 1], [1, 1, 1]]
    assert x[3, :, 0].tolist() == [10.0, 12.0, 13.0]
    assert x[2, :, 0].tolist() == [0.0, 10.0, 12.0]  # padding is zeros, data is right-aligned


def test_start_time_orders_windows_and_ties_keep_frame_order():
    frame = _frame(["a", "a", "a", "a"], starts=[300, 100, 200, 100])
    index = build_window_index(frame, window=4, group_by="source")
    # chronological: row1 (100), row3 (100, later in the frame), row2 (200), row0 (300)
    assert index.index_matrix(np.array([0])).tolist() == [[1, 3, 2, 0]]
    assert index.index_matrix(np.array([3])).tolist() == [[-1, -1, 1, 3]]


def test_global_grouping_mixes_sources():
    frame = _frame(["a", "b", "c"])
    index = build_window_index(frame, window=2, group_by="global")
    assert index.index_matrix(np.arange(3)).tolist() == [[-1, 0], [0, 1], [1, 2]]


def test_every_flow_gets_its_own_window_even_without_a_source():
    rng = np.random.default_rng(0)
    sources = rng.choice(["h1", "h2", "h3", None], size=500).tolist()
    frame = _frame(sources, starts=rng.integers(0, 50, size=500))
    index = build_window_index(frame, window=5, group_by="source")
    matrix = index.index_matrix(np.arange(500))
    assert (matrix[:, -1] == np.arange(500)).all()  # the window ends at the flow itself
    for row in np.flatnonzero(frame["IPV4_SRC_ADDR"].isna()):
        assert (matrix[row, :-1] == -1).all()  # no source: no borrowed context
    for row in range(500):
        members = matrix[row][matrix[row] >= 0]
        if frame.at[row, "IPV4_SRC_ADDR"] is not None:
            assert set(frame.loc[members, "IPV4_SRC_ADDR"]) == {frame.at[row, "IPV4_SRC_ADDR"]}
        starts = frame.loc[members, "FLOW_START_MILLISECONDS"].to_numpy()
        assert (np.diff(starts) >= 0).all()


def test_batches_cover_all_rows_in_order():
    frame = _frame(["a", "b"] * 7)
    index = build_window_index(frame, window=4)
    features = np.ones((14, 2), dtype=np.float32)
    seen = [chunk for chunk, x, mask in index.batches(features, np.arange(14), batch_size=5)]
    assert [len(c) for c in seen] == [5, 5, 4]
    assert np.concatenate(seen).tolist() == list(range(14))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="group_by"):
        build_window_index(_frame(["a"]), group_by="dest")
    with pytest.raises(ValueError, match="window"):
        build_window_index(_frame(["a"]), window=0)


def test_time_split_has_no_future_leakage_and_stratified_keeps_rare_classes():
    n = 1000
    rng = np.random.default_rng(1)
    frame = _frame(["a"] * n, starts=rng.permutation(n))
    y = (rng.random(n) < 0.02).astype(np.int64)
    y[:5] = -1  # unlabelled rows are in no part
    split = split_rows(frame, y, method="auto")
    assert split.method == "time"
    starts = frame["FLOW_START_MILLISECONDS"].to_numpy()
    assert starts[split.train].max() < starts[split.val].min() <= starts[split.val].max() < starts[split.test].min()
    assert sum(split.sizes().values()) == n - 5
    strat = split_rows(frame.drop(columns="FLOW_START_MILLISECONDS"), y, method="auto", seed=3)
    assert strat.method == "stratified"
    for part in (strat.train, strat.val, strat.test):
        assert (y[part] == 1).sum() >= 1
    assert not set(strat.train) & set(strat.test)
    assert split_rows(frame, y, method="stratified", seed=3).test.tolist() == strat.test.tolist()


def test_capped_subsample_keeps_rare_classes_whole():
    y = np.array([0] * 9000 + [1] * 3000 + [2] * 30)
    rows = np.arange(len(y)) + 100
    kept = capped_subsample(rows, y, max_rows=1000, seed=0)
    assert len(kept) == 1000 and set(kept) <= set(rows)
    counts = np.bincount(y[kept - 100])
    assert counts.tolist() == [485, 485, 30]
    assert capped_subsample(rows, y, max_rows=1000, seed=0).tolist() == kept.tolist()
    assert capped_subsample(rows, y, max_rows=10**6).tolist() == rows.tolist()
