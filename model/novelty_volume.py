"""Volume beyond the baseline: one flow carrying far more than any flow of its protocol did, the one-sided test a
mean reconstruction error dilutes.

hping3's ICMP flood is one flow of 5,000 echoes. Its packet count is only ~2x the largest benign download of the
lab's quiet day, so in the network's standardised counters it is no outlier, and a mean over every feature's
error left it under the threshold for 2 of 3 baselines (benchmarks/results/analyst.md). What is plain is the
conditional fact: the quiet day's ICMP flows carried at most 50 packets.

``VolumeRule`` needs no labels. From the baseline it records, per IP protocol (``PROTOCOL``), the largest value
of each counter of ``VOLUME_COUNTERS`` any flow had. A scored flow is flagged when a counter exceeds ``factor``
times its protocol's baseline maximum and that counter's floor (``packet_floor`` for packet counts, ``byte_floor``
for byte counts; a protocol the baseline never carried has maximum 0, so only the floor applies). On the baseline
it flags nothing, by construction; less is never evidence. A hit's tail probability is bounded by 1 / (baseline
flows + 1), as the inbound-flood rule's. The explanation names the counter furthest past its limit, observed vs
its protocol's baseline maximum. ``factor`` 10, floors 100 packets and 100,000 bytes: an order of magnitude past
anything the protocol did, and never a handful of packets (lab quiet day: ICMP at most 50 packets, UDP 2, TCP
2,941 and 4.4 MB).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from flowhawk.model.features import column_floats

VOLUME_COUNTERS: tuple[str, ...] = ("IN_PKTS", "OUT_PKTS", "IN_BYTES", "OUT_BYTES")
PROTOCOL = "PROTOCOL"


@dataclass(frozen=True)
class VolumeRule:
    """Per protocol (its number as text, JSON keys) the baseline's largest value of each VOLUME_COUNTERS column
    (in that order), and the rule's settings."""

    maxima: dict[str, tuple[float, ...]] = field(default_factory=dict)
    baseline_flows: int = 0
    factor: float = 10.0
    packet_floor: int = 100
    byte_floor: int = 100_000

    def __post_init__(self) -> None:
        checks = (("baseline_flows", self.baseline_flows >= 0, ">= 0"),
                  ("factor", 1 <= self.factor <= 1_000, "in [1, 1000]"),
                  ("packet_floor", self.packet_floor >= 1, ">= 1"), ("byte_floor", self.byte_floor >= 1, ">= 1"),
                  ("maxima", all(len(v) == len(VOLUME_COUNTERS) and min(v) >= 0 for v in self.maxima.values()),
                   f"a dict of {len(VOLUME_COUNTERS)} non-negative maxima per protocol"))
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"VolumeRule.{name}: must be {allowed}, got {getattr(self, name)!r}")

    @property
    def tail_bound(self) -> float:
        """Upper bound of a hit's tail probability among the baseline's flows."""
        return 1.0 / (self.baseline_flows + 1)

    def hits(self, frame: pd.DataFrame) -> tuple[np.ndarray, list[str | None]]:
        """(hit per row, per row the explanation entry of a hit, JSON text in ``model.novelty_explain``'s shape:
        the counter furthest past its limit, observed vs its protocol's baseline maximum; None for other rows).
        One counter at a time: a few (N,) arrays, never (N, counters) ones."""
        n = len(frame)
        protocols = column_floats(frame, PROTOCOL)
        known = [(protocols == float(key), values) for key, values in self.maxima.items()]
        worst, worst_ratio = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.float64)
        for c, name in enumerate(VOLUME_COUNTERS):
            maxima = np.zeros(n, dtype=np.float64)
            for rows, values in known:
                maxima[rows] = values[c]
            floor = self.packet_floor if name.endswith("PKTS") else self.byte_floor
            ratio = np.nan_to_num(column_floats(frame, name) / np.maximum(floor, self.factor * maxima), nan=0.0)
            better = ratio > worst_ratio
            worst[better], worst_ratio[better] = c, ratio[better]
        hit = worst_ratio > 1.0
        entries: list[str | None] = [None] * n
        rows = np.flatnonzero(hit)
        if rows.size:
            sub, which = frame.iloc[rows], worst[rows]
            observed = np.column_stack([column_floats(sub, c) for c in VOLUME_COUNTERS])[np.arange(rows.size), which]
            keys = _protocol_keys(sub)
            empty = (0.0,) * len(VOLUME_COUNTERS)
            for j, i in enumerate(rows.tolist()):
                c = int(which[j])
                entries[i] = (f'{{"feature": {json.dumps(VOLUME_COUNTERS[c])}, "observed": {float(observed[j])!r}, '
                              f'"expected": {float(self.maxima.get(keys[j], empty)[c])!r}, "share": null}}')
        return hit, entries

    def to_dict(self) -> dict[str, Any]:
        return {"maxima": {k: list(v) for k, v in self.maxima.items()}, "baseline_flows": self.baseline_flows,
                "factor": self.factor, "packet_floor": self.packet_floor, "byte_floor": self.byte_floor}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> VolumeRule:
        if not isinstance(values, dict) or set(values) - set(cls.__dataclass_fields__) \
                or not isinstance(values.get("maxima", {}), dict):
            raise ValueError(f"VolumeRule: expected a dict of {sorted(cls.__dataclass_fields__)}, got {values!r}")
        maxima = {str(k): tuple(float(x) for x in v) for k, v in values.get("maxima", {}).items()}
        return cls(**{**values, "maxima": maxima})


def _protocol_keys(frame: pd.DataFrame) -> np.ndarray:
    """Per row: its protocol number as text ('' when missing)."""
    values = column_floats(frame, PROTOCOL)
    keys = np.full(len(values), "", dtype=object)
    known = np.isfinite(values)
    keys[known] = values[known].astype(np.int64).astype(str)
    return keys


def fit_volume(frame: pd.DataFrame, factor: float = 10.0, packet_floor: int = 100, byte_floor: int = 100_000
               ) -> VolumeRule:
    """The rule for a baseline ``frame`` (see the module doc)."""
    protocols = column_floats(frame, PROTOCOL)
    known = np.isfinite(protocols)
    counters = pd.DataFrame({c: column_floats(frame, c)[known] for c in VOLUME_COUNTERS}).fillna(0.0)
    grouped = counters.groupby(protocols[known].astype(np.int64)).max()
    maxima = {str(int(k)): tuple(float(x) for x in row) for k, row in grouped.iterrows()}
    return VolumeRule(maxima=maxima, baseline_flows=len(frame), factor=factor, packet_floor=packet_floor,
                      byte_floor=byte_floor)
