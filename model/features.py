"""Flow features for the detector: a fit/transform pipeline fitted on training flows, saved as JSON.

One flow row becomes one float32 vector:

- numeric NF fields: signed log1p for counters (bytes, packets, durations, rates, windows, IATs; linear for
  TTLs and the like), clipped to the fitted [q, 1-q] quantiles (widened by 5 %), NaN -> fitted median,
  standardised; a ``<col>:missing`` indicator only when the column had missing values in training; with
  ``top_values`` > 0, also a one-hot of each counter's most frequent exact values (``<col>=<value>``, same
  floor): 40- and 44-byte packets sit 0.06 standard deviations apart on the log scale, and trees split on
  such exact values where a network has to learn very large weights;
- categories (PROTOCOL, L7_PROTO master id; ICMP/DNS types in ``full``): one-hot of the fitted most frequent
  values (each seen in >= ``min_fraction`` of training rows) plus ``other``;
- ports: the port scaled to [0, 1] (-1 when invalid: source-port ranges differ between OSes and tools),
  well-known / registered / ephemeral buckets, one-hot of the fitted most common ports (same floor), and
  ``<col>:log_freq``, how often the exact port occurs in training (log1p(count) / log1p(rows); ports seen
  fewer than ``PORT_FREQ_MIN`` times count 0): a scanner or flood tool that pins its source port stands out
  from random ephemeral ports, which a [0, 1] scale cannot resolve (at most ``PORT_FREQ_MAX`` ports kept);
- TCP flag fields: their 8 bits.

``extra_numeric`` names further numeric columns the caller adds to the frame (e.g. the host-behaviour window
features of ``model.host_features``); they are fitted and transformed like counters. ``clip_margin`` widens the
fitted clip range by that fraction of its span on each side (0.05; a novelty model uses more, so values far
outside the baseline stay far, yet finite).

Addresses are identities, not measurements: they are used for grouping windows, never as features. Absolute
timestamps and DNS query ids are excluded too. Columns entirely null (or constant) in training are dropped
and listed in ``dropped``; a column dropped as constant keeps, in ``constants``, its training median and the raw
range it spanned (a counter constant but for a 0.2 % tail is dropped too, its tail counts as seen), so that a later
value outside that range can still be named as never seen in training (``model.novelty_explain``). NaN, inf and
absurd values never reach the network: everything is clipped.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from flowhawk.extractors.schema import COLUMNS, NF_V1_FEATURES

log = logging.getLogger(__name__)

FEATURE_SETS = ("nf-v1", "full")
FORMAT = "flowhawk.features"
VERSION = 1
FLAG_COLUMNS = ("TCP_FLAGS", "CLIENT_TCP_FLAGS", "SERVER_TCP_FLAGS")
PORT_COLUMNS = ("L4_SRC_PORT", "L4_DST_PORT")
CATEGORY_COLUMNS = ("PROTOCOL", "L7_PROTO", "ICMP_TYPE", "ICMP_IPV4_TYPE", "DNS_QUERY_TYPE")
LINEAR_COLUMNS = ("MIN_TTL", "MAX_TTL", "IP_VERSION", "FTP_COMMAND_RET_CODE")
EXCLUDED = ("IPV4_SRC_ADDR", "IPV4_DST_ADDR", "FLOW_START_MILLISECONDS", "FLOW_END_MILLISECONDS",
            "DNS_QUERY_ID")
PORT_BUCKETS = (("well_known", 0, 1023), ("registered", 1024, 49151), ("ephemeral", 49152, 65535))
_MARGIN = 0.05
PORT_FREQ_MIN = 5
PORT_FREQ_MAX = 4096


def feature_columns(feature_set: str) -> list[str]:
    """Schema columns a feature set draws from (before dropping absent/null ones)."""
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"feature_set: must be one of {FEATURE_SETS}, got {feature_set!r}")
    if feature_set == "nf-v1":
        return [c for c in NF_V1_FEATURES if c not in EXCLUDED]
    usable = ("nf-v1", "nf-v2", "nf-v3", "extra")
    return [c.name for c in COLUMNS if c.group in usable and c.name not in EXCLUDED
            and (pa.types.is_integer(c.type) or pa.types.is_floating(c.type))]


def _kind(column: str) -> str:
    if column in FLAG_COLUMNS:
        return "flags"
    if column in PORT_COLUMNS:
        return "port"
    if column in CATEGORY_COLUMNS:
        return "category"
    return "numeric"


def column_floats(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Column as float64 with NaN for null/unparseable; all NaN when the column is absent."""
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    series = pd.to_numeric(frame[column], errors="coerce")
    return series.to_numpy(dtype=np.float64, na_value=np.nan)


