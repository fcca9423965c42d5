"""The analyst's sections of ``report.html``: hosts ranked by evidence, the batch's incidents, suppressed alerts.

Every value from the data (addresses, classes, reasons, signatures, notes) goes through ``html.escape``.
"""

from __future__ import annotations

import math
from html import escape

import pandas as pd

from flowhawk.model.novelty_inbound import INBOUND_CLASS
from flowhawk.reports.analyst import AnalystResult

_SEVERITY_CLASS = {"critical": "sev4", "high": "sev3", "medium": "sev2", "low": "sev1"}
CSS = (".sev4{background:#7a0916;color:#fff}.sev3{background:#d64545;color:#fff}.sev2{background:#f5b041}"
       ".sev1{background:#e7eaee}.sev{padding:1px 6px;border-radius:4px;font-size:12px}"
       ".alert{color:#b42318;font-weight:600}.why{max-width:520px;font-size:12px}")


def score_text(value: float, digits: int = 3) -> str:
    """A score as the tables show it: ``digits`` decimals, or as many more (up to 6) as it takes for a score below 1
    not to read 1.000 (a marginal novelty alert, 1 - 0.0005, reads 0.9995, not 1.000 beside an attack's 1.000);
    within 5e-7 of 1 it reads 1.000."""
    if value is None or not math.isfinite(value):
        return ""
    for places in range(digits, max(digits, 6) + 1):
        text = f"{value:.{places}f}"
        if value >= 1.0 or not text.startswith("1."):
            return text
    return f"{value:.{digits}f}"  # within 5e-7 of 1: as good as 1


def _text(value: object) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    return escape(str(value))


def _stamp(ms: object) -> str:
    if ms is None or pd.isna(ms):
        return ""
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M:%S")


def _verdict_map(analyst: AnalystResult, kind: str) -> dict[str, str]:
    v = analyst.verdicts
    if v.empty:
        return {}
    v = v[v["target_kind"] == kind]
    return {str(r.target): f"{r.verdict}" + (f" ({r.attack_class})" if r.attack_class else "")
            for r in v.itertuples()}


def hosts_section(analyst: AnalystResult, top_n: int) -> str:
    hosts = analyst.hosts.head(top_n)
    head = (f"<h2>Hosts by evidence</h2><p class='meta'>Evidence over all scored batches: per "
            f"{analyst.config.evidence_window_s / 3600:g} h window, capped at {analyst.config.window_points_cap:g}, "
            f"half-life {analyst.config.half_life_h:g} h; alert at {analyst.config.alert_level:g}.</p>")
    if hosts.empty:
        return head + "<p>No hosts yet.</p>"
    verdicts = _verdict_map(analyst, "host")
    rows = "".join(
        f"<tr><td class='{'alert' if r.alert else ''}'>{_text(r.address)}</td><td class='n'>{r.evidence:.1f}</td>"
        f"<td>{'ALERT' if r.alert else ''}</td><td class='n'>{r.flows:,}</td><td class='n'>{r.anomalous_flows:,}</td>"
        f"<td class='n'>{score_text(r.max_score)}</td><td class='n'>{r.peers:,}</td><td class='n'>{r.ports:,}</td>"
        f"<td>{_text(r.attack_classes)}</td><td class='why'>{_text(r.reasons)}</td>"
        f"<td>{_stamp(r.first_seen_ms)}</td><td>{_stamp(r.last_seen_ms)}</td><td>{_text(verdicts.get(r.address))}</td>"
        f"</tr>" for r in hosts.itertuples())
    return (head + "<table><tr><th>host</th><th>evidence</th><th></th><th>flows</th><th>anomalous</th>"
            "<th>max score</th><th>peers</th><th>ports</th><th>classes</th><th>reasons</th><th>first seen</th>"
            "<th>last seen</th><th>verdict</th></tr>" + rows + "</table>")


def _incident_source(r: object) -> str:
    """The source cell: the address, or for an inbound flood (many sources, keyed by target) its target."""
    if r.predicted_class == INBOUND_CLASS:
        return f"many &rarr; {_text(r.top_peers)}"
    return _text(r.source)


def incidents_section(analyst: AnalystResult, limit: int = 200) -> str:
    incidents = analyst.incidents
    suppressed = sum(analyst.suppressed.values())
    head = (f"<h2>Incidents ({len(incidents):,})</h2><p class='meta'>{len(analyst.alerts):,} alerts written "
            f"(one per {escape(analyst.config.alerts_per)}), {suppressed:,} suppressed by the allowlist"
            + (" (" + ", ".join(f"{escape(k)} {v}" for k, v in analyst.suppressed.items() if v) + ")"
               if suppressed else "") + ".</p>")
    if incidents.empty:
        return head + "<p>No anomalous flows, no incidents.</p>"
    verdicts = _verdict_map(analyst, "incident")
    rows = []
    for r in incidents.head(limit).itertuples():
        level = _SEVERITY_CLASS.get(r.severity_label, "sev1")
        rows.append(
            f"<tr><td><span class='sev {level}'>{_text(r.severity_label)}</span></td><td>{_incident_source(r)}</td>"
            f"<td>{_text(r.behaviour)}</td><td>{_stamp(r.start_ms)}</td><td>{_stamp(r.end_ms)}</td>"
            f"<td class='n'>{r.flows:,}</td><td class='n'>{r.peers:,}</td><td class='n'>{r.ports:,}</td>"
            f"<td>{_text(r.top_ports)}</td><td class='n'>{score_text(r.max_score)}</td>"
            f"<td class='why'>{_text(r.reason)}</td>"
            f"<td>{_text(r.true_class)}</td><td>{_text(verdicts.get(r.incident_id))}</td>"
            f"<td><code>{_text(r.incident_id)}</code></td></tr>")
    more = (f"<p class='meta'>{len(incidents) - limit:,} more in incidents.parquet.</p>"
            if len(incidents) > limit else "")
    return (head + "<table><tr><th>severity</th><th>source</th><th>behaviour</th><th>start (UTC)</th><th>end</th>"
            "<th>flows</th><th>peers</th><th>ports</th><th>top ports</th><th>max score</th><th>why</th>"
            "<th>true class</th><th>verdict</th><th>id</th></tr>" + "".join(rows) + "</table>" + more)
