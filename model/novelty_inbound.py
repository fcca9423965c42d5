"""Inbound floods: many sources at one destination, the one-sided test a reconstruction error cannot make.

A flood from spoofed sources gives one short flow per source. Each source's window holds that one ordinary-looking
flow, so the novelty network scores it as ordinary (benchmarks/results/novelty.md, "Spoofed-source floods": 0 % of
a 9,697-source SYN flood). Only the destination's side shows it. A destination-side network feature was tried and
reverted: a reconstruction error is two-sided, so the *few* sources a server hears while one attacker fills its
windows scored as novel too, and benign clients of a flooded server were flagged.

``InboundRule`` is one-sided and needs no labels. From the baseline it records the most distinct source addresses
any destination heard within one time bin (``bin_s`` seconds of ``FLOW_START_MILLISECONDS``; the whole frame is
one bin without timestamps). A scored flow is flagged when its destination's distinct sources within the flow's
bin exceed ``limit`` = max(``floor``, ``factor`` x that baseline maximum). On the baseline it flags nothing, by
construction; few sources is never evidence. A hit's tail probability is bounded by 1 / (baseline flows + 1):
no baseline flow's destination came near it. The explanation names ``DST_SOURCES`` observed vs the baseline
maximum. ``bin_s`` 10, ``factor`` 4, ``floor`` 64: a floor well above a small office's clients of one server
(the lab's quiet day: 7 sources at most), so only a crowd of sources counts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from flowhawk.model.windows import DESTINATION_COLUMN, SOURCE_COLUMN, time_key

INBOUND_FEATURE = "DST_SOURCES"
INBOUND_CLASS = "inbound-flood"  # the predicted class of a hit, flagged by the network or not (reports.combine)


@dataclass(frozen=True)
class InboundRule:
    """The baseline's most distinct sources at one destination per bin, and the rule's settings."""

    max_sources: int
    baseline_flows: int
    bin_s: float = 10.0
    factor: float = 4.0
    floor: int = 64

    def __post_init__(self) -> None:
        checks = (("max_sources", self.max_sources >= 0, ">= 0"), ("baseline_flows", self.baseline_flows >= 0,
                  ">= 0"), ("bin_s", 0 < self.bin_s <= 86_400, "in (0, 86400]"),
                  ("factor", 1 <= self.factor <= 1_000, "in [1, 1000]"), ("floor", self.floor >= 1, ">= 1"))
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"InboundRule.{name}: must be {allowed}, got {getattr(self, name)!r}")

    @property
    def limit(self) -> int:
        """A flow is a hit when its destination's distinct sources in its bin exceed this."""
        return max(self.floor, math.ceil(self.factor * self.max_sources))

    @property
    def tail_bound(self) -> float:
        """Upper bound of a hit's tail probability among the baseline's flows."""
        return 1.0 / (self.baseline_flows + 1)

    def hits(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(hit per row, distinct sources at the row's destination within its bin)."""
        counts = destination_sources(frame, self.bin_s)
        return counts > self.limit, counts

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> InboundRule:
        if not isinstance(values, dict) or set(values) - set(cls.__dataclass_fields__):
            raise ValueError(f"InboundRule: expected a dict of {sorted(cls.__dataclass_fields__)}, got {values!r}")
        return cls(**values)


def destination_sources(frame: pd.DataFrame, bin_s: float) -> np.ndarray:
    """Per row: distinct source addresses among the rows to its destination within its ``bin_s``-second bin (1 for
    a row without a destination or source: alone)."""
    n = len(frame)
    if not n or SOURCE_COLUMN not in frame.columns or DESTINATION_COLUMN not in frame.columns:
        return np.ones(n, dtype=np.int64)
    times = time_key(frame)
    bins = np.zeros(n, dtype=np.int64) if times is None else np.floor(times / (bin_s * 1000.0)).astype(np.int64)
    dst, _ = pd.factorize(frame[DESTINATION_COLUMN], use_na_sentinel=True)
    src, _ = pd.factorize(frame[SOURCE_COLUMN], use_na_sentinel=True)
    keys = pd.DataFrame({"dst": dst, "bin": bins, "src": src})
    known = (dst >= 0) & (src >= 0)
    counts = np.ones(n, dtype=np.int64)
    if known.any():
        counts[known] = keys[known].groupby(["dst", "bin"])["src"].transform("nunique").to_numpy(np.int64)
    return counts


def fit_inbound(frame: pd.DataFrame, bin_s: float = 10.0, factor: float = 4.0, floor: int = 64) -> InboundRule:
    """The rule for a baseline ``frame`` (see the module doc)."""
    counts = destination_sources(frame, bin_s)
    return InboundRule(max_sources=int(counts.max()) if len(counts) else 0, baseline_flows=len(frame),
                       bin_s=bin_s, factor=factor, floor=floor)


def inbound_entry(observed: int, rule: InboundRule) -> str:
    """The explanation entry (JSON text, the shape of ``model.novelty_explain``'s) of a hit."""
    return (f'{{"feature": "{INBOUND_FEATURE}", "observed": {float(observed)!r}, '
            f'"expected": {float(rule.max_sources)!r}, "share": null}}')
