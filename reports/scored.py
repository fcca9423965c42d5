"""Per-batch anomaly reports: ``<lake>/reports/batch=<id>/{scored_flows.parquet, summary.json, report.html}``.

A report is written whole or not at all: the three files go to a hidden temporary folder beside the final
one, which is then renamed into place. Readers (pandas, pyarrow, DuckDB) ignore hidden folders, so they never
see a half-written report. ``scored_flows.parquet`` has the same schema in every batch (``SCORED_SCHEMA``),
so all batches read as one dataset (``read_scored`` or a glob of ``batch=*/scored_flows.parquet``).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from flowhawk.common.files import fsync_path, remove_stale_temps, swap_dir, tmp_sibling
from flowhawk.common.objectstore import Mirror
from flowhawk.extractors.schema import BENIGN, COLUMNS, FLOW_SCHEMA, conform
from flowhawk.lake.store import REPORT_MARKER
from flowhawk.model.evaluate import classification_metrics
from flowhawk.reports.config import DEFAULT_REPORT, ReportConfig
from flowhawk.reports.html import render_html

if TYPE_CHECKING:
    from flowhawk.reports.analyst import AnalystResult

log = logging.getLogger(__name__)

REPORT_VERSION = 1
SCORED_FILE, SUMMARY_FILE, HTML_FILE = "scored_flows.parquet", REPORT_MARKER, "report.html"
SCORE_COLUMNS: tuple[pa.Field, ...] = (
    pa.field("score", pa.float64()),
    pa.field("is_anomaly", pa.bool_()),
    pa.field("predicted_class", pa.string()),
    pa.field("model_version", pa.string()),
    pa.field("threshold", pa.float64()),
    pa.field("reason", pa.string()),
    pa.field("explanation", pa.string()),
    pa.field("incident_id", pa.string()),
    pa.field("attack_score", pa.float64()),
    pa.field("novelty_score", pa.float64()),
)
SCORED_SCHEMA: pa.Schema = pa.schema(
    list(FLOW_SCHEMA) + list(SCORE_COLUMNS),
    metadata={"flowhawk.report_version": str(REPORT_VERSION), **FLOW_SCHEMA.metadata},
)


@dataclass(frozen=True)
class ReportPaths:
    directory: Path
    scored_flows: Path
    summary: Path
    html: Path

    @classmethod
    def for_batch(cls, reports_dir: Path, batch_id: str) -> ReportPaths:
        directory = Path(reports_dir) / f"batch={batch_id}"
        return cls(directory, directory / SCORED_FILE, directory / SUMMARY_FILE, directory / HTML_FILE)


@dataclass(frozen=True)
class ScoreMeta:
    """What the scoring stage knows besides the per-flow scores."""

    model_version: str
    threshold: float
    timings_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def scored_table(flows: pd.DataFrame, scores: pd.DataFrame, meta: ScoreMeta) -> pa.Table:
    """Join a batch's flows (schema columns) with their scores (``score``, ``is_anomaly``, ``predicted_class``,
    one row per flow, same order) into a table of ``SCORED_SCHEMA``."""
    missing = {"score", "is_anomaly", "predicted_class"} - set(scores.columns)
    if missing:
        raise ValueError(f"scores lack column(s) {sorted(missing)}")
    if len(scores) != len(flows):
        raise ValueError(f"scores have {len(scores)} rows but the batch has {len(flows)} flows")
    base = conform(flows.reset_index(drop=True))
    n = len(flows)
    extra = [
        _float(scores, "score", n),
        pa.array(scores["is_anomaly"].to_numpy(dtype=bool), type=pa.bool_()),
        pa.array(scores["predicted_class"].astype("string").to_numpy(dtype=object, na_value=None),
                 type=pa.string()),
        pa.array([str(meta.model_version)] * n, type=pa.string()),
        pa.array([float(meta.threshold)] * n, type=pa.float64()),
        *(_optional_text(scores, name, n) for name in ("reason", "explanation", "incident_id")),
        _float(scores, "attack_score", n) if "attack_score" in scores.columns else _float(scores, "score", n),
        _float(scores, "novelty_score", n),
    ]
    return pa.Table.from_arrays(list(base.columns) + extra, schema=SCORED_SCHEMA)


def _float(scores: pd.DataFrame, name: str, n: int) -> pa.Array:
    """A float column of ``scores`` (NaN -> null), or all null when absent."""
    if name not in scores.columns:
        return pa.nulls(n, type=pa.float64())
    return pa.array(scores[name].to_numpy(dtype=np.float64), type=pa.float64(), from_pandas=True)


def _optional_text(scores: pd.DataFrame, name: str, n: int) -> pa.Array:
    if name not in scores.columns:
        return pa.nulls(n, type=pa.string())
    return pa.array(scores[name].astype(object).where(scores[name].notna(), None).to_numpy(), type=pa.string())


def summarize(table: pa.Table, batch_id: str, meta: ScoreMeta, config: ReportConfig = DEFAULT_REPORT,
              extra: dict | None = None) -> dict:
    """The batch summary (JSON-ready): counts, anomaly rate, top talkers, time range, timings, ground truth."""
    frame = table.select(["IPV4_SRC_ADDR", "IPV4_DST_ADDR", "FLOW_START_MILLISECONDS", "FLOW_END_MILLISECONDS",
                          "score", "is_anomaly", "predicted_class", "Label", "Attack"]).to_pandas()
    n, n_anom = len(frame), int(frame["is_anomaly"].sum())
    summary = {
        "report_version": REPORT_VERSION,
        "batch_id": batch_id,
        "model_version": meta.model_version,
        "threshold": _num(meta.threshold),
        "flows": n,
        "anomalies": n_anom,
        "anomaly_rate": _num(n_anom / n) if n else 0.0,
        "predicted_classes": {str(k): int(v) for k, v in
                              frame["predicted_class"].fillna("unknown").value_counts().sort_index().items()},
        "score": _score_stats(frame["score"]),
        "top_sources": _top_talkers(frame, "IPV4_SRC_ADDR", config.top_n),
        "top_destinations": _top_talkers(frame, "IPV4_DST_ADDR", config.top_n),
        "time_range": _time_range(frame),
        "timings_s": {k: round(float(v), 3) for k, v in meta.timings_s.items()},
        "ground_truth": ground_truth_metrics(frame),
        "notes": list(meta.notes),
    }
    if extra:
        summary.update(extra)
    return summary


def _num(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else round(value, 6)


def _score_stats(score: pd.Series) -> dict:
    s = score.dropna()
    if s.empty:
        return {"min": None, "max": None, "mean": None, "p50": None, "p95": None, "p99": None}
    q = s.quantile([0.5, 0.95, 0.99])
    return {"min": _num(s.min()), "max": _num(s.max()), "mean": _num(s.mean()),
            "p50": _num(q[0.5]), "p95": _num(q[0.95]), "p99": _num(q[0.99])}


def _top_talkers(frame: pd.DataFrame, column: str, top_n: int) -> list[dict]:
    grouped = frame.groupby(frame[column].fillna("?"), sort=False)["is_anomaly"].agg(["sum", "size"])
    grouped = grouped[grouped["sum"] > 0].reset_index()
    grouped = grouped.sort_values(["sum", "size", column], ascending=[False, False, True]).head(top_n)
    return [{"address": str(r[column]), "anomalies": int(r["sum"]), "flows": int(r["size"])}
            for _, r in grouped.iterrows()]


def _time_range(frame: pd.DataFrame) -> dict:
    start, end = frame["FLOW_START_MILLISECONDS"].dropna(), frame["FLOW_END_MILLISECONDS"].dropna()
    if start.empty:
        return {"start_ms": None, "end_ms": None, "start": None, "end": None}
    lo, hi = int(start.min()), int(end.max()) if not end.empty else int(start.max())
    iso = lambda ms: pd.Timestamp(ms, unit="ms", tz="UTC").isoformat()  # noqa: E731
    return {"start_ms": lo, "end_ms": hi, "start": iso(lo), "end": iso(hi)}


def ground_truth_metrics(frame: pd.DataFrame) -> dict | None:
    """Binary metrics (anomaly vs ``Label``) and class accuracy (``predicted_class`` vs ``Attack``) over the
    labelled flows; None when the batch has no labels."""
    labelled = frame[frame["Label"].notna()]
    if labelled.empty:
        return None
    truth = (labelled["Label"].astype(int).to_numpy() == 1).astype(np.int64)
    pred = labelled["is_anomaly"].to_numpy(dtype=bool).astype(np.int64)
    score = labelled["score"].to_numpy(dtype=np.float64)
    m = classification_metrics(truth, pred, score if np.isfinite(score).all() else None, [BENIGN, "Attack"])
    (tn, fp), (fn, tp) = m["confusion"]
    result = {"labelled_flows": len(labelled), "tp": tp, "fp": fp, "tn": tn, "fn": fn,
              "precision": _num(m["precision"]), "recall": _num(m["recall"]), "f1": _num(m["f1"]),
              "false_positive_rate": _num(m["fpr"]) if truth.size > truth.sum() else 0.0,
              "accuracy": _num(m["accuracy"])}
    classes = labelled[labelled["Attack"].notna()]
    if not classes.empty:
        hit = classes["predicted_class"].astype("string").fillna("") == classes["Attack"].astype("string")
        per_class = {str(k): {"flows": len(g), "correct": int(hit[g.index].sum())}
                     for k, g in classes.groupby("Attack", sort=True)}
        result["class_accuracy"] = _num(hit.mean())
        result["per_class"] = per_class
    result["true_classes"] = {str(k): int(v) for k, v in
                              labelled["Attack"].fillna(BENIGN).value_counts().sort_index().items()}
    return result


def write_report(reports_dir: Path, batch_id: str, table: pa.Table, meta: ScoreMeta,
                 config: ReportConfig = DEFAULT_REPORT, extra: dict | None = None,
                 analyst: AnalystResult | None = None) -> ReportPaths:
    """Write a batch's three report files atomically (temp folder, then rename); returns their paths.

    An existing report of the batch is replaced as a whole. ``extra`` adds keys to summary.json (e.g. the
    ingest file statuses). ``analyst`` (``reports.analyst.analyse_batch``) adds incidents.parquet, alerts.jsonl,
    its summary keys and the report's host and incident tables.
    """

    if table.schema.remove_metadata() != SCORED_SCHEMA.remove_metadata():
        raise ValueError("write_report: table does not have SCORED_SCHEMA (build it with scored_table)")
    reports_dir = Path(reports_dir)
    final = ReportPaths.for_batch(reports_dir, batch_id)
    reports_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_sibling(final.directory)  # .tmp-batch=<id>-<pid>-<hex>: lake.atomic's stale-temp convention
    tmp.mkdir()
    try:
        paths = ReportPaths.for_batch(reports_dir, batch_id)
        summary = summarize(table, batch_id, meta, config, {**(extra or {}), **(analyst.summary() if analyst else {})})
        summary["paths"] = {"scored_flows": str(paths.scored_flows), "summary": str(paths.summary),
                            "report_html": str(paths.html)}
        pq.write_table(table.replace_schema_metadata(SCORED_SCHEMA.metadata), tmp / SCORED_FILE,
                       compression="zstd")
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if analyst is not None:
            analyst.write_files(tmp)
        (tmp / HTML_FILE).write_text(render_html(summary, table, config, analyst), encoding="utf-8")
        for name in (SCORED_FILE, SUMMARY_FILE, HTML_FILE):
            fsync_path(tmp / name)
        swap_dir(tmp, final.directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    mirror = Mirror.of(reports_dir)
    if mirror is not None:  # object-store lake: the files, then summary.json (the report's commit marker)
        mirror.push(final.directory.name, SUMMARY_FILE)
    log.info("report for batch %s: %d flows, %d anomalies -> %s", batch_id, summary["flows"],
             summary["anomalies"], final.directory)
    return final


def write_scored_report(reports_dir: Path, batch_id: str, flows: pd.DataFrame, scores: pd.DataFrame,
                        meta: ScoreMeta, config: ReportConfig = DEFAULT_REPORT,
                        extra: dict | None = None, analyst: AnalystResult | None = None) -> tuple[ReportPaths, dict]:
    """``scored_table`` + ``write_report`` in one call; returns the paths and the summary written. With
    ``analyst``, its reason / explanation / incident_id columns replace those of ``scores``."""
    if analyst is not None:
        scores = scores.reset_index(drop=True).drop(columns=list(analyst.columns.columns), errors="ignore")
        scores = pd.concat([scores, analyst.columns.reset_index(drop=True)], axis=1)
    paths = write_report(reports_dir, batch_id, scored_table(flows, scores, meta), meta, config, extra, analyst)
    return paths, json.loads(paths.summary.read_text(encoding="utf-8"))



def summary_markdown(summary: dict) -> str:
    """A short Markdown digest of a summary (counts, ground truth, report paths), for UIs and logs."""
    lines = [f"# Batch `{summary['batch_id']}`", "",
             f"- flows: **{summary['flows']:,}**, anomalies: **{summary['anomalies']:,}** "
             f"({100 * (summary['anomaly_rate'] or 0):.2f} %)",
             f"- model: `{summary['model_version']}`, threshold {summary['threshold']}"]
    tr = summary.get("time_range") or {}
    if tr.get("start"):
        lines.append(f"- time range: {tr['start']} to {tr['end']}")
    gt = summary.get("ground_truth")
    if gt:
        lines.append(f"- ground truth ({gt['labelled_flows']:,} labelled flows): precision {gt['precision']}, "
                     f"recall {gt['recall']}, F1 {gt['f1']}, FPR {gt['false_positive_rate']}")
    lines += ["", "| predicted class | flows |", "|---|---:|"]
    lines += [f"| {k} | {v:,} |" for k, v in summary["predicted_classes"].items()]
    if summary.get("timings_s"):
        lines += ["", "| stage | seconds |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in summary["timings_s"].items()]
    paths = summary.get("paths") or {}
    if paths:
        lines += ["", "Report files:", *[f"- {k}: `{v}`" for k, v in paths.items()]]
    return "\n".join(lines) + "\n"


def covered_lake_batches(reports_dir: Path) -> set[str]:
    """Lake batches already in some report (the ``lake_batches`` key of every summary.json)."""
    covered: set[str] = set()
    for batch_id in reported_batches(reports_dir):
        try:
            covered.update(read_summary(reports_dir, batch_id).get("lake_batches") or [batch_id])
        except (OSError, ValueError):
            log.warning("%s: unreadable summary.json, ignored", ReportPaths.for_batch(reports_dir, batch_id).summary)
    return covered


def report_exists(reports_dir: Path, batch_id: str) -> bool:
    """True when the batch's report is complete (the folder only appears once all three files are in; on an
    object store, once its summary.json is, and it is pulled into the working copy)."""
    paths = ReportPaths.for_batch(reports_dir, batch_id)
    mirror = Mirror.of(reports_dir)
    if mirror is not None and not mirror.pull(paths.directory.name, SUMMARY_FILE, refresh=True):
        return False
    return paths.scored_flows.is_file() and paths.summary.is_file() and paths.html.is_file()


def read_summary(reports_dir: Path, batch_id: str) -> dict:
    return json.loads(ReportPaths.for_batch(reports_dir, batch_id).summary.read_text(encoding="utf-8"))


def reported_batches(reports_dir: Path) -> list[str]:
    """Batches with a complete report (on an object store: committed there, pulled if new or replaced)."""
    reports_dir = Path(reports_dir)
    mirror = Mirror.of(reports_dir)
    for unit in mirror.committed("", SUMMARY_FILE) if mirror is not None else []:
        mirror.pull(unit, SUMMARY_FILE, refresh=True)
    if not reports_dir.is_dir():
        return []
    return sorted(p.name.split("=", 1)[1] for p in reports_dir.glob("batch=*") if (p / SCORED_FILE).is_file())


def scored_dataset(reports_dir: Path) -> pads.Dataset:
    """All batches' ``scored_flows.parquet`` as one pyarrow dataset (schema ``SCORED_SCHEMA``)."""
    files = [str(ReportPaths.for_batch(reports_dir, b).scored_flows) for b in reported_batches(reports_dir)]
    return pads.dataset(files, schema=SCORED_SCHEMA, format="parquet")


