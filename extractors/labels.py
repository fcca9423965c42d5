"""Ground-truth labels for our own captures: rules ``src_ip[,dst_ip],label,start_epoch,end_epoch`` -> Label/Attack.

The labels CSV has a header naming at least ``src_ip,label,start_epoch,end_epoch`` (``dst_ip`` optional, other
columns such as ``tool``/``exit_code`` ignored; the format of the lab capture's labels.csv). Epochs are seconds;
an empty start or end leaves that side open. Label text benign/BENIGN/normal -> Label 0, Attack 'Benign';
anything else -> Label 1, Attack = the label text.

Matching (``LabelConfig.match``):

* ``time``: a flow matches a rule when its source address equals src_ip (and its destination equals dst_ip,
  if given) and its span [FLOW_START, FLOW_END] overlaps [start - slack, end + slack]. Flows without timestamps
  (NF CSVs) match by address only.
* ``address``: address only, times ignored.
* ``auto`` (default): address only for addresses that exactly one rule names (a flow from such an address can
  only be that class, however long the tool kept sending), ``time`` for addresses shared by several rules.

When several rules match, the one whose window is nearest in time wins (0 when they overlap), then file order.
Unmatched flows keep whatever label the extractor gave them (none, for captures) and are counted 'unlabelled'.

Lab capture (../shared/data/lab, flows by nfstream with a 120 s active timeout; 26,369 flows, all from the 14
listed addresses): every flow's span overlaps its rule's [start, end] already with slack 0 (earliest first
packet 0.011 s after a start; slowloris' last packets 0.029 s after its end, but its flows begin inside the
window), so ``time`` with slack 0 and ``auto`` both label all 26,369 flows. The labels' end_epoch was taken after
each tool was stopped; ``auto`` keeps every flow labelled even when a tool outlives its recorded end.
"""

from __future__ import annotations

import csv
import ipaddress
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from flowhawk.common.config import config_from_mapping
from flowhawk.extractors.base import BadInputError
from flowhawk.extractors.schema import BENIGN

MATCH_MODES = ("auto", "time", "address")
REQUIRED = ("src_ip", "label", "start_epoch", "end_epoch")
BENIGN_WORDS = {"benign", "normal"}
UNLABELLED = "unlabelled"


@dataclass(frozen=True)
class LabelConfig:
    """``slack_s``: seconds added to both ends of a rule's window (0..86400); ``match``: auto, time or address."""

    slack_s: float = 1.0
    match: str = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.slack_s, (int, float)) or not 0 <= self.slack_s <= 86_400:
            raise ValueError(f"LabelConfig.slack_s must be a number in 0..86400 seconds, got {self.slack_s!r}")
        if self.match not in MATCH_MODES:
            raise ValueError(f"LabelConfig.match must be one of {', '.join(MATCH_MODES)}, got {self.match!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> LabelConfig:
        return config_from_mapping(cls, values)  # type: ignore[return-value]


@dataclass(frozen=True)
class Rule:
    src_ip: str
    dst_ip: str | None
    label: str
    start_s: float
    end_s: float

    @property
    def is_benign(self) -> bool:
        return self.label.strip().lower() in BENIGN_WORDS

    @property
    def attack(self) -> str:
        return BENIGN if self.is_benign else self.label.strip()


@dataclass
class LabelResult:
    """The labelled frame and flow counts per class (Attack name) plus 'unlabelled'."""

    frame: pd.DataFrame
    counts: dict[str, int]


def _address(text: str) -> str:
    return ipaddress.ip_address(text.strip()).compressed


def _epoch(text: str | None, default: float) -> float:
    text = (text or "").strip()
    if not text:
        return default
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"not a finite epoch: {text!r}")
    return value


def _rule(record: dict[str, str | None]) -> Rule:
    label = (record.get("label") or "").strip()
    if not label:
        raise ValueError("empty label")
    src = (record.get("src_ip") or "").strip()
    if not src:
        raise ValueError("empty src_ip")
    dst = (record.get("dst_ip") or "").strip()
    start, end = _epoch(record.get("start_epoch"), -math.inf), _epoch(record.get("end_epoch"), math.inf)
    if end < start:
        raise ValueError(f"end_epoch {end} is before start_epoch {start}")
    return Rule(_address(src), _address(dst) if dst else None, label, start, end)