def signed_log1p(values: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.sign(values) * np.log1p(np.abs(values))


def _category_codes(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Integer category codes; L7_PROTO keeps its master id; NaN/inf/unparseable -> -1."""
    values = column_floats(frame, column)
    values = np.where(np.isfinite(values), np.floor(values), -1.0)
    return np.clip(values, -1, 2**31 - 1).astype(np.int64)


def _top_values(codes: np.ndarray, k: int, min_fraction: float = 0.0) -> list[Any]:
    """The ``k`` most frequent values (ties by value) seen in at least ``min_fraction`` of rows."""
    if k <= 0 or codes.size == 0:
        return []
    values, counts = np.unique(codes, return_counts=True)
    order = np.lexsort((values, -counts))[:k]
    order = order[counts[order] >= max(1.0, min_fraction * codes.size)]
    return [v.item() for v in values[order]]  # int for integer codes, float for raw measurements


class FeaturePipeline:
    """Fit on training flows, transform any flows to float32 (N, n_features); ``to_json``/``from_json``."""

    def __init__(self, feature_set: str = "nf-v1", top_categories: int = 12, top_ports: int = 8,
                 clip_quantile: float = 0.001, min_fraction: float = 0.001, top_values: int = 0,
                 extra_numeric: tuple[str, ...] | list[str] = (), clip_margin: float = _MARGIN) -> None:
        if feature_set not in FEATURE_SETS:
            raise ValueError(f"FeaturePipeline.feature_set: must be one of {FEATURE_SETS}, got {feature_set!r}")
        for name, value in (("top_categories", top_categories), ("top_ports", top_ports),
                            ("top_values", top_values)):
            if not (isinstance(value, int) and 0 <= value <= 1000):
                raise ValueError(f"FeaturePipeline.{name}: must be an integer in [0, 1000], got {value!r}")
        if not (isinstance(clip_quantile, (int, float)) and 0 <= clip_quantile < 0.5):
            raise ValueError(f"FeaturePipeline.clip_quantile: must be in [0, 0.5), got {clip_quantile!r}")
        if not (isinstance(min_fraction, (int, float)) and 0 <= min_fraction < 1):
            raise ValueError(f"FeaturePipeline.min_fraction: must be in [0, 1), got {min_fraction!r}")
        if not (isinstance(clip_margin, (int, float)) and 0 <= clip_margin <= 100):
            raise ValueError(f"FeaturePipeline.clip_margin: must be in [0, 100], got {clip_margin!r}")
        extra = tuple(extra_numeric)
        if not all(isinstance(c, str) and c for c in extra) or len(set(extra)) != len(extra):
            raise ValueError(f"FeaturePipeline.extra_numeric: must be distinct column names, got {extra_numeric!r}")
        self.min_fraction = float(min_fraction)
        self.clip_margin = float(clip_margin)
        self.extra_numeric = extra
        self.feature_set = feature_set
        self.top_categories = top_categories
        self.top_ports = top_ports
        self.top_values = top_values
        self.clip_quantile = float(clip_quantile)
        self.specs: list[dict[str, Any]] = []
        self.dropped: dict[str, str] = {}
        self.constants: dict[str, dict[str, float]] = {}  # column -> {"value": median, "lo": min, "hi": max}
        self.fitted = False

    # ----------------------------------------------------------------- fit
    def fit(self, frame: pd.DataFrame) -> FeaturePipeline:
        """Fit on ``frame`` (training rows only). Raises ValueError when nothing usable remains."""
        if len(frame) == 0:
            raise ValueError("FeaturePipeline.fit: empty training frame")
        self.specs, self.dropped, self.constants = [], {}, {}
        for column in feature_columns(self.feature_set) + list(self.extra_numeric):
            if column not in frame.columns:
                self.dropped[column] = "absent"
                continue
            raw = column_floats(frame, column)
            if not np.isfinite(raw).any():
                self.dropped[column] = "entirely null"
                continue
            spec = getattr(self, f"_fit_{_kind(column)}")(column, frame, raw)
            if spec is None:
                self.dropped[column] = "constant"
                seen = raw[np.isfinite(raw)]
                self.constants[column] = {"value": float(np.median(seen)), "lo": float(seen.min()),
                                          "hi": float(seen.max())}
            else:
                self.specs.append(spec)
        if not self.specs:
            raise ValueError(f"FeaturePipeline.fit: no usable feature columns (dropped: {self.dropped})")
        self.fitted = True
        return self

    def _fit_numeric(self, column: str, frame: pd.DataFrame, raw: np.ndarray) -> dict[str, Any] | None:
        use_log = column not in LINEAR_COLUMNS
        values = signed_log1p(raw) if use_log else raw
        finite = values[np.isfinite(values)]
        lo, hi = np.quantile(finite, [self.clip_quantile, 1.0 - self.clip_quantile])
        span = hi - lo
        lo, hi = float(lo - self.clip_margin * span), float(hi + self.clip_margin * span)
        clipped = np.clip(finite, lo, hi)
        std = float(clipped.std())
        if std <= 1e-12:
            return None
        missing = bool(np.isnan(raw).any())
        spec = {"name": column, "kind": "numeric", "log": use_log, "lo": lo, "hi": hi,
                "median": float(np.median(clipped)), "mean": float(clipped.mean()), "std": std,
                "missing_indicator": missing}
        if self.top_values and use_log:
            exact = raw[np.isfinite(raw)]
            spec["values"] = [float(v) for v in _top_values(exact, self.top_values, self.min_fraction)]
        return spec

    def _fit_category(self, column: str, frame: pd.DataFrame, raw: np.ndarray) -> dict[str, Any] | None:
        codes = _category_codes(frame, column)
        values = _top_values(codes, self.top_categories, self.min_fraction)
        if len(np.unique(codes)) < 2:
            return None
        return {"name": column, "kind": "category", "values": values}

    def _fit_port(self, column: str, frame: pd.DataFrame, raw: np.ndarray) -> dict[str, Any] | None:
        valid = raw[np.isfinite(raw) & (raw >= 0) & (raw <= 65535)].astype(np.int64)
        if len(np.unique(valid)) < 2:
            return None
        ports, counts = np.unique(valid, return_counts=True)
        keep = np.lexsort((ports, -counts))[:PORT_FREQ_MAX]
        keep = keep[counts[keep] >= PORT_FREQ_MIN]
        return {"name": column, "kind": "port", "values": _top_values(valid, self.top_ports, self.min_fraction),
                "freq_rows": len(raw), "freq_ports": [int(v) for v in ports[keep]],
                "freq_counts": [int(c) for c in counts[keep]]}

    def _fit_flags(self, column: str, frame: pd.DataFrame, raw: np.ndarray) -> dict[str, Any] | None:
        finite = raw[np.isfinite(raw)]
        if len(np.unique(finite)) < 2:
            return None
        return {"name": column, "kind": "flags", "missing_indicator": bool(np.isnan(raw).any())}

    # ----------------------------------------------------------- transform
    @property
    def feature_names(self) -> list[str]:
        self._require_fitted()
        names: list[str] = []
        for spec in self.specs:
            names += _spec_names(spec)
        return names

    def feature_specs(self) -> list[tuple[str, dict[str, Any], int]]:
        """Per feature position: (feature name, the spec of its column, offset within that spec's block)."""
        self._require_fitted()
        return [(name, spec, j) for spec in self.specs for j, name in enumerate(_spec_names(spec))]

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Rows of ``frame`` -> float32 (N, n_features), finite everywhere. Absent columns count as null."""
        self._require_fitted()
        absent = [s["name"] for s in self.specs if s["name"] not in frame.columns]
        if absent and len(frame):
            log.warning("features: column(s) %s absent from the frame; treated as missing", absent)
        out = np.zeros((len(frame), self.n_features), dtype=np.float32)
        col = 0
        for spec in self.specs:
            width = len(_spec_names(spec))
            block = out[:, col:col + width]
            if spec["kind"] == "category":
                _one_hot(block, _category_codes(frame, spec["name"]), spec["values"])
            else:
                raw = column_floats(frame, spec["name"])
                {"numeric": _numeric, "port": _port, "flags": _flags}[spec["kind"]](block, raw, spec)
            col += width
        return out

    def fit_transform(self, frame: pd.DataFrame) -> np.ndarray:
        return self.fit(frame).transform(frame)

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError("FeaturePipeline: call fit() (or from_json) before transform")

    # ---------------------------------------------------------------- JSON
    def to_json(self) -> str:
        self._require_fitted()
        return json.dumps({
            "format": FORMAT, "version": VERSION, "feature_set": self.feature_set,
            "params": {"top_categories": self.top_categories, "top_ports": self.top_ports,
                       "clip_quantile": self.clip_quantile, "min_fraction": self.min_fraction,
                       "top_values": self.top_values, "extra_numeric": list(self.extra_numeric),
                       "clip_margin": self.clip_margin},
            "specs": self.specs, "dropped": self.dropped, "constants": self.constants,
            "feature_names": self.feature_names,
        }, indent=1, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> FeaturePipeline:
        """Inverse of ``to_json``; ValueError when the document is not a flowhawk feature pipeline."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"FeaturePipeline.from_json: not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
            raise ValueError(f"FeaturePipeline.from_json: not a {FORMAT} v{VERSION} document")
        pipeline = cls(data["feature_set"], **data["params"])
        pipeline.specs = data["specs"]
        pipeline.dropped = data.get("dropped", {})
        pipeline.constants = data.get("constants", {})  # absent in pipelines saved before it was recorded
        pipeline.fitted = True
        if pipeline.feature_names != data["feature_names"]:
            raise ValueError("FeaturePipeline.from_json: feature_names do not match the specs")
        return pipeline


def _spec_names(spec: dict[str, Any]) -> list[str]:
    name, kind = spec["name"], spec["kind"]
    if kind == "numeric":
        return ([name] + ([f"{name}:missing"] if spec["missing_indicator"] else [])
                + [f"{name}={_exact(v)}" for v in spec.get("values", [])])
    if kind == "category":
        return [f"{name}={v}" for v in spec["values"]] + [f"{name}=other"]
    if kind == "port":
        return ([f"{name}:value"] + [f"{name}:{b[0]}" for b in PORT_BUCKETS]
                + [f"{name}={v}" for v in spec["values"]] + ([f"{name}:log_freq"] if "freq_ports" in spec else []))
    return [f"{name}:bit{i}" for i in range(8)] + ([f"{name}:missing"] if spec["missing_indicator"] else [])


def _exact(value: float) -> str:
    """A value's full text for a feature name (``:g`` would give 4292873 and 4292874 the same name)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _numeric(block: np.ndarray, raw: np.ndarray, spec: dict[str, Any]) -> None:
    values = signed_log1p(raw) if spec["log"] else raw.copy()
    missing = np.isnan(values)
    values = np.clip(values, spec["lo"], spec["hi"])  # +-inf clip to the bounds
    values[missing] = spec["median"]
    block[:, 0] = (values - spec["mean"]) / spec["std"]
    if spec["missing_indicator"]:
        block[:, 1] = missing
    first = 2 if spec["missing_indicator"] else 1
    for j, value in enumerate(spec.get("values", [])):  # absent in pipelines saved before top_values
        block[:, first + j] = raw == value


def _one_hot(block: np.ndarray, codes: np.ndarray, values: list[int]) -> None:
    lookup = {v: i for i, v in enumerate(values)}
    other = len(values)
    uniques, inverse = np.unique(codes, return_inverse=True)
    positions = np.array([lookup.get(int(u), other) for u in uniques], dtype=np.int64)[inverse]
    block[np.arange(len(codes)), positions] = 1.0


def _port(block: np.ndarray, raw: np.ndarray, spec: dict[str, Any]) -> None:
    valid = np.isfinite(raw) & (raw >= 0) & (raw <= 65535)
    ports = np.where(valid, raw, -1).astype(np.int64)
    block[:, 0] = np.where(valid, ports / 65535.0, -1.0)  # tools and OSes pick source ports from different ranges
    for i, (_, lo, hi) in enumerate(PORT_BUCKETS, start=1):
        block[:, i] = (ports >= lo) & (ports <= hi)
    for j, port in enumerate(spec["values"]):
        block[:, 1 + len(PORT_BUCKETS) + j] = ports == port
    if "freq_ports" in spec:  # pipelines saved before the frequency feature have no such column
        table = np.zeros(65536, dtype=np.float64)
        table[np.asarray(spec["freq_ports"], dtype=np.int64)] = spec["freq_counts"]
        block[:, -1] = np.where(valid, np.log1p(table[np.clip(ports, 0, 65535)]) / np.log1p(spec["freq_rows"]), 0.0)


def _flags(block: np.ndarray, raw: np.ndarray, spec: dict[str, Any]) -> None:
    valid = np.isfinite(raw) & (raw >= 0)
    bits = np.where(valid, np.minimum(raw, 2**31 - 1), 0).astype(np.int64)
    for i in range(8):
        block[:, i] = (bits >> i) & 1
    if spec["missing_indicator"]:
        block[:, 8] = ~np.isfinite(raw)
