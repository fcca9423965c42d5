"""The host table: what every source address did across all scored batches, with decaying evidence.

Files (under ``<lake>/hosts/``, each written to a temporary name and renamed, under a lock)::

    hosts.parquet      one row per source address (HOST_SCHEMA); ``pd.read_parquet("<lake>/hosts")`` reads it
    _evidence.parquet  the ledger: one row per (address, report batch, evidence window); readers skip it ('_')

A host is a flow's source address (the side that initiated the flow). Scoring a batch replaces that batch's
ledger rows (re-scoring is idempotent) and recomputes the host table from the whole ledger.

Evidence rule: lake time ``T`` is the end of the newest flow in the ledger. Each host's flows are cut into
windows of ``evidence_window_s`` (default one hour, aligned to the epoch). A window earns ``points`` = the sum
of its anomalous flows' scores, capped at ``window_points_cap``. A host's evidence is
``sum(points_w * 0.5 ** ((T - end_w) / half_life))`` over its windows (``end_w`` the window's end, not later
than ``T``); it reaches ``alert_level`` => ``alert``. So a flood is one capped window; the cap (50) is above the
level (40), so it alerts in the hour it happens, until 7.7 h after the window ends at the 24 h half-life. A slow
scan of a few probes an hour adds up over batches until it crosses the level, and a host that stops fades.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flowhawk.common.files import atomic_write_bytes, exclusive_lock
from flowhawk.common.objectstore import Mirror
from flowhawk.reports.analyst_config import HOUR_MS, AnalystConfig, fields_markdown

HOSTS_DIR, HOSTS_FILE, LEDGER_FILE, LOCK_FILE = "hosts", "hosts.parquet", "_evidence.parquet", ".lock"
_S, _I, _F = pa.string(), pa.int64(), pa.float64()
LEDGER_SCHEMA = pa.schema([
    ("address", _S), ("batch_id", _S), ("window_start_ms", _I), ("first_ms", _I), ("last_ms", _I),
    ("flows", _I), ("bytes", _I), ("anomalous", _I), ("score_sum", _F), ("score_max", _F), ("points", _F),
    ("peers", pa.list_(_S)), ("ports", pa.list_(pa.int32())), ("classes", pa.list_(_S)), ("reasons", pa.list_(_S)),
])
HOST_FIELDS: tuple[tuple[str, pa.DataType, str], ...] = (
    ("address", _S, "source address"),
    ("first_seen_ms", _I, "start of its first flow (ms since epoch)"),
    ("last_seen_ms", _I, "end of its last flow"),
    ("flows", _I, "flows it started, all batches"),
    ("bytes", _I, "bytes of those flows, both directions"),
    ("anomalous_flows", _I, "of which anomalous"),
    ("max_score", _F, "highest flow score"),
    ("mean_score", _F, "mean flow score"),
    ("peers", _I, "distinct destination addresses (fan-out)"),
    ("ports", _I, "distinct destination ports (fan-out)"),
    ("attack_classes", _S, "predicted classes of its anomalous flows, comma-separated"),
    ("reasons", _S, "its anomalous flows' most frequent top features (else reasons), ' | '-separated"),
    ("evidence", _F, "decayed evidence at lake time (rule in the module doc)"),
    ("evidence_windows", _I, "windows that earned points"),
    ("alert", pa.bool_(), "evidence >= alert_level"),
    ("batches", _I, "report batches it appears in"),
    ("last_batch", _S, "latest report batch it appears in"),
    ("lake_time_ms", _I, "lake time T the evidence was decayed to"),
)
HOST_SCHEMA = pa.schema([pa.field(n, t) for n, t, _ in HOST_FIELDS])


def batch_windows(frame: pd.DataFrame, batch_id: str, config: AnalystConfig) -> pd.DataFrame:
    """Ledger rows of one scored batch: per source address and evidence window (``LEDGER_SCHEMA``)."""
    if frame.empty:
        return LEDGER_SCHEMA.empty_table().to_pandas()
    start = frame["FLOW_START_MILLISECONDS"].astype("float64")
    end = frame["FLOW_END_MILLISECONDS"].astype("float64").fillna(start)
    anomalous = frame["is_anomaly"].astype(bool)
    work = pd.DataFrame({
        "address": frame["IPV4_SRC_ADDR"].fillna("?").astype(str),
        "window": (start // config.window_ms * config.window_ms).fillna(-1).astype(np.int64),
        "start": start, "end": end,
        "bytes": frame[["IN_BYTES", "OUT_BYTES"]].astype("float64").fillna(0).sum(axis=1),
        "score": frame["score"].astype("float64"), "anom": anomalous,
        "anom_score": frame["score"].astype("float64").where(anomalous, 0.0),
        "peer": frame["IPV4_DST_ADDR"].astype(object), "port": frame["L4_DST_PORT"].astype("Int64"),
        "cls": frame["predicted_class"].astype(object).where(anomalous, None),
        "reason": _why(frame).where(anomalous, None),
    })
    grouped = work.groupby(["address", "window"], sort=True)
    rows = grouped.agg(first_ms=("start", "min"), last_ms=("end", "max"), flows=("score", "size"),
                       bytes=("bytes", "sum"), anomalous=("anom", "sum"), score_sum=("score", "sum"),
                       score_max=("score", "max"), anom_sum=("anom_score", "sum")).reset_index()
    rows["points"] = rows.pop("anom_sum").clip(upper=config.window_points_cap)
    lists = grouped.agg(peers=("peer", _distinct), ports=("port", _distinct_ints), classes=("cls", _distinct),
                        reasons=("reason", _common)).reset_index(drop=True)
    rows = pd.concat([rows, lists], axis=1).rename(columns={"window": "window_start_ms"})
    rows.insert(1, "batch_id", batch_id)
    return rows[LEDGER_SCHEMA.names]


def _why(frame: pd.DataFrame) -> pd.Series:
    """Per flow, what a host's ``reasons`` collect: the top feature of its explanation, else its own reason text
    (not a reason borrowed from its incident)."""
    none = pd.Series(None, index=frame.index, dtype=object)
    reason = frame["reason"].astype(object) if "reason" in frame.columns else none
    reason = reason.where(~reason.astype(str).str.startswith("incident: "), None)  # borrowed: counted once
    if "explanation" not in frame.columns:
        return reason
    explained = frame["explanation"].dropna()
    tops = explained.map(lambda e: (json.loads(e).get("top") or [{}])[0].get("feature"))
    return tops.reindex(frame.index).astype(object).where(lambda t: t.notna(), reason)


def _distinct(values: pd.Series) -> list[str]:
    return sorted(values.dropna().astype(str).unique().tolist())


def _distinct_ints(values: pd.Series) -> list[int]:
    return sorted(int(v) for v in values.dropna().unique())


def _common(values: pd.Series, n: int = 5) -> list[str]:
    return values.dropna().astype(str).value_counts().index[:n].tolist()


def decay_factor(lake_time_ms: float, window_end_ms: np.ndarray, half_life_h: float) -> np.ndarray:
    """``0.5 ** (age / half_life)`` with the age in hours, never negative."""
    age_h = np.maximum(lake_time_ms - window_end_ms, 0.0) / HOUR_MS
    return np.power(0.5, age_h / half_life_h)


def aggregate_hosts(ledger: pd.DataFrame, config: AnalystConfig) -> pd.DataFrame:
    """The host table (``HOST_SCHEMA``, highest evidence first) from all ledger rows."""
    if ledger.empty:
        return HOST_SCHEMA.empty_table().to_pandas()
    lake_time = float(ledger["last_ms"].max()) if ledger["last_ms"].notna().any() else 0.0
    timed = ledger["window_start_ms"] >= 0
    window_end = np.where(timed, ledger["window_start_ms"] + config.window_ms, lake_time).astype(float)
    window_end = np.minimum(window_end, lake_time)
    led = ledger.assign(weighted=ledger["points"] * decay_factor(lake_time, window_end, config.half_life_h),
                        earned=ledger["points"] > 0)
    g = led.groupby("address", sort=False)
    hosts = g.agg(first_seen_ms=("first_ms", "min"), last_seen_ms=("last_ms", "max"), flows=("flows", "sum"),
                  bytes=("bytes", "sum"), anomalous_flows=("anomalous", "sum"), max_score=("score_max", "max"),
                  score_sum=("score_sum", "sum"), evidence=("weighted", "sum"), evidence_windows=("earned", "sum"),
                  batches=("batch_id", "nunique"), last_batch=("batch_id", "last"))
    hosts["mean_score"] = hosts.pop("score_sum") / hosts["flows"]
    for name, column in (("peers", "peers"), ("ports", "ports")):
        hosts[name] = led[["address", column]].explode(column).groupby("address")[column].nunique()
    hosts["attack_classes"] = g["classes"].agg(lambda s: ",".join(sorted({c for lst in s for c in lst})))
    hosts["reasons"] = g["reasons"].agg(lambda s: " | ".join(pd.Series([r for lst in s for r in lst], dtype=object)
                                                             .value_counts().index[:5]))
    hosts["alert"] = hosts["evidence"] >= config.alert_level
    hosts["lake_time_ms"] = int(lake_time)
    hosts = hosts.reset_index().sort_values(["evidence", "anomalous_flows", "address"],
                                            ascending=[False, False, True], kind="stable")
    return hosts[HOST_SCHEMA.names].reset_index(drop=True)


class HostStore:
    """``<lake>/hosts/``: the host table and its evidence ledger."""

    def __init__(self, lake_root: Path | str) -> None:
        self.directory = Path(lake_root) / HOSTS_DIR
        self.hosts_path = self.directory / HOSTS_FILE
        self.ledger_path = self.directory / LEDGER_FILE
        self.mirror = Mirror.of(self.directory)  # object-store lake: one writer of the host table at a time

    def update(self, batch_id: str, frame: pd.DataFrame, config: AnalystConfig) -> pd.DataFrame:
        """Replace ``batch_id``'s ledger rows with those of ``frame`` (a scored batch), rewrite the host table;
        returns it."""
        with exclusive_lock(self.directory / LOCK_FILE):
            if self.mirror is not None:  # object-store lake: start from the shared ledger
                self.mirror.pull_file(LEDGER_FILE)
            ledger = self.read_ledger()
            ledger = pd.concat([ledger[ledger["batch_id"] != batch_id], batch_windows(frame, batch_id, config)],
                               ignore_index=True)
            hosts = aggregate_hosts(ledger, config)
            _write_parquet(self.ledger_path, pa.Table.from_pandas(ledger, schema=LEDGER_SCHEMA, preserve_index=False))
            _write_parquet(self.hosts_path, pa.Table.from_pandas(hosts, schema=HOST_SCHEMA, preserve_index=False))
            if self.mirror is not None:  # each file is one PUT; the host table is derived from the ledger
                self.mirror.push_file(LEDGER_FILE)
                self.mirror.push_file(HOSTS_FILE)
        return hosts

    def read_ledger(self) -> pd.DataFrame:
        if not self.ledger_path.is_file():
            return LEDGER_SCHEMA.empty_table().to_pandas()
        return pq.read_table(self.ledger_path, schema=LEDGER_SCHEMA).to_pandas()

    def read(self) -> pd.DataFrame:
        """The host table (empty with the schema before the first scored batch)."""
        if self.mirror is not None:
            self.mirror.pull_file(HOSTS_FILE)
        if not self.hosts_path.is_file():
            return HOST_SCHEMA.empty_table().to_pandas()
        return pq.read_table(self.hosts_path, schema=HOST_SCHEMA).to_pandas()


def _write_parquet(path: Path, table: pa.Table) -> None:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    atomic_write_bytes(path, sink.getvalue())


def schema_markdown() -> str:
    return fields_markdown(HOST_FIELDS)
