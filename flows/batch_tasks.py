"""Per-batch tasks that run where the flow's task runner puts them (a thread, or a Dask worker process).

They take and return paths and small JSON-able values only (no frames, no networks), so a Dask worker on
another machine can run them against the shared lake and registry; each worker process keeps the models it
loaded (``tasks.load_model`` / ``tasks.load_novelty`` caches): one load per worker, not per task.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, task

from flowhawk.flows.params import Location, local_root, use_kernel_settings_from_env
from flowhawk.flows.tasks import (
    MEMORY_TASK,
    analyse_batch,
    combined_scores,
    explain_flows,
    host_context,
    load_model,
    load_novelty,
    novelty_scores,
    read_flows,
    score_flows,
    timed,
    write_report,
)
from flowhawk.model.novelty_lifecycle import drift
from flowhawk.model.novelty_store import TrainedNovelty
from flowhawk.model.trained import TrainedModel
from flowhawk.reports.analyst_config import AnalystConfig
from flowhawk.reports.scored import ScoreMeta

_LOAD_LOCK = threading.Lock()  # tasks on threads of one process: one load (MindSpore's context is set once)


def _models(models: Path, version: str | None, novelty_version: str | None
            ) -> tuple[TrainedModel | None, TrainedNovelty | None]:
    with _LOAD_LOCK:
        return (load_model.fn(models, version) if version else None,
                load_novelty.fn(models, novelty_version) if novelty_version else None)


@task(name="warm-model", **MEMORY_TASK)
def warm_model(models: Location, version: str) -> str:
    """Load ``version`` into this process's model cache (so scoring finds it ready); returns the version."""
    use_kernel_settings_from_env()  # before any network is built: a Dask worker's thread count
    _models(local_root(models), version, None)
    return version


@task(name="score-and-report", task_run_name="score {batch_id}", **MEMORY_TASK)
def score_and_report(lake: Location, models: Location, version: str | None, novelty_version: str | None, batch_id: str,
                     lake_batches: list[str], top_n: int = 25, timings: dict[str, float] | None = None,
                     extra: dict[str, Any] | None = None, config: AnalystConfig | None = None) -> dict[str, Any]:
    """Score the flows of ``lake_batches`` with the supervised model ``version`` and / or the novelty model
    ``novelty_version`` (none: the batch is reported unscored, "baselining"), explain the anomalies, build
    incidents and update the host table, and write the report ``<lake>/reports/batch=<batch_id>/``; returns
    its summary (with ``paths``)."""
    use_kernel_settings_from_env()  # a Dask worker is a process of its own
    lake, models = local_root(lake), local_root(models)  # an s3:// URL: this worker's own working copy
    config = config or AnalystConfig()
    seconds = dict(timings or {})
    t0 = time.perf_counter()
    supervised, novelty = _models(models, version, novelty_version)
    timed(seconds, "load_model", t0)
    t0 = time.perf_counter()
    flows = read_flows.fn(lake, lake_batches)
    timed(seconds, "read_flows", t0)
    context = None
    windows = ([supervised.train_config.window] if supervised else []) + ([novelty.config.window] if novelty else [])
    if windows:
        t0 = time.perf_counter()
        context = host_context.fn(lake, list(lake_batches), flows, max(windows))
        timed(seconds, "host_context", t0)
    scores, models_used, drift_figures = _scores(flows, supervised, novelty, config, seconds, context)
    model_version = " + ".join([*([version] if version else []),
                                *([f"novelty {novelty_version}"] if novelty_version else [])]) or "baselining"
    t0 = time.perf_counter()
    analyst = analyse_batch.fn(lake, batch_id, flows, scores, model_version, config)
    timed(seconds, "incidents_hosts", t0)
    threshold = float(supervised.threshold) if supervised is not None else (
        1.0 - novelty.config.budget if novelty is not None else float("nan"))
    meta = ScoreMeta(model_version=model_version, threshold=threshold, timings_s=seconds)
    status = "scored" if models_used else "baselining"
    _, summary = write_report.fn(lake, batch_id, flows, scores, meta, top_n,
                                 {"lake_batches": list(lake_batches), "status": status, "models": models_used,
                                  "drift": drift_figures, **(extra or {})}, analyst)
    get_run_logger().info("batch %s (%s): %d flows, %d anomalies", batch_id, status, summary["flows"],
                          summary["anomalies"])
    return summary


def _scores(flows: pd.DataFrame, supervised: TrainedModel | None, novelty: TrainedNovelty | None,
            config: AnalystConfig, seconds: dict[str, float], context: pd.DataFrame | None
            ) -> tuple[pd.DataFrame, dict[str, str], dict | None]:
    """Each model present scores with the hosts' earlier flows as ``context`` (the supervised one also explains
    its anomalies), then one verdict per flow."""
    s_scores = n_scores = None
    used: dict[str, str] = {}
    if supervised is not None:
        t0 = time.perf_counter()
        s_scores = score_flows.fn(supervised, flows, context)
        timed(seconds, "score", t0)
        t0 = time.perf_counter()
        s_scores = explain_flows.fn(supervised, flows, s_scores, config, context)
        timed(seconds, "explain", t0)
        used["supervised"] = supervised.task
    if novelty is not None:
        t0 = time.perf_counter()
        n_scores = novelty_scores.fn(novelty, flows, context)
        timed(seconds, "score_novelty", t0)
        used["novelty"] = novelty.config.objective
    figures = drift(n_scores["novelty_p"].to_numpy()) if n_scores is not None else None
    return combined_scores.fn(len(flows), s_scores, n_scores), used, figures
