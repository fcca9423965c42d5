"""Incidents: a batch's anomalous flows grouped by (source, behaviour, time gap).

Rule: anomalous flows are keyed by source address and behaviour (predicted class and IP protocol); an inbound
flood's flows (class ``inbound-flood``: many sources, often spoofed, at one destination) by their destination
instead, so a flood from 10,000 addresses is one incident against its target, not 10,000. Within a key, flows
in start-time order join the current incident while they start at most ``incident_gap_s`` after the latest end
seen so far in it; a longer silence starts a new incident. Flows without timestamps fall in one
incident per key. The representative flow of an incident is its highest-scoring explained flow (any flow
when none is explained; first in flow order on ties): its ports, destination, Community ID and explanation
stand for the incident in alerts.

Severity (1 low, 2 medium, 3 high, 4 critical): 1, plus score steps, plus one when it has at least
``severity_fanout`` flows, peers or destination ports. Score steps, the most any of the incident's flows earns:
one per ``severity_scores`` value its supervised attack probability reaches, or one per ``severity_tail`` value
its novelty tail probability (1 - ``novelty_score``) is at or below, all of them for a novelty rule's hit
(``novelty_rule``). The novelty model's scores have their own scale: it alerts only at tail probabilities under
its budget (0.001), where every ``severity_scores`` value is passed, so one marginal false alert would be high.
Frames without the per-model scores (``SEVERITY_COLUMNS``) take the steps from ``score`` and ``severity_scores``.

``incidents.parquet`` (``INCIDENT_SCHEMA``) is written into each batch report; ``read_incidents`` reads all
batches' as one table. The signature ``<source>|<behaviour>`` is what an allowlist entry matches (an inbound
flood's: ``<destination>|<behaviour>``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flowhawk.model.novelty_inbound import INBOUND_CLASS
from flowhawk.reports.analyst_config import AnalystConfig, fields_markdown

INCIDENTS_FILE = "incidents.parquet"
SEVERITY_LABELS = {1: "low", 2: "medium", 3: "high", 4: "critical"}
SEVERITY_COLUMNS = ("attack_score", "novelty_score", "novelty_rule")  # reports.combine's per-model scores
PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp", 132: "sctp"}
_S, _I, _F = pa.string(), pa.int64(), pa.float64()
INCIDENT_FIELDS: tuple[tuple[str, pa.DataType, str], ...] = (
    ("incident_id", _S, "stable id: hash of batch, source, behaviour and first flow"),
    ("batch_id", _S, "report batch the incident was found in"),
    ("source", _S, "source address of the incident's flows (an inbound flood's: its representative flow's)"),
    ("behaviour", _S, "predicted class / transport (e.g. synflood/tcp)"),
    ("predicted_class", _S, "the model's class for the incident's flows"),
    ("protocol", pa.int16(), "IP protocol number"),
    ("start_ms", _I, "first flow start (ms since epoch; null without timestamps)"),
    ("end_ms", _I, "last flow end (ms since epoch)"),
    ("flows", _I, "anomalous flows in the incident"),
    ("bytes", _I, "bytes of those flows, both directions"),
    ("packets", _I, "packets of those flows, both directions"),
    ("peers", _I, "distinct destination addresses"),
    ("ports", _I, "distinct destination ports"),
    ("top_peers", _S, "up to 5 most frequent destinations, comma-separated"),
    ("top_ports", _S, "up to 5 most frequent destination ports, comma-separated"),
    ("max_score", _F, "highest flow score"),
    ("mean_score", _F, "mean flow score"),
    ("reason", _S, "why: the representative flow's reason"),
    ("explanation", _S, "JSON: the representative flow's explanation"),
    ("severity", pa.int8(), "1 low, 2 medium, 3 high, 4 critical (rule in the module doc)"),
    ("severity_label", _S, "low / medium / high / critical"),
    ("signature", _S, "<source>|<behaviour> (inbound flood: <destination>|<behaviour>): what an allowlist's "
                      "incident signature matches"),
    ("true_class", _S, "most frequent ground-truth Attack label of the flows (null when unlabelled)"),
    ("rep_row", _I, "row of the representative flow in scored_flows.parquet"),
    ("rep_src_port", pa.int32(), "representative flow: source port"),
    ("rep_dst_addr", _S, "representative flow: destination address"),
    ("rep_dst_port", pa.int32(), "representative flow: destination port"),
    ("rep_community_id", _S, "representative flow: Community ID"),
    ("rep_source_file", _S, "representative flow: input file"),
    ("rep_flow_index", _I, "representative flow: index within its input file"),
)
INCIDENT_SCHEMA = pa.schema([pa.field(name, kind) for name, kind, _ in INCIDENT_FIELDS])


def behaviour_of(frame: pd.DataFrame) -> pd.Series:
    """``<predicted class>/<transport>`` per flow."""
    proto = frame["PROTOCOL"].astype("Int64")
    names = proto.map(lambda p: PROTO_NAMES.get(int(p), str(int(p))) if pd.notna(p) else "ip")
    return frame["predicted_class"].astype(object).fillna("anomaly").astype(str) + "/" + names.astype(str)


def assign_incidents(frame: pd.DataFrame, batch_id: str, config: AnalystConfig) -> pd.Series:
    """Incident id of every anomalous flow (None for the others), aligned to ``frame.index``."""
    out = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    anomalous = frame[frame["is_anomaly"].astype(bool)]
    if anomalous.empty:
        return out
    start = anomalous["FLOW_START_MILLISECONDS"].astype("float64").fillna(0.0)
    end = anomalous["FLOW_END_MILLISECONDS"].astype("float64").fillna(start).combine(start, max)
    keys = pd.DataFrame({"source": _key_address(anomalous),
                         "behaviour": behaviour_of(anomalous), "start": start, "end": end,
                         "pos": np.arange(len(anomalous))}, index=anomalous.index)
    keys = keys.sort_values(["source", "behaviour", "start", "pos"], kind="stable")
    group = keys.groupby(["source", "behaviour"], sort=False)
    latest_end = group["end"].cummax().groupby([keys["source"], keys["behaviour"]]).shift()
    new = latest_end.isna() | (keys["start"] - latest_end > config.incident_gap_s * 1000)
    number = new.cumsum()
    first = keys.groupby(number, sort=False).head(1)
    ids = {n: _incident_id(batch_id, r.source, r.behaviour, int(r.pos))
           for n, r in zip(number[first.index], first.itertuples(), strict=True)}
    out.loc[keys.index] = number.map(ids).to_numpy()
    return out


def _inbound(frame: pd.DataFrame) -> pd.Series:
    return frame["predicted_class"].astype(object).eq(INBOUND_CLASS)


def _key_address(frame: pd.DataFrame) -> pd.Series:
    """The address an incident is keyed by: the source, or for an inbound flood ``>`` + its destination."""
    source = frame["IPV4_SRC_ADDR"].fillna("?").astype(str)
    return source.where(~_inbound(frame), ">" + frame["IPV4_DST_ADDR"].fillna("?").astype(str))


def _incident_id(batch_id: str, source: str, behaviour: str, first_pos: int) -> str:
    return "inc-" + hashlib.sha256(f"{batch_id}|{source}|{behaviour}|{first_pos}".encode()).hexdigest()[:16]


def severity(flows: pd.DataFrame, size: int, config: AnalystConfig) -> int:
    """The severity rule of the module doc, for an incident's ``flows`` of ``size`` (flows, peers or ports)."""
    return int(min(1 + score_steps(flows, config) + (size >= config.severity_fanout), 4))


