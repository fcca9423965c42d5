"""Verdicts as labels: a read-only view of the lake whose flows carry the labels the analysts' verdicts give.

``VerdictLabelledLake(root)`` is a ``lake.store.Lake`` whose ``read_table`` (and so ``read_flows`` and every
model function that reads through it, e.g. ``model.refresh.refresh_model``) replaces ``Label`` / ``Attack`` by
``reports.verdicts.verdict_labels`` where a verdict covers the flow (false positive -> benign; confirmed -> the
class given, else the predicted one). Flows without a verdict keep their own labels. Nothing on disk changes:
the flows stay as ingested, the verdicts stay append-only. ``flowhawk verdict refresh`` runs the usual refresh
(``refresh_model``, same promotion guard) on that view, with the batches verdicts label as its new batches.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
from flowhawk.extractors.schema import FLOW_SCHEMA
from flowhawk.lake.store import Lake
from flowhawk.reports.verdicts import verdict_labels

_KEY = ["batch_id", "source_file", "flow_index"]


class VerdictLabelledLake(Lake):
    """The lake as training code sees it once verdicts are applied (read-only use)."""

    def __init__(self, root: Path | str) -> None:
        super().__init__(root)
        labels = verdict_labels(self.root)
        self.verdict_labels = labels.set_index(_KEY)[["Label", "Attack"]] if len(labels) else None

    def read_table(self, batches: list[str] | None = None, columns: list[str] | None = None) -> pa.Table:
        if self.verdict_labels is None or (columns is not None and not {"Label", "Attack"} & set(columns)):
            return super().read_table(batches, columns)
        wanted = list(columns) if columns is not None else list(FLOW_SCHEMA.names)
        extra = [c for c in _KEY if c not in wanted]
        table = super().read_table(batches, wanted + extra)
        frame = table.to_pandas()
        hit = self.verdict_labels.reindex(pd.MultiIndex.from_frame(frame[_KEY]))
        covered = hit["Label"].notna().to_numpy()
        if covered.any():
            if "Label" in frame.columns:
                frame.loc[covered, "Label"] = hit["Label"].to_numpy()[covered]
            if "Attack" in frame.columns:
                frame.loc[covered, "Attack"] = hit["Attack"].to_numpy()[covered]
        schema = pa.schema([FLOW_SCHEMA.field(c) for c in wanted])
        return pa.Table.from_pandas(frame[wanted], schema=schema, preserve_index=False)

    def verdict_batches(self) -> list[str]:
        """Lake batches holding at least one flow a verdict labels."""
        if self.verdict_labels is None:
            return []
        found = set(self.verdict_labels.index.get_level_values("batch_id"))
        return [b for b in self.batches() if b in found]
