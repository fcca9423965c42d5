"""The analyst's view of one scored batch: incidents, the host table, alerts (allowlist applied), verdicts.

``analyse_batch`` is the one library call the scoring flow makes after scoring (and explaining) a batch: it
groups the anomalous flows into incidents, gives every anomalous flow a reason (its own, or its incident's),
updates ``<lake>/hosts/``, builds the alerts and drops those the allowlist suppresses. The returned
``AnalystResult`` goes to ``reports.scored.write_report``, which writes ``incidents.parquet`` and
``alerts.jsonl`` into the batch report's temporary folder (so they appear with the rest, or not at all) and
passes it to the HTML page.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from flowhawk.common.files import atomic_write_text
from flowhawk.reports.alerts import ALERT_SCHEMA_VERSION, ALERTS_FILE, alerts_jsonl, flow_alerts, incident_alerts
from flowhawk.reports.analyst_config import AnalystConfig
from flowhawk.reports.hosts import HostStore
from flowhawk.reports.incidents import (
    INCIDENTS_FILE,
    SEVERITY_COLUMNS,
    assign_incidents,
    build_incidents,
    write_incidents,
)
from flowhawk.reports.verdicts import Allowlist, VerdictStore

log = logging.getLogger(__name__)
ANALYST_COLUMNS = ("reason", "explanation", "incident_id")


@dataclass
class AnalystResult:
    """What one batch adds to the analyst's view."""

    columns: pd.DataFrame  # reason, explanation, incident_id per flow (the batch's row order)
    incidents: pd.DataFrame
    hosts: pd.DataFrame
    alerts: list[dict]
    suppressed: dict[str, int]
    verdicts: pd.DataFrame
    config: AnalystConfig = field(default_factory=AnalystConfig)

    def write_files(self, directory: Path) -> None:
        """``incidents.parquet`` and ``alerts.jsonl`` into ``directory`` (a report's temporary folder)."""
        write_incidents(Path(directory) / INCIDENTS_FILE, self.incidents)
        atomic_write_text(Path(directory) / ALERTS_FILE, alerts_jsonl(self.alerts))

    def summary(self) -> dict:
        """The keys this view adds to ``summary.json``."""
        alerting = self.hosts[self.hosts["alert"]]
        return {
            "incidents": len(self.incidents),
            "incidents_by_severity": {str(k): int(v) for k, v in
                                      self.incidents["severity_label"].value_counts().sort_index().items()},
            "alerts": len(self.alerts), "alerts_per": self.config.alerts_per,
            "alert_schema_version": ALERT_SCHEMA_VERSION, "alerts_suppressed": dict(self.suppressed),
            "hosts_alerting": alerting["address"].tolist(),
            "evidence": {"alert_level": self.config.alert_level, "half_life_h": self.config.half_life_h,
                         "window_s": self.config.evidence_window_s},
        }


def analyse_batch(lake_root: Path, batch_id: str, flows: pd.DataFrame, scores: pd.DataFrame, model_version: str,
                  config: AnalystConfig | None = None) -> AnalystResult:
    """Incidents, host table update, alerts for one scored batch (``scores`` aligned with ``flows``, with
    ``score``, ``is_anomaly``, ``predicted_class`` and optionally ``reason`` / ``explanation``)."""
    config = config or AnalystConfig()
    frame = flows.reset_index(drop=True).copy()
    for column in ("score", "is_anomaly", "predicted_class", "reason", "explanation"):
        frame[column] = (scores[column].to_numpy() if column in scores.columns else None)
    for column in SEVERITY_COLUMNS:  # the per-model scores the severity rule reads, when the scorer gave them
        if column in scores.columns:
            frame[column] = scores[column].to_numpy()
    frame["incident_id"] = assign_incidents(frame, batch_id, config)
    incidents = build_incidents(frame, frame["incident_id"], batch_id, config)
    _fill_reasons(frame, incidents)
    hosts = HostStore(lake_root).update(batch_id, frame, config)
    store = VerdictStore(Path(lake_root))
    alerts = list(incident_alerts(incidents, model_version) if config.alerts_per == "incident"
                  else flow_alerts(frame, incidents, batch_id, model_version))
    kept, suppressed = suppress(alerts, store.allowlist())
    log.info("batch %s: %d incidents, %d alerts (%d suppressed), %d hosts alerting", batch_id, len(incidents),
             len(kept), sum(suppressed.values()), int(hosts["alert"].sum()))
    return AnalystResult(columns=frame[list(ANALYST_COLUMNS)], incidents=incidents, hosts=hosts, alerts=kept,
                         suppressed=suppressed, verdicts=store.current_verdicts(), config=config)


def _fill_reasons(frame: pd.DataFrame, incidents: pd.DataFrame) -> None:
    """Anomalous flows not explained themselves carry their incident's reason (prefixed 'incident: ')."""
    missing = frame["incident_id"].notna() & frame["reason"].isna()
    if missing.any():
        by_id = incidents.set_index("incident_id")["reason"]
        frame.loc[missing, "reason"] = ("incident: " + frame.loc[missing, "incident_id"].map(by_id)
                                        .fillna("no reason recorded").astype(str))


def suppress(alerts: list[dict], allowlist: Allowlist) -> tuple[list[dict], dict[str, int]]:
    """Alerts not matching the allowlist, and the suppressed counts by matching entry kind."""
    kept, counts = [], {"address": 0, "subnet": 0, "port": 0, "signature": 0}
    for alert in alerts:
        hit = allowlist.matches(alert["source"]["ip"], alert["destination"]["ip"], alert["destination"]["port"],
                                alert["flowhawk"]["signature"])
        if hit is None:
            kept.append(alert)
        else:
            counts[hit] += 1
    return kept, counts