def score_steps(flows: pd.DataFrame, config: AnalystConfig) -> int:
    """The score steps of the severity rule: the most that any of ``flows`` earns on its model's scale."""
    if not any(column in flows.columns for column in SEVERITY_COLUMNS):
        return _steps_up(flows["score"], config.severity_scores)
    steps = _steps_up(flows["attack_score"], config.severity_scores) if "attack_score" in flows.columns else 0
    if "novelty_score" in flows.columns:
        tail = 1.0 - pd.to_numeric(flows["novelty_score"], errors="coerce").to_numpy(dtype=np.float64)
        tail = tail[np.isfinite(tail)]
        steps = max(steps, sum(bool((tail <= t).any()) for t in config.severity_tail))
    if "novelty_rule" in flows.columns and flows["novelty_rule"].fillna(False).astype(bool).any():
        steps = max(steps, len(config.severity_tail))
    return steps


def _steps_up(scores: pd.Series, steps: tuple[float, ...]) -> int:
    """How many of ``steps`` the largest of ``scores`` reaches (0 when there is none)."""
    top = pd.to_numeric(scores, errors="coerce").max()
    return 0 if pd.isna(top) else sum(float(top) >= s for s in steps)


def build_incidents(frame: pd.DataFrame, incident_ids: pd.Series, batch_id: str,
                    config: AnalystConfig) -> pd.DataFrame:
    """One row per incident (``INCIDENT_SCHEMA`` columns), most severe first, then highest score."""
    member = frame.assign(incident_id=incident_ids, _row=np.arange(len(frame)))
    member = member[member["incident_id"].notna()]
    rows = [_incident_row(batch_id, iid, flows, config) for iid, flows in member.groupby("incident_id", sort=False)]
    table = pd.DataFrame(rows, columns=[name for name, _, _ in INCIDENT_FIELDS])
    return table.sort_values(["severity", "max_score", "start_ms", "incident_id"],
                             ascending=[False, False, True, True], kind="stable").reset_index(drop=True)


