"""``process_inbox``: the scheduled entry point (claim, ingest, train if needed, score, report, file away)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from flowhawk.flows.batch_tasks import warm_model
from flowhawk.flows.ingest_flow import INGEST_WORKERS, ingest_batch
from flowhawk.flows.model_flows import refresh_model, train_model
from flowhawk.flows.params import (
    DEFAULT_INBOX,
    DEFAULT_INBOX_OPTIONS,
    DEFAULT_LAKE,
    DEFAULT_MODELS,
    InboxOptions,
    Location,
    local_root,
    use_kernel_settings_from_env,
)
from flowhawk.flows.score_flow import score_batch
from flowhawk.flows.tasks import (
    baseline_step,
    batches_new_to_model,
    claim_inbox,
    covered_batches,
    current_model,
    current_novelty,
    finish_claim,
    labelled_batches,
    refresh_novelty,
    report_exists,
    timed,
)
from flowhawk.lake.inbox import capture_totals, read_capture_stats


@flow(name="process-inbox", persist_result=False, result_serializer="json",
      log_prints=False, task_runner=ThreadPoolTaskRunner(max_workers=INGEST_WORKERS))
def process_inbox(inbox: Path = DEFAULT_INBOX, lake: Location = DEFAULT_LAKE, models: Location = DEFAULT_MODELS,
                  options: InboxOptions = DEFAULT_INBOX_OPTIONS) -> dict[str, Any]:
    """Claim new files of ``inbox`` (and batches abandoned by killed runs), ingest them into ``lake``, train
    a first model when there is none and labels are available, score and report each batch, then move its
    files to ``done/`` or ``quarantine/``. Refreshes the model when enough new labelled batches arrived, and the
    novelty model when enough batches are new to it (or one drifted). ``lake`` / ``models`` may be ``s3://``
    URLs: the tasks a Dask cluster runs get the URL, so a worker on another machine works in its own working
    copy."""
    logger = get_run_logger()
    use_kernel_settings_from_env()
    batches: list[dict[str, Any]] = []
    while len(batches) < options.max_batches:
        t0 = time.perf_counter()
        claims = claim_inbox(inbox, options.settle_seconds, options.max_files)
        if not claims:
            break
        claim_seconds = time.perf_counter() - t0
        try:
            for claim in claims:
                batches.append(_process_claim(claim, Path(inbox), lake, models, options, claim_seconds))
        finally:
            for claim in claims:
                claim.release()
        if any(b["status"] == "waiting for a model" for b in batches):
            break  # claiming more would only park more batches
    if not batches:
        logger.info("inbox %s: nothing to do", inbox)
    refreshed = _maybe_refresh(local_root(lake), local_root(models), options)
    return {"batches": batches, "refresh": refreshed,
            "novelty_refresh": _maybe_refresh_baseline(local_root(lake), local_root(models), options, batches)}


def _process_claim(claim: Any, inbox: Path, location: Location, registry: Location, options: InboxOptions,
                   claim_seconds: float) -> dict[str, Any]:
    logger = get_run_logger()
    lake, models = local_root(location), local_root(registry)  # locally; the locations go to worker tasks
    seconds = {"claim": round(claim_seconds, 3)}
    t0 = time.perf_counter()
    # ingest and score run inline (their tasks under this run): a subflow costs 1-2 s of API round trips
    # and heartbeat shutdown each; train and refresh, rare and long, stay subflows with their own runs
    version = current_model(models)
    preload = warm_model.submit(registry, version) if version else None  # overlaps MindSpore start with ingest
    files = ingest_batch.fn(claim.captures, location, claim.labels, options.source)
    timed(seconds, "ingest", t0)
    if preload is not None:
        preload.wait()
    outcomes = {r["file"]: r for r in files}
    record = {"batch_id": claim.claim_id, "resumed": claim.resumed, "files": _file_rows(files), "report": None}
    capture = read_capture_stats(claim)  # live captures: packets lost by the kernel / the disk guard
    if capture:
        record["capture"] = capture_totals(capture)
    if report_exists(lake, claim.claim_id):  # a resumed claim killed after its report was written
        logger.info("batch %s: report already written; filing the files away", claim.claim_id)
        finish_claim(inbox, claim, outcomes)
        return {**record, "status": "reported"}
    good = {r["lake_batch"] for r in files if r["status"] in ("ingested", "duplicate") and r.get("lake_batch")}
    todo = sorted(good - covered_batches(lake))
    if not todo:
        logger.info("batch %s: nothing new to report (%s)", claim.claim_id,
                    ", ".join(f"{r['file']}: {r['status']}" for r in files))
        finish_claim(inbox, claim, outcomes)
        return {**record, "status": "nothing new"}
    state = _model_state(claim, lake, models, options, seconds)
    if state == "waiting for a model":
        return {**record, "status": state}
    summary = score_batch.fn(claim.claim_id, location, registry, todo, options.top_n, seconds,
                             {"claim_id": claim.claim_id, "files": _file_rows(files), "baseline": state,
                              **({"capture": record["capture"]} if "capture" in record else {})},
                             baselining=state is not None, notify_block=options.notify_block,
                             explain_reference=options.explain_reference)
    finish_claim(inbox, claim, outcomes)
    return {**record, "status": "reported" if state is None else "baselining", "report": summary["paths"],
            "flows": summary["flows"], "anomalies": summary["anomalies"], "drift": summary.get("drift")}


def _model_state(claim: Any, lake: Path, models: Path, options: InboxOptions, seconds: dict[str, float]
                 ) -> str | dict[str, Any] | None:
    """None when a model can score the batch; a baseline record when the batch goes into the label-free
    baseline (reported unscored); "waiting for a model" when a supervised first model could not be made."""
    logger = get_run_logger()
    if current_model(models) is not None or current_novelty(models) is not None:
        return None
    t0 = time.perf_counter()
    if options.train_if_missing and labelled_batches(lake):  # labels: a supervised first model (model.lifecycle)
        trained = train_model(lake, models, options.train, only_if_no_model=True)
        timed(seconds, "train", t0)
        if current_model(models) is None:
            logger.warning("batch %s: no model could be made current (%s); the batch waits in %s", claim.claim_id,
                           trained.get("reason") or "see the train-model run", claim.directory)
            return "waiting for a model"
        return None
    novelty = options.novelty  # no labels: this batch joins the baseline; the novelty model learns it once complete
    base = baseline_step(lake, models, novelty.to_novelty_config(), novelty.to_guard_config(), novelty.baseline_flows)
    timed(seconds, "baseline", t0)
    if base is None:  # another run trained the novelty model meanwhile
        return None
    logger.info("batch %s: baselining (%d of %d flows)%s", claim.claim_id, base.flows, novelty.baseline_flows,
                f"; novelty model {base.version} trained on the baseline" if base.version else "")
    return {"flows": base.flows, "needed": novelty.baseline_flows, "batches": base.batches,
            "novelty_version": base.version, "guard": base.guard}


def _file_rows(files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ("file", "status", "flows", "packets", "reason", "sha256", "lake_batch", "kind")
    return [{k: r.get(k) for k in keys} for r in files]


def _maybe_refresh(lake: Path, models: Path, options: InboxOptions) -> dict[str, Any] | None:
    """Refresh when ``options.refresh.after_labelled_batches`` labelled batches are new to the current model.
    A failed refresh is logged (its subflow run shows the error) but does not fail the run: the batches were
    reported already."""
    wanted = options.refresh.after_labelled_batches
    version = current_model(models) if wanted else None
    if version is None:
        return None
    new = batches_new_to_model(models, lake)
    if len(new) < wanted:
        get_run_logger().info("model %s: %d new labelled batch(es), refresh at %d", version, len(new), wanted)
        return None
    state = refresh_model(lake, models, options.refresh, new, return_state=True)
    if not state.is_completed():
        get_run_logger().warning("refresh of %s failed: %s", version, state.message)
        return {"error": state.message}
    return state.result()


def _maybe_refresh_baseline(lake: Path, models: Path, options: InboxOptions, batches: list[dict[str, Any]]
                            ) -> dict[str, Any] | None:
    """Keep the label-free baseline current (``NoveltyOptions.refresh_after_batches`` / ``refresh_on_drift``).
    Like the supervised refresh, a failure is logged and does not fail the run."""
    novelty = options.novelty
    drifted = novelty.refresh_on_drift and any((b.get("drift") or {}).get("refresh_recommended") for b in batches)
    state = refresh_novelty(lake, models, novelty.to_novelty_config(), novelty.refresh_after_batches, drifted,
                            return_state=True)
    if not state.is_completed():
        get_run_logger().warning("novelty refresh failed: %s", state.message)
        return {"error": state.message}
    result = state.result()
    if result is None:
        return None
    get_run_logger().info("novelty refresh on %d batch(es)%s: %s %s (%s)", len(result.new_batches),
                          " (drift)" if drifted else "", result.version,
                          "promoted" if result.promoted else "kept as candidate", result.reason)
    return {"version": result.version, "parent": result.parent, "promoted": result.promoted, "reason": result.reason,
            "new_batches": result.new_batches, "sizes": result.sizes, "drift_triggered": drifted}