def read_scored(reports_dir: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """All batches' scored flows as one DataFrame (batch order, then flow order)."""
    return scored_dataset(reports_dir).to_table(columns=columns).to_pandas()


def clean_stale_temp(reports_dir: Path) -> int:
    """Remove temp folders of killed report writers (their process is gone); live writers' are kept. On an
    object store also the uncommitted uploads of killed pushes (older than the grace period)."""
    mirror = Mirror.of(reports_dir)
    return remove_stale_temps(Path(reports_dir)) + (mirror.clean_uncommitted("", SUMMARY_FILE) if mirror else 0)


SCORED_COLUMN_DOCS: dict[str, str] = {
    "score": "anomaly score in [0, 1]: the larger of attack_score and novelty_score present; null while "
             "baselining",
    "is_anomaly": "the supervised model flags the flow (attack_score >= threshold) or the novelty model does "
                  "(tail probability <= its false-alert budget, or one of its baseline rules: inbound flood, volume)",
    "predicted_class": "the supervised class when it flags the flow, 'novel' when only the novelty model does "
                       "('inbound-flood' when its inbound-flood rule does too), else 'Benign'; null while "
                       "baselining",
    "model_version": "registry version(s) of the model(s) that scored the batch ('baselining' before any)",
    "threshold": "the supervised model's decision threshold (without one: 1 - the novelty budget)",
    "reason": "why the flow is anomalous, readable (null for normal flows; see reports/explain.py)",
    "explanation": "JSON: model, method, predicted class, probability, top features observed vs expected",
    "incident_id": "the incident the anomalous flow belongs to (incidents.parquet)",
    "attack_score": "the supervised model's attack probability 1 - p(benign); null without a supervised model",
    "novelty_score": "1 - the flow's tail probability among baseline flows; null without a novelty model",
}


def schema_markdown() -> str:
    """The report schema as Markdown (for the README)."""
    rows = ["| column | type | meaning |", "|---|---|---|",
            f"| *all {len(COLUMNS)} flow-table columns* | (see the flow schema) | the flow as stored in the lake |"]
    rows += [f"| `{f.name}` | {f.type} | {SCORED_COLUMN_DOCS[f.name]} |" for f in SCORE_COLUMNS]
    return "\n".join(rows)