def _top(series: pd.Series, n: int = 5) -> str:
    counts = series.dropna().astype(str).value_counts(sort=True)
    return ",".join(counts.index[:n])


def _incident_row(batch_id: str, incident_id: str, flows: pd.DataFrame, config: AnalystConfig) -> dict:
    explained = flows["explanation"].notna() if "explanation" in flows.columns else False
    rep = flows.assign(_explained=explained).sort_values(
        ["_explained", "score", "_row"], ascending=[False, False, True], kind="stable").iloc[0]
    dst_ports = flows["L4_DST_PORT"].dropna().astype(int)
    size = max(len(flows), flows["IPV4_DST_ADDR"].nunique(), dst_ports.nunique())
    max_score = float(flows["score"].max())
    level = severity(flows, size, config)
    truth = flows["Attack"].dropna() if "Attack" in flows.columns else pd.Series(dtype=object)
    start, end = flows["FLOW_START_MILLISECONDS"].dropna(), flows["FLOW_END_MILLISECONDS"].dropna()
    source, behaviour = str(rep["IPV4_SRC_ADDR"]), str(behaviour_of(flows.iloc[:1]).iloc[0])
    signed = str(rep["IPV4_DST_ADDR"]) if rep["predicted_class"] == INBOUND_CLASS else source
    return {
        "incident_id": incident_id, "batch_id": batch_id, "source": source, "behaviour": behaviour,
        "predicted_class": _str(rep["predicted_class"]), "protocol": _int(rep["PROTOCOL"]),
        "start_ms": int(start.min()) if len(start) else None, "end_ms": int(end.max()) if len(end) else None,
        "flows": len(flows), "bytes": int(flows[["IN_BYTES", "OUT_BYTES"]].fillna(0).to_numpy().sum()),
        "packets": int(flows[["IN_PKTS", "OUT_PKTS"]].fillna(0).to_numpy().sum()),
        "peers": int(flows["IPV4_DST_ADDR"].nunique()), "ports": int(dst_ports.nunique()),
        "top_peers": _top(flows["IPV4_DST_ADDR"]), "top_ports": _top(dst_ports),
        "max_score": max_score, "mean_score": float(flows["score"].mean()),
        "reason": _str(rep.get("reason")), "explanation": _str(rep.get("explanation")),
        "severity": level, "severity_label": SEVERITY_LABELS[level], "signature": f"{signed}|{behaviour}",
        "true_class": str(truth.value_counts().index[0]) if len(truth) else None,
        "rep_row": int(rep["_row"]), "rep_src_port": _int(rep["L4_SRC_PORT"]),
        "rep_dst_addr": _str(rep["IPV4_DST_ADDR"]), "rep_dst_port": _int(rep["L4_DST_PORT"]),
        "rep_community_id": _str(rep.get("community_id")), "rep_source_file": _str(rep.get("source_file")),
        "rep_flow_index": _int(rep.get("flow_index")),
    }


def _str(value: object) -> str | None:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def _int(value: object) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def incidents_table(incidents: pd.DataFrame) -> pa.Table:
    """``incidents`` as an Arrow table of exactly ``INCIDENT_SCHEMA``."""
    return pa.Table.from_pandas(incidents, schema=INCIDENT_SCHEMA, preserve_index=False)


def write_incidents(path: Path, incidents: pd.DataFrame) -> None:
    """Write ``incidents.parquet`` (the caller's folder is a report's temporary folder: no partial file)."""
    pq.write_table(incidents_table(incidents), path, compression="zstd")


def read_incidents(reports_dir: Path) -> pd.DataFrame:
    """Every report batch's incidents as one frame (report batch order); empty with the schema when none."""
    files = sorted(Path(reports_dir).glob(f"batch=*/{INCIDENTS_FILE}"))
    if not files:
        return INCIDENT_SCHEMA.empty_table().to_pandas()
    return pa.concat_tables(pq.read_table(f, schema=INCIDENT_SCHEMA) for f in files).to_pandas()


def schema_markdown() -> str:
    return fields_markdown(INCIDENT_FIELDS)