class LabelRules:
    """Rules read from a labels CSV, applied to flow frames (see the module docstring)."""

    def __init__(self, rules: list[Rule], config: LabelConfig | None = None) -> None:
        self.rules = list(rules)
        self.config = config or LabelConfig()
        self._by_src: dict[str, list[int]] = {}
        for i, rule in enumerate(self.rules):
            self._by_src.setdefault(rule.src_ip, []).append(i)

    @classmethod
    def from_csv(cls, path: Path, config: LabelConfig | None = None) -> LabelRules:
        path = Path(path)
        try:
            with path.open(newline="", encoding="utf-8-sig") as fh:
                reader = csv.DictReader(fh)
                header = [h.strip() for h in reader.fieldnames or []]
                missing = [c for c in REQUIRED if c not in header]
                if missing:
                    raise BadInputError(path, f"labels CSV lacks column(s): {', '.join(missing)} "
                                              f"(need src_ip[,dst_ip],label,start_epoch,end_epoch)")
                reader.fieldnames = header
                rules = [cls._parse(path, reader.line_num, record) for record in reader if any(record.values())]
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise BadInputError(path, f"unreadable labels CSV: {exc}") from None
        if not rules:
            raise BadInputError(path, "labels CSV has no rules")
        return cls(rules, config)

    @staticmethod
    def _parse(path: Path, line: int, record: dict) -> Rule:
        if None in record:
            raise BadInputError(path, f"line {line}: more fields than the header")
        try:
            return _rule(record)
        except ValueError as exc:
            raise BadInputError(path, f"line {line}: {exc}") from None

    def apply(self, frame: pd.DataFrame) -> LabelResult:
        """Set Label/Attack on the flows a rule matches; count flows per class and the unmatched."""
        out = frame.copy()
        n = len(out)
        choice = np.full(n, -1, dtype=np.int64)
        if n and "IPV4_SRC_ADDR" in out.columns:
            src = _normalised(out["IPV4_SRC_ADDR"])
            dst = _normalised(out["IPV4_DST_ADDR"]) if "IPV4_DST_ADDR" in out.columns else None
            start, end = _span_seconds(out)
            for address, rows in pd.Series(np.arange(n)).groupby(src.to_numpy()).groups.items():
                if address in self._by_src:
                    positions = np.asarray(rows, dtype=np.int64)
                    choice[positions] = self._best(address, positions, dst, start, end)
        matched = choice >= 0
        attack = np.array([r.attack for r in self.rules] + [None], dtype=object)[choice]
        benign = np.array([r.is_benign for r in self.rules] + [False])[choice]
        label = out["Label"].astype("Int8") if "Label" in out.columns else pd.Series(pd.NA, index=out.index,
                                                                                      dtype="Int8")
        old_attack = out["Attack"].astype("string") if "Attack" in out.columns else pd.Series(
            pd.NA, index=out.index, dtype="string")
        out["Label"] = label.mask(pd.Series(matched, index=out.index),
                                  pd.Series(np.where(benign, 0, 1), index=out.index, dtype="Int8"))
        out["Attack"] = old_attack.mask(pd.Series(matched, index=out.index),
                                        pd.Series(attack, index=out.index, dtype="string"))
        counts = Counter(a for a in attack[matched])
        counts[UNLABELLED] = int(n - matched.sum())
        return LabelResult(out, dict(counts))

    def _best(self, address: str, rows: np.ndarray, dst: pd.Series | None, start: np.ndarray,
              end: np.ndarray) -> np.ndarray:
        """Index of the winning rule for each of ``rows`` (all from ``address``), -1 where none matches."""
        candidates = self._by_src[address]
        by_address = self.config.match == "address" or (self.config.match == "auto" and len(candidates) == 1)
        best = np.full(len(rows), -1, dtype=np.int64)
        best_distance = np.full(len(rows), np.inf)
        fs, fe = start[rows], end[rows]
        for i in candidates:
            rule = self.rules[i]
            ok = np.ones(len(rows), dtype=bool)
            if rule.dst_ip is not None:
                ok &= (dst is not None) and (dst.to_numpy()[rows] == rule.dst_ip)
            if by_address:
                distance = np.zeros(len(rows))
            else:
                with np.errstate(invalid="ignore"):
                    distance = np.fmax(np.fmax(rule.start_s - fe, fs - rule.end_s), 0.0)
                distance = np.where(np.isnan(fs), 0.0, distance)  # no timestamps: address only
                ok &= distance <= self.config.slack_s
            better = ok & (distance < best_distance)
            best[better], best_distance[better] = i, distance[better]
        return best


def _normalised(addresses: pd.Series) -> pd.Series:
    text = addresses.astype("string")
    cache = {}
    for value in text.dropna().unique():
        try:
            cache[value] = _address(value)
        except ValueError:
            cache[value] = value
    return text.map(cache).astype("object")


def _span_seconds(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Flow start/end in epoch seconds (NaN when the source has no timestamps; end = start when unknown)."""
    nan = np.full(len(frame), np.nan)
    if "FLOW_START_MILLISECONDS" not in frame.columns:
        return nan, nan
    start = pd.to_numeric(frame["FLOW_START_MILLISECONDS"], errors="coerce").astype("float64").to_numpy() / 1000
    if "FLOW_END_MILLISECONDS" not in frame.columns:
        return start, start
    end = pd.to_numeric(frame["FLOW_END_MILLISECONDS"], errors="coerce").astype("float64").to_numpy() / 1000
    return start, np.where(np.isnan(end), start, end)
