"""``backfill``: many captures, one batch each: ingest every file (one task per file), then score and report
every new lake batch (one task per batch) with the current model. On a Dask task runner (flows.runners) both
kinds of task run in the cluster's workers; the flow itself only hands out paths and collects summaries."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from flowhawk.flows.batch_tasks import score_and_report
from flowhawk.flows.ingest_flow import ingest_batch
from flowhawk.flows.params import DEFAULT_LAKE, DEFAULT_MODELS, Location, local_root
from flowhawk.flows.runners import LOCAL_THREADS
from flowhawk.flows.tasks import covered_batches, current_model, current_novelty


@flow(name="backfill", persist_result=False, result_serializer="json",
      log_prints=False, task_runner=ThreadPoolTaskRunner(max_workers=LOCAL_THREADS))
def backfill(paths: list[Path], lake: Location = DEFAULT_LAKE, models: Location = DEFAULT_MODELS, top_n: int = 25,
             source: Literal["auto", "pcap", "zeek", "nf-csv"] = "auto") -> list[dict[str, Any]]:
    """Ingest ``paths`` (each into its own lake batch) and report each lake batch that has no report yet
    (report id = lake batch id). Returns one row per file: status, flows, lake batch, report summary path,
    anomalies. Needs a current model (train one first); bad files are quarantined in the lake, not raised."""
    location, registry = lake, models  # as given, for the tasks a Dask worker runs (its own working copy)
    lake, models = local_root(lake), local_root(models)
    logger = get_run_logger()
    version, novelty_version = current_model(models), current_novelty(models)
    if version is None and novelty_version is None:
        raise RuntimeError(f"{models}: no current model to score the backfill with (run train-model or baseline "
                           "first)")
    files = ingest_batch.fn([Path(p) for p in paths], location, None, source)
    done = covered_batches(lake)
    todo = sorted({r["lake_batch"] for r in files if r["status"] in ("ingested", "duplicate")
                   and r.get("lake_batch")} - done)
    keys = ("file", "status", "flows", "packets", "reason", "sha256", "lake_batch", "kind")
    futures = {b: score_and_report.submit(location, registry, version, novelty_version, b, [b], top_n, extra={
        "files": [{k: r.get(k) for k in keys} for r in files if r.get("lake_batch") == b]}) for b in todo}
    summaries = {b: f.result() for b, f in futures.items()}
    rows = []
    for r in files:
        summary = summaries.get(r.get("lake_batch"))
        rows.append({"file": r["file"], "status": r["status"], "flows": r["flows"], "reason": r.get("reason"),
                     "lake_batch": r.get("lake_batch"),
                     "report": summary["paths"]["summary"] if summary else None,
                     "anomalies": summary["anomalies"] if summary else None})
    logger.info("backfill: %d file(s), %d new report(s) with model %s", len(files), len(summaries),
                " + ".join(v for v in (version, novelty_version) if v))
    return rows
