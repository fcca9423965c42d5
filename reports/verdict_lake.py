"""Verdicts as labels: a read-only view of the lake whose flows carry the labels the analysts' verdicts give,
and ``check_target``: does a verdict's target exist in the lake's reports.

``VerdictLabelledLake(root)`` is a ``lake.store.Lake`` whose ``read_table`` (and so ``read_flows`` and every
model function that reads through it, e.g. ``model.refresh.refresh_model``) replaces ``Label`` / ``Attack`` by
``verdict_labels`` where a verdict covers the flow (false positive -> benign; confirmed -> the
class given, else the predicted one). Flows without a verdict keep their own labels. Nothing on disk changes:
the flows stay as ingested, the verdicts stay append-only. ``flowhawk verdict refresh`` runs the usual refresh
(``refresh_model``, same promotion guard) on that view, with the batches verdicts label as its new batches; the
view is a ``model.verdict_source.VerdictSource``, so the refresh weights the verdict-labelled flows
(``RefreshConfig.verdict_weight``) and its guard rejects a candidate that contradicts them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flowhawk.extractors.schema import FLOW_SCHEMA
from flowhawk.lake.store import Lake
from flowhawk.reports.hosts import HostStore
from flowhawk.reports.incidents import read_incidents
from flowhawk.reports.scored import ReportPaths, reported_batches
from flowhawk.reports.verdicts import TARGET_KINDS, VerdictStore

LABEL_COLUMNS = ["batch_id", "source_file", "flow_index", "Label", "Attack", "verdict_on", "verdict_id"]
_KEY = ["batch_id", "source_file", "flow_index"]


def verdict_labels(lake_root: Path) -> pd.DataFrame:
    """Labels the current verdicts give to lake flows (``LABEL_COLUMNS``; a flow is keyed by its lake
    ``batch_id``, ``source_file`` and ``flow_index``): ``false_positive`` -> Label 0 / ``Benign``,
    ``confirmed`` -> Label 1 / the verdict's attack class, else the predicted class. A host verdict covers the
    host's anomalous flows in every report, an incident verdict its flows, a flow verdict the one flow; the most
    specific wins (flow, then incident, then host). ``VerdictLabelledLake`` applies them for a refresh."""
    verdicts = VerdictStore(Path(lake_root)).current_verdicts()
    reports_dir = Lake(lake_root).reports_dir
    if verdicts.empty:
        return pd.DataFrame(columns=LABEL_COLUMNS)
    parts = []
    for report in reported_batches(reports_dir):
        flows = pq.read_table(ReportPaths.for_batch(reports_dir, report).scored_flows,
                              columns=[*_KEY, "IPV4_SRC_ADDR", "is_anomaly", "predicted_class", "incident_id"]
                              ).to_pandas()
        flows["flow"] = report + ":" + flows.index.astype(str)
        for kind, column in (("host", "IPV4_SRC_ADDR"), ("incident", "incident_id"), ("flow", "flow")):
            chosen = verdicts[verdicts["target_kind"] == kind].set_index("target")
            hit = flows[flows[column].isin(chosen.index) & (flows["is_anomaly"] | (kind == "flow"))]
            if not hit.empty:
                parts.append(_labelled(hit, chosen.loc[hit[column]], kind))
    if not parts:
        return pd.DataFrame(columns=LABEL_COLUMNS)
    order = {"host": 0, "incident": 1, "flow": 2}
    labels = pd.concat(parts, ignore_index=True).sort_values("verdict_on", key=lambda s: s.map(order), kind="stable")
    return labels.drop_duplicates(_KEY, keep="last").reset_index(drop=True)[LABEL_COLUMNS]


def _labelled(flows: pd.DataFrame, verdicts: pd.DataFrame, kind: str) -> pd.DataFrame:
    confirmed = verdicts["verdict"].to_numpy() == "confirmed"
    attack = verdicts["attack_class"].fillna(pd.Series(flows["predicted_class"].to_numpy(), index=verdicts.index))
    return pd.DataFrame({**{k: flows[k].to_numpy() for k in _KEY}, "Label": confirmed.astype("int8"),
                         "Attack": pd.Series(attack.to_numpy(), dtype=object).where(confirmed, "Benign").to_numpy(),
                         "verdict_on": kind, "verdict_id": verdicts["id"].to_numpy()})


def check_target(lake_root: Path, kind: str, target: str) -> None:
    """ValueError (one line) unless ``target`` names an incident, host or flow of the lake's reports."""
    lake = Lake(lake_root)
    if kind == "incident":
        if target not in set(read_incidents(lake.reports_dir)["incident_id"]):
            raise ValueError(f"{lake.reports_dir}: no incident {target!r} in any batch report")
    elif kind == "host":
        if target not in set(HostStore(lake.root).read()["address"]):
            raise ValueError(f"{lake.root / 'hosts'}: no host {target!r} in the host table")
    elif kind == "flow":
        batch, _, row = target.rpartition(":")
        path = ReportPaths.for_batch(lake.reports_dir, batch).scored_flows if batch else None
        if not row.isdigit() or path is None or not path.is_file():
            raise ValueError(f"flow {target!r}: expected <report batch>:<row> of an existing report")
        if int(row) >= pq.ParquetFile(path).metadata.num_rows:
            raise ValueError(f"{path}: has no row {row}")
    else:
        raise ValueError(f"verdict target kind {kind!r}: must be one of {', '.join(TARGET_KINDS)}")


class VerdictLabelledLake(Lake):
    """The lake as training code sees it once verdicts are applied (read-only use)."""

    def __init__(self, root: Path | str) -> None:
        super().__init__(root)
        labels = verdict_labels(self.root)
        self.verdict_labels = labels.set_index(_KEY)[["Label", "Attack"]] if len(labels) else None

    def read_table(self, batches: list[str] | None = None, columns: list[str] | None = None) -> pa.Table:
        if self.verdict_labels is None or (columns is not None and not {"Label", "Attack"} & set(columns)):
            return super().read_table(batches, columns)
        wanted = list(columns) if columns is not None else list(FLOW_SCHEMA.names)
        extra = [c for c in _KEY if c not in wanted]
        table = super().read_table(batches, wanted + extra)
        frame = table.to_pandas()
        hit = self.verdict_labels.reindex(pd.MultiIndex.from_frame(frame[_KEY]))
        covered = hit["Label"].notna().to_numpy()
        if covered.any():
            if "Label" in frame.columns:
                frame.loc[covered, "Label"] = hit["Label"].to_numpy()[covered]
            if "Attack" in frame.columns:
                frame.loc[covered, "Attack"] = hit["Attack"].to_numpy()[covered]
        schema = pa.schema([FLOW_SCHEMA.field(c) for c in wanted])
        return pa.Table.from_pandas(frame[wanted], schema=schema, preserve_index=False)

    def verdict_keys(self) -> pd.DataFrame:
        """``batch_id``, ``source_file``, ``flow_index`` of the flows verdicts label
        (``model.verdict_source.VerdictSource``: the refreshes teach these flows and their guards check them)."""
        if self.verdict_labels is None:
            return pd.DataFrame(columns=_KEY)
        return self.verdict_labels.index.to_frame(index=False)[_KEY]

    def verdict_batches(self) -> list[str]:
        """Lake batches holding at least one flow a verdict labels."""
        if self.verdict_labels is None:
            return []
        found = set(self.verdict_labels.index.get_level_values("batch_id"))
        return [b for b in self.batches() if b in found]
