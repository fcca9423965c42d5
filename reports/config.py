"""What a report shows (``ReportConfig``) and the top-anomalies selection, shared by the report writers."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pyarrow as pa


@dataclass(frozen=True)
class ReportConfig:
    """How much a report shows. ``top_n``: rows of the top-anomalies table and of the top talker lists."""

    top_n: int = 25
    histogram_bins: int = 30
    time_buckets: int = 40

    def __post_init__(self) -> None:
        for name, low, high in (("top_n", 1, 10_000), ("histogram_bins", 2, 1_000), ("time_buckets", 2, 1_000)):
            value = getattr(self, name)
            if not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"ReportConfig.{name} must be an integer in [{low}, {high}], got {value!r}")


TOP_COLUMNS = ("FLOW_START_MILLISECONDS", "IPV4_SRC_ADDR", "L4_SRC_PORT", "IPV4_DST_ADDR", "L4_DST_PORT",
               "PROTOCOL", "APPLICATION_NAME", "IN_BYTES", "OUT_BYTES", "IN_PKTS", "OUT_PKTS", "score",
               "predicted_class", "Attack", "source_file", "flow_index", "reason")


def top_anomalies(table: pa.Table, n: int) -> pd.DataFrame:
    """The ``n`` highest-scoring anomalous flows (score descending, then flow order), ``TOP_COLUMNS`` only."""
    frame = table.select([*TOP_COLUMNS, "is_anomaly"]).to_pandas()
    top = frame[frame["is_anomaly"]].sort_values("score", ascending=False, kind="stable").head(n)
    return top.drop(columns="is_anomaly").reset_index(drop=True)


DEFAULT_REPORT = ReportConfig()
