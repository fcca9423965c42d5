"""The self-contained ``report.html`` of a batch: inline CSS and inline SVG charts, no script, no network.

Charts: score distribution (log-scaled counts, threshold marked), flows and anomalies over time, top talkers.
Every value that comes from the data is HTML-escaped.
"""

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from flowhawk.reports.config import ReportConfig, top_anomalies
from flowhawk.reports.html_analyst import CSS as ANALYST_CSS
from flowhawk.reports.html_analyst import hosts_section, incidents_section, score_text

if TYPE_CHECKING:
    from flowhawk.reports.analyst import AnalystResult

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d232b;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde2e8}
.meta{color:#5a6472}.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{border:1px solid #dde2e8;border-radius:8px;padding:10px 14px;min-width:120px}
.card b{display:block;font-size:20px}.card span{color:#5a6472;font-size:12px}
table{border-collapse:collapse;font-size:13px}th,td{border-bottom:1px solid #e7eaee;padding:4px 8px;text-align:left}
th{background:#f4f6f8}td.n{text-align:right;font-variant-numeric:tabular-nums}
.anom{color:#b42318;font-weight:600}svg{max-width:100%;height:auto}.charts{display:flex;flex-wrap:wrap;gap:24px}
.note{color:#8a5a00}figure{margin:0}
"""
_W, _H, _PAD = 520, 220, 40
_RED, _GREY, _BLUE = "#d64545", "#b8c0ca", "#3a6ea5"


def render_html(summary: dict, table: pa.Table, config: ReportConfig, analyst: AnalystResult | None = None) -> str:
    """The whole report page as a string; with ``analyst``, it opens with hosts and incidents."""
    frame = table.select(["FLOW_START_MILLISECONDS", "score", "is_anomaly"]).to_pandas()
    bid = escape(str(summary["batch_id"]))
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>flowhawk report: batch {bid}</title><style>{_CSS}{ANALYST_CSS}</style></head><body>",
        f"<h1>flowhawk anomaly report: batch {bid}</h1>",
        f"<div class='meta'>model {escape(str(summary['model_version']))}, threshold "
        f"{_fmt(summary['threshold'])}; {_time_text(summary['time_range'])}</div>",
        _cards(summary),
        *((hosts_section(analyst, config.top_n), incidents_section(analyst)) if analyst is not None else ()),
        "<h2>Charts</h2><div class='charts'>",
        _histogram_svg(frame, summary["threshold"], config.histogram_bins),
        _timeline_svg(frame, config.time_buckets),
        _talkers_svg(summary["top_sources"], "Top sources by anomalies"),
        _talkers_svg(summary["top_destinations"], "Top destinations by anomalies"),
        "</div>",
        "<h2>Top anomalies</h2>", _top_table(table, config.top_n),
        "<h2>Predicted classes</h2>", _kv_table(summary["predicted_classes"], "class", "flows"),
        _ground_truth(summary.get("ground_truth")),
        _files(summary.get("files")),
        "<h2>Timings (s)</h2>", _kv_table(summary.get("timings_s", {}), "stage", "seconds"),
        _notes(summary.get("notes", [])),
        "</body></html>\n",
    ]
    return "\n".join(parts)


def _fmt(value: object, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return escape(str(value))


def _time_text(tr: dict) -> str:
    if not tr.get("start"):
        return "no timestamps"
    return f"flows from {escape(tr['start'])} to {escape(tr['end'])}"


def _cards(summary: dict) -> str:
    gt = summary.get("ground_truth") or {}
    items = [("flows", summary["flows"]), ("anomalies", summary["anomalies"]),
             ("anomaly rate", f"{100 * (summary['anomaly_rate'] or 0):.2f} %")]
    capture = summary.get("capture")  # live captures (lake.capture): packets lost before they reached a file
    if capture:
        items += [("packets dropped at capture", capture["kernel_dropped"] + capture["interface_dropped"]
                   + capture["discarded_low_disk"])]
    if gt:
        items += [("precision", _fmt(gt["precision"], 3)), ("recall", _fmt(gt["recall"], 3)),
                  ("F1", _fmt(gt["f1"], 3))]
    cards = "".join(f"<div class='card'><b>{escape(str(v))}</b><span>{escape(k)}</span></div>" for k, v in items)
    return f"<div class='cards'>{cards}</div>"


def _svg_open(title: str) -> str:
    return (f"<figure><svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {_W} {_H}' width='{_W}' "
            f"height='{_H}' role='img' aria-label='{escape(title)}'><title>{escape(title)}</title>"
            f"<text x='{_W / 2}' y='16' text-anchor='middle' font-size='13'>{escape(title)}</text>")


def _axes(x_left: str, x_right: str, y_label: str) -> str:
    base = _H - _PAD
    return (f"<line x1='{_PAD}' y1='{base}' x2='{_W - 10}' y2='{base}' stroke='#555'/>"
            f"<line x1='{_PAD}' y1='28' x2='{_PAD}' y2='{base}' stroke='#555'/>"
            f"<text x='{_PAD}' y='{base + 16}' font-size='11'>{escape(x_left)}</text>"
            f"<text x='{_W - 10}' y='{base + 16}' font-size='11' text-anchor='end'>{escape(x_right)}</text>"
            f"<text x='12' y='{(base + 28) / 2}' font-size='11' transform='rotate(-90 12 {(base + 28) / 2})' "
            f"text-anchor='middle'>{escape(y_label)}</text>")


def _bars(counts: np.ndarray, colour: str, top: float, log: bool) -> list[str]:
    """Vertical bars filling the plot width; ``top`` is the count mapped to the plot's full height."""
    plot_w, plot_h, base = _W - _PAD - 10, _H - _PAD - 28, _H - _PAD
    width = plot_w / max(len(counts), 1)
    scale = (lambda c: math.log10(1 + c) / math.log10(1 + top)) if log else (lambda c: c / top)
    out = []
    for i, c in enumerate(counts):
        if c <= 0 or top <= 0:
            continue
        h = plot_h * scale(float(c))
        out.append(f"<rect x='{_PAD + i * width + 0.5:.1f}' y='{base - h:.1f}' width='{max(width - 1, 0.5):.1f}' "
                   f"height='{h:.1f}' fill='{colour}'><title>{int(c)}</title></rect>")
    return out


def _histogram_svg(frame: pd.DataFrame, threshold: float | None, bins: int) -> str:
    scores = frame["score"].dropna().to_numpy(dtype=float)
    title = "Score distribution (flows, log scale; red = anomalies)"
    if scores.size == 0:
        return _svg_open(title) + "<text x='50%' y='50%'>no scores</text></svg></figure>"
    lo, hi = min(0.0, float(scores.min())), max(1.0, float(scores.max()))
    edges = np.linspace(lo, hi, bins + 1)
    anomalous = frame["is_anomaly"].to_numpy(dtype=bool)[frame["score"].notna().to_numpy()]
    all_counts, _ = np.histogram(scores, edges)
    anom_counts, _ = np.histogram(scores[anomalous], edges)
    top = float(all_counts.max())
    parts = [_svg_open(title), _axes(f"{lo:g}", f"{hi:g}", "flows (log)")]
    parts += _bars(all_counts, _GREY, top, log=True) + _bars(anom_counts, _RED, top, log=True)
    if threshold is not None and lo <= threshold <= hi:
        x = _PAD + (threshold - lo) / (hi - lo) * (_W - _PAD - 10)
        left = x > _W * 0.7  # label on the line's left near the right edge
        parts.append(f"<line x1='{x:.1f}' y1='28' x2='{x:.1f}' y2='{_H - _PAD}' stroke='{_BLUE}' "
                     f"stroke-dasharray='4 3'/><text x='{x - 3 if left else x + 3:.1f}' y='38' font-size='11' "
                     f"fill='{_BLUE}' text-anchor='{'end' if left else 'start'}'>threshold {threshold:.3g}</text>")
    return "".join(parts) + "</svg></figure>"


def _timeline_svg(frame: pd.DataFrame, buckets: int) -> str:
    title = "Flows over time (grey) and anomalies (red)"
    times = frame["FLOW_START_MILLISECONDS"]
    ok = times.notna().to_numpy()
    if not ok.any():
        return _svg_open(title) + "<text x='40%' y='50%'>no timestamps</text></svg></figure>"
    t = times.to_numpy(dtype=float, na_value=np.nan)[ok]
    lo, hi = float(t.min()), float(t.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1, buckets + 1)
    all_counts, _ = np.histogram(t, edges)
    anom_counts, _ = np.histogram(t[frame["is_anomaly"].to_numpy(dtype=bool)[ok]], edges)
    stamp = lambda ms: pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M:%S")  # noqa: E731
    top = float(all_counts.max())
    parts = [_svg_open(title), _axes(stamp(lo), stamp(hi), "flows")]
    parts += _bars(all_counts, _GREY, top, log=False) + _bars(anom_counts, _RED, top, log=False)
    return "".join(parts) + "</svg></figure>"


def _talkers_svg(talkers: list[dict], title: str) -> str:
    rows = talkers[:10]
    if not rows:
        return _svg_open(title) + "<text x='35%' y='50%'>no anomalies</text></svg></figure>"
    top = max(r["anomalies"] for r in rows)
    label_w, row_h = 170, min((_H - 40) / max(len(rows), 1), 20.0)
    parts = [_svg_open(title)]
    for i, r in enumerate(rows):
        y = 28 + i * row_h
        w = (_W - label_w - 100) * r["anomalies"] / top
        parts.append(f"<text x='{label_w - 6}' y='{y + row_h * 0.7:.1f}' font-size='11' text-anchor='end'>"
                     f"{escape(r['address'])}</text><rect x='{label_w}' y='{y + 2:.1f}' width='{w:.1f}' "
                     f"height='{max(row_h - 4, 1):.1f}' fill='{_RED}'/><text x='{label_w + w + 4:.1f}' "
                     f"y='{y + row_h * 0.7:.1f}' font-size='11'>{r['anomalies']} / {r['flows']}</text>")
    return "".join(parts) + "</svg></figure>"


def _top_table(table: pa.Table, top_n: int) -> str:
    top = top_anomalies(table, top_n)
    if top.empty:
        return "<p>No flow scored above the threshold.</p>"
    head = ("<table><tr><th>#</th><th>start (UTC)</th><th>source</th><th>destination</th><th>proto</th>"
            "<th>application</th><th>bytes in/out</th><th>pkts in/out</th><th>score</th><th>predicted</th>"
            "<th>true class</th><th>why</th></tr>")
    rows = []
    for rank, (_, r) in enumerate(top.iterrows(), start=1):
        start = ("" if pd.isna(r["FLOW_START_MILLISECONDS"])
                 else pd.Timestamp(int(r["FLOW_START_MILLISECONDS"]), unit="ms", tz="UTC").strftime("%H:%M:%S.%f")[:-3])
        rows.append(
            f"<tr><td class='n'>{rank}</td><td>{start}</td>"
            f"<td>{_fmt(r['IPV4_SRC_ADDR'])}:{_fmt(r['L4_SRC_PORT'])}</td>"
            f"<td>{_fmt(r['IPV4_DST_ADDR'])}:{_fmt(r['L4_DST_PORT'])}</td><td class='n'>{_fmt(r['PROTOCOL'])}</td>"
            f"<td>{_fmt(_na(r['APPLICATION_NAME']))}</td>"
            f"<td class='n'>{_fmt(r['IN_BYTES'])} / {_fmt(r['OUT_BYTES'])}</td>"
            f"<td class='n'>{_fmt(r['IN_PKTS'])} / {_fmt(r['OUT_PKTS'])}</td>"
            f"<td class='n anom'>{score_text(float(r['score']), 4)}</td><td>{_fmt(_na(r['predicted_class']))}</td>"
            f"<td>{_fmt(_na(r['Attack']))}</td><td class='why'>{_fmt(_na(r.get('reason')))}</td></tr>")
    return head + "".join(rows) + "</table>"


def _na(value: object) -> object:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value


def _kv_table(mapping: dict, key: str, value: str) -> str:
    if not mapping:
        return "<p>none</p>"
    rows = "".join(f"<tr><td>{escape(str(k))}</td><td class='n'>{_fmt(v)}</td></tr>" for k, v in mapping.items())
    return f"<table><tr><th>{escape(key)}</th><th>{escape(value)}</th></tr>{rows}</table>"


def _ground_truth(gt: dict | None) -> str:
    if not gt:
        return "<h2>Ground truth</h2><p>The batch has no labels.</p>"
    keys = ("labelled_flows", "tp", "fp", "tn", "fn", "precision", "recall", "f1", "false_positive_rate",
            "accuracy", "class_accuracy")
    return ("<h2>Ground truth</h2>" + _kv_table({k: gt[k] for k in keys if k in gt}, "metric", "value")
            + "<h3>True classes</h3>" + _kv_table(gt.get("true_classes", {}), "class", "flows"))


def _files(files: list[dict] | None) -> str:
    if not files:
        return ""
    rows = "".join(
        f"<tr><td>{escape(str(f.get('file', '')))}</td><td>{escape(str(f.get('status', '')))}</td>"
        f"<td class='n'>{_fmt(f.get('flows'))}</td><td>{escape(str(f.get('reason') or ''))}</td></tr>"
        for f in files)
    return ("<h2>Input files</h2><table><tr><th>file</th><th>status</th><th>flows</th><th>reason</th></tr>"
            + rows + "</table>")


def _notes(notes: list[str]) -> str:
    if not notes:
        return ""
    return "<h2>Notes</h2><ul>" + "".join(f"<li class='note'>{escape(n)}</li>" for n in notes) + "</ul>"
