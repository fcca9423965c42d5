"""Analysts' verdicts as the model layer sees them: a lake view that can say which flows a verdict labels.

``VerdictSource`` is the protocol (``reports.verdict_lake.VerdictLabelledLake`` implements it: its flows carry the
verdicts' labels, false positive -> 0 / ``Benign``, confirmed -> 1 / the class); ``flows_with_verdicts`` marks
the rows of a frame read from such a view. Both refreshes use it: the supervised one weights the marked flows
(``model.refresh``), the novelty one keeps false positives in its baseline and pushes confirmed flows above
its alert level (``model.novelty_lifecycle.refresh_baseline``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

FLOW_KEY = ["batch_id", "source_file", "flow_index"]


@runtime_checkable
class VerdictSource(Protocol):
    """A lake view whose labels include analysts' verdicts and that can say which flows they label."""

    def verdict_keys(self) -> pd.DataFrame:
        """``batch_id``, ``source_file``, ``flow_index`` of every flow a verdict labels."""
        ...


def flows_with_verdicts(lake: object, frame: pd.DataFrame) -> np.ndarray | None:
    """Bool per row of ``frame`` (read from ``lake``, with its ``FLOW_KEY`` columns): labelled by a verdict (None
    when ``lake`` is not a ``VerdictSource``). The verdict's label is then ``frame``'s ``Label``."""
    if not isinstance(lake, VerdictSource):
        return None
    keys = lake.verdict_keys()[FLOW_KEY]
    if keys.empty:
        return np.zeros(len(frame), bool)
    return pd.MultiIndex.from_frame(frame[FLOW_KEY]).isin(pd.MultiIndex.from_frame(keys))
