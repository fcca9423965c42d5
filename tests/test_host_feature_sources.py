"""HOST_FEATURE_SOURCES: every host feature names the flow-schema columns it is computed from, and only those."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flowhawk.extractors.schema import FLOW_SCHEMA
from flowhawk.model.host_features import HOST_FEATURE_SOURCES, HOST_FEATURES, with_host_features


def test_every_host_feature_has_sources_in_the_flow_schema():
    assert set(HOST_FEATURE_SOURCES) == set(HOST_FEATURES)
    columns = set(FLOW_SCHEMA.names)
    for feature, sources in HOST_FEATURE_SOURCES.items():
        assert isinstance(sources, tuple), feature
        assert set(sources) <= columns, (feature, set(sources) - columns)


def _host_frame() -> pd.DataFrame:
    """Six flows of one host, every input varied so that each host feature has a non-trivial value."""
    return pd.DataFrame({
        "IPV4_SRC_ADDR": ["10.0.0.1"] * 6,
        "IPV4_DST_ADDR": ["10.0.0.2", "10.0.0.3", "10.0.0.2", "10.0.0.4", "10.0.0.5", "10.0.0.2"],
        "L4_SRC_PORT": [40000, 40001, 40002, 40003, 40004, 40005],
        "L4_DST_PORT": [80, 443, 22, 8080, 53, 80],
        "PROTOCOL": [6, 6, 6, 6, 17, 6],
        "TCP_FLAGS": [2, 20, 18, 27, 0, 2],  # SYN only, RST+ACK, SYN+ACK, full, (UDP), SYN only
        "IN_BYTES": [60, 120, 500, 4000, 80, 60],
        "OUT_BYTES": [0, 60, 300, 90000, 120, 0],
        "IN_PKTS": [1, 2, 5, 20, 1, 1],
        "OUT_PKTS": [0, 1, 3, 60, 1, 0],
        "FLOW_DURATION_MILLISECONDS": [0, 5, 40, 900, 1, 0],
        "FLOW_START_MILLISECONDS": [1_000, 2_000, 3_500, 4_000, 6_000, 9_000],
    })


_CHANGES = {  # one change per column, each moving every feature that reads the column
    "IPV4_DST_ADDR": lambda s: pd.Series(["10.0.0.9"] * len(s)),
    "L4_DST_PORT": lambda s: s * 0 + 1,
    "PROTOCOL": lambda s: s * 0 + 17,
    "TCP_FLAGS": lambda s: s * 0 + 16,
    "OUT_PKTS": lambda s: s + 5,
    "IN_BYTES": lambda s: s * np.array([1, 100, 1, 100, 1, 100]),
    "OUT_BYTES": lambda s: s * np.array([1, 100, 1, 100, 1, 100]) + 7,
    "FLOW_START_MILLISECONDS": lambda s: s * 3,  # same order, other rate
    "L4_SRC_PORT": lambda s: s + 7,
    "IN_PKTS": lambda s: s + 7,
    "FLOW_DURATION_MILLISECONDS": lambda s: s + 7,
}


@pytest.mark.parametrize("column", sorted(_CHANGES))
def test_sources_are_exactly_the_columns_that_move_each_feature(column):
    frame = _host_frame()
    before = with_host_features(frame, window=16)[0][list(HOST_FEATURES)]
    changed = frame.assign(**{column: _CHANGES[column](frame[column])})
    after = with_host_features(changed, window=16)[0][list(HOST_FEATURES)]
    moved = {f for f in HOST_FEATURES if not np.allclose(before[f], after[f], equal_nan=True)}
    assert moved == {f for f, sources in HOST_FEATURE_SOURCES.items() if column in sources}
