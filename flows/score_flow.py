"""``score_batch``: the current model scores every flow of a batch; the batch report and its artifacts."""

from __future__ import annotations

import re
from typing import Any, Literal

import pandas as pd
import pyarrow.parquet as pq
from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from flowhawk.flows.batch_tasks import score_and_report
from flowhawk.flows.params import DEFAULT_LAKE, DEFAULT_MODELS, Location, local_root, use_kernel_settings_from_env
from flowhawk.flows.tasks import (
    current_model,
    current_novelty,
    notify_alerts,
)
from flowhawk.lake.store import Lake
from flowhawk.reports.analyst_config import AnalystConfig
from flowhawk.reports.config import top_anomalies
from flowhawk.reports.scored import ReportPaths, summary_markdown


def artifact_key(kind: str, batch_id: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", f"{kind}-{batch_id}".lower())).strip("-")


@flow(name="score-batch", persist_result=False, result_serializer="json", log_prints=False)
def score_batch(batch_id: str, lake: Location = DEFAULT_LAKE, models: Location = DEFAULT_MODELS,
                lake_batches: list[str] | None = None, top_n: int = 25,
                timings: dict[str, float] | None = None, extra: dict[str, Any] | None = None,
                alerts_per: str = "incident", half_life_h: float = 24.0, baselining: bool = False,
                notify_block: str | None = None, explain_reference: Literal["mean", "sampled"] = "mean"
                ) -> dict[str, Any]:
    """Score lake batches ``lake_batches`` (default: the lake batch ``batch_id``) with the current supervised
    and / or novelty model (``reports.combine``), explain the anomalies, group them into incidents, update the
    host table and write the report ``<lake>/reports/batch=<batch_id>/`` (with incidents.parquet and
    alerts.jsonl). With no model at all and ``baselining``, the report lists the flows and hosts unscored
    (status "baselining"). ``notify_block`` (a Prefect notification block, e.g. a webhook; off by default) is told
    of a batch with alerts. Returns the report summary. All of it is one task (``score_and_report``): on a
    Dask task runner it runs in a worker, which keeps the models loaded (and gets the locations as given: a
    worker on another machine resolves an ``s3://`` URL to its own working copy)."""
    location, registry = lake, models
    lake, models = local_root(lake), local_root(models)
    logger = get_run_logger()
    use_kernel_settings_from_env()
    lake_batches = list(lake_batches or [batch_id])
    progress = create_progress_artifact(0.0, key=artifact_key("scoring", batch_id),
                                        description=f"scoring batch {batch_id}")
    version, novelty_version = current_model(models), current_novelty(models)
    if version is None and novelty_version is None and not baselining:
        raise RuntimeError(f"{models}: no current model to score with (run train-model or baseline first)")
    update_progress_artifact(progress, 10.0, description="scoring")
    config = AnalystConfig(alerts_per=alerts_per, half_life_h=half_life_h, explain_reference=explain_reference)
    summary = score_and_report.submit(location, registry, version, novelty_version, batch_id, lake_batches, top_n,
                                      timings, extra, config).result()
    status = summary.get("status", "scored")
    paths = ReportPaths.for_batch(Lake(lake).reports_dir, batch_id)
    update_progress_artifact(progress, 100.0, description=f"report written: {paths.directory}")
    _publish(batch_id, summary, top_anomalies_rows(paths, top_n), summary_markdown(summary))
    if notify_block and summary.get("alerts"):
        notify_alerts(notify_block, summary)
    logger.info("batch %s (%s): %d flows, %d anomalies (%.2f %%); report %s", batch_id, status, summary["flows"],
                summary["anomalies"], 100 * summary["anomaly_rate"], paths.html)
    return summary


def top_anomalies_rows(paths: ReportPaths, top_n: int) -> list[dict[str, Any]]:
    """Rows of the top-anomalies table artifact: score and classes first, start time as UTC text."""
    top = top_anomalies(pq.read_table(paths.scored_flows), top_n)
    start = pd.to_datetime(top.pop("FLOW_START_MILLISECONDS"), unit="ms", utc=True)
    top.insert(0, "start_utc", start.dt.strftime("%Y-%m-%d %H:%M:%S.%f").str[:-3])
    first = ["score", "predicted_class", "Attack"]
    top = top[first + [c for c in top.columns if c not in first]].rename(columns={"Attack": "true_class"})
    top = top.astype(object).where(top.notna(), None)
    return top.to_dict(orient="records")


def _publish(batch_id: str, summary: dict, rows: list[dict], markdown: str) -> None:
    create_table_artifact(rows or [{"note": "no flow scored above the threshold"}],
                          key=artifact_key("top-anomalies", batch_id),
                          description=f"Top anomalies of batch {batch_id} (model {summary['model_version']})")
    create_markdown_artifact(markdown, key=artifact_key("batch-summary", batch_id),
                             description=f"Summary of batch {batch_id}")
