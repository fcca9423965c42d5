"""Prefect tasks. Each one calls one library function (lake, model, reports) and returns its result.

Only ``ingest_file`` persists its result (JSON, no pickle) so that it can be cached, keyed on the file's
content (sha256), never on its path. Every other task passes big objects (frames, networks) in memory, so it
neither caches nor hashes its inputs (``NO_CACHE``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import update_progress_artifact
from prefect.blocks.core import Block
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from flowhawk.common.files import sha256_file
from flowhawk.extractors.base import BadInputError
from flowhawk.flows.params import Location, local_root
from flowhawk.lake.inbox import Claim, Inbox, InboxConfig
from flowhawk.lake.ingest import IngestConfig, ingest_paths
from flowhawk.lake.store import Lake
from flowhawk.model.baselines import BaselineConfig
from flowhawk.model.config import TrainConfig
from flowhawk.model.lifecycle import TrainOutcome, ensure_first_model, train_and_register
from flowhawk.model.novelty import score_novelty
from flowhawk.model.novelty_config import NoveltyConfig
from flowhawk.model.novelty_guard import GuardConfig
from flowhawk.model.novelty_lifecycle import (
    BaselineOutcome,
    BaselineRefresh,
    batch_context,
    ensure_baseline,
    maybe_refresh_baseline,
    novelty_registry,
)
from flowhawk.model.novelty_store import TrainedNovelty
from flowhawk.model.refresh import RefreshConfig, RefreshResult, refresh_model
from flowhawk.model.registry import Registry
from flowhawk.model.scoring import score_frame
from flowhawk.model.trained import TrainedModel
from flowhawk.reports.alerts import alert_digest
from flowhawk.reports.analyst import AnalystResult
from flowhawk.reports.analyst import analyse_batch as analyse
from flowhawk.reports.analyst_config import AnalystConfig
from flowhawk.reports.combine import combine_scores
from flowhawk.reports.explain import explain_supervised
from flowhawk.reports.scored import (
    ReportConfig,
    ReportPaths,
    ScoreMeta,
    covered_lake_batches,
    write_scored_report,
)
from flowhawk.reports.scored import (
    report_exists as report_complete,
)
from flowhawk.reports.verdict_lake import VerdictLabelledLake

INGEST_CACHE_VERSION = "v1"  # bump when ingest output for the same bytes changes
CACHE_DIR = ".prefect-cache"  # under the lake: hidden from dataset discovery, removed with the lake
_PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
MEMORY_TASK = {"cache_policy": NO_CACHE, "persist_result": False}  # tasks that pass frames/networks in memory


# --- retry policy ---------------------------------------------------------------------------------------
def is_transient_error(exc: BaseException | None) -> bool:
    """Worth retrying: an OS-level I/O error that may pass (EIO, EAGAIN, a concurrent writer's rename...).

    Never a malformed input (``BadInputError``: it is quarantined) and never a permanent condition (missing
    file, permission denied, a directory).
    """

    if exc is None or isinstance(exc, BadInputError):
        return False
    return isinstance(exc, OSError) and not isinstance(exc, _PERMANENT_OS_ERRORS)


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only when the failure was a transient I/O error."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # the failure cannot be read back: do not retry blindly
        return False
    transient = is_transient_error(exc if isinstance(exc, BaseException) else None)
    get_run_logger().log(20 if transient else 10, "%s: %s (%s)", task_run.name, type(exc).__name__,
                         "transient, retrying" if transient else "not retried")
    return transient


# --- ingest ----------------------------------------------------------------------------------------------
def content_cache_key(context: Any, parameters: dict[str, Any]) -> str | None:
    """Cache key of ``ingest_file``: the sha256 of the file's bytes (and of its labels file), never its path.

    The cache itself lives under the lake (see ``ingest_storage``), so one key never spans two lakes.
    """

    try:
        content = sha256_file(Path(parameters["path"]))
        labels = sha256_file(Path(parameters["labels"])) if parameters.get("labels") else "nolabels"
    except OSError:
        return None  # unreadable now: no caching, the task itself reports the problem
    return f"ingest-{INGEST_CACHE_VERSION}-{content}-{labels}-{parameters.get('source', 'auto')}"


def ingest_storage(lake: Path) -> Path:
    """Where ``ingest_file`` results (the cache) live: a hidden folder of the lake (a Path is a local
    result store for Prefect; no server-side block needed)."""
    return (Path(lake) / CACHE_DIR).resolve()


@task(name="ingest-file", task_run_name="ingest {path.name}", cache_key_fn=content_cache_key,
      cache_expiration=timedelta(days=90), persist_result=True, result_serializer="json",
      retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=2), retry_jitter_factor=0.5,
      retry_condition_fn=retry_if_transient)
def ingest_file(path: Path, lake: Location, labels: Path | None = None, source: str = "auto") -> dict[str, Any]:
    """One capture into its own lake batch (``lake.ingest.ingest_paths``); a bad capture is quarantined
    (returned with status ``quarantined`` and its reason), not raised. ``lake`` may be an ``s3://`` URL
    (resolved to this process's working copy: a Dask worker on another machine has its own)."""
    lake = local_root(lake)
    summary = ingest_paths([path], IngestConfig(lake=lake, labels=labels, source=source, quarantine="copy"))
    result = summary.files[0].to_dict()
    result["file"] = Path(path).name
    if summary.batch_id is None and result["status"] == "duplicate":  # which batch already holds the content
        summary.batch_id = Lake(lake).ledger().get(result["sha256"])
    result["lake_batch"] = summary.batch_id
    get_run_logger().info("%s: %s, %d flows%s", result["file"], result["status"], result["flows"],
                          f" ({result['reason']})" if result.get("reason") else "")
    return result


@task(name="quarantine-file", **MEMORY_TASK)
def quarantine_file(lake: Path, path: Path, reason: str) -> str:
    """Keep a copy and the reason in the lake's quarantine (the inbox moves the original)."""

    return str(Lake(lake).quarantine(Path(path), None, reason, move=False))


@task(name="lake-batches", **MEMORY_TASK)
def lake_batches(lake: Path) -> list[str]:
    return Lake(lake).batches()


@task(name="labelled-batches", **MEMORY_TASK)
def labelled_batches(lake: Path) -> list[str]:
    """Lake batches with at least one labelled flow."""

    return Lake(lake).labelled_batches()


@task(name="read-flows", **MEMORY_TASK)
def read_flows(lake: Path, batches: list[str] | None) -> pd.DataFrame:
    return Lake(lake).read_flows(batches)


# --- inbox ----------------------------------------------------------------------------------------------
@task(name="claim-inbox", **MEMORY_TASK)
def claim_inbox(inbox: Path, settle_seconds: float, max_files: int) -> list[Claim]:
    return Inbox(InboxConfig(Path(inbox), settle_seconds, max_files)).claim()


@task(name="finish-claim", **MEMORY_TASK)
def finish_claim(inbox: Path, claim: Claim, outcomes: dict[str, dict]) -> dict:
    return Inbox(InboxConfig(Path(inbox))).finish(claim, outcomes)


@task(name="covered-batches", **MEMORY_TASK)
def covered_batches(lake: Path) -> set[str]:
    return covered_lake_batches(Lake(lake).reports_dir)


# --- model ----------------------------------------------------------------------------------------------
@task(name="current-model", **MEMORY_TASK)
def current_model(models: Path) -> str | None:
    return Registry(models).current()


_LOADED: dict[tuple[str, str], TrainedModel] = {}  # (registry, version) -> TrainedModel; versions never change


@task(name="load-model", **MEMORY_TASK)
def load_model(models: Path, version: str) -> TrainedModel:
    """``Registry.load`` (checked), kept for the life of the process: a version folder is immutable, so
    ``process_inbox`` can load it while ingest runs and scoring finds it ready."""

    key = (str(Path(models).resolve()), version)
    if key not in _LOADED:
        _LOADED.clear()  # one model at a time
        _LOADED[key] = Registry(models).load(version)
    return _LOADED[key]


def _epoch_logger(config: TrainConfig, progress_id: Any) -> Callable[[dict[str, Any]], None]:
    logger = get_run_logger()

    def on_epoch(entry: dict[str, Any]) -> None:
        logger.info("epoch %d/%d: loss %.4f, val_loss %.4f, val_f1 %.4f (%.1f s)", entry["epoch"], config.epochs,
                    entry["loss"], entry["val_loss"], entry["val_f1"], entry["seconds"])
        if progress_id is not None:
            update_progress_artifact(progress_id, 100.0 * entry["epoch"] / config.epochs)

    return on_epoch


@task(name="train-and-register", **MEMORY_TASK)
def train_register(lake: Path, models: Path, config: TrainConfig, baselines: BaselineConfig,
                   batches: list[str] | None, promote: str, progress_id: Any = None) -> TrainOutcome:
    """``model.lifecycle.train_and_register``; each epoch is logged (and moves the progress artifact)."""
    return train_and_register(Lake(lake), Registry(models), config, batches, promote, baselines,
                              on_epoch=_epoch_logger(config, progress_id))


@task(name="first-model", **MEMORY_TASK)
def first_model(lake: Path, models: Path, config: TrainConfig, baselines: BaselineConfig,
                progress_id: Any = None) -> TrainOutcome | None:
    """``model.lifecycle.ensure_first_model``: train and promote one unless a model is current."""
    return ensure_first_model(Lake(lake), Registry(models), config, baselines,
                              on_epoch=_epoch_logger(config, progress_id))


@task(name="promote-model", **MEMORY_TASK)
def promote_model(models: Path, version: str, reason: str) -> None:
    Registry(models).promote(version, reason)


@task(name="refresh", **MEMORY_TASK)
def refresh(models: Path, lake: Path, new_batches: list[str] | None, config: RefreshConfig) -> RefreshResult:
    """``model.refresh.refresh_model``: fine-tune, compare on held-out flows, promote only if not worse."""

    return refresh_model(Registry(models), Lake(lake), new_batches, config)


@task(name="batches-new-to-model", **MEMORY_TASK)
def batches_new_to_model(models: Path, lake: Path) -> list[str]:
    """``Registry.batches_new_to_current`` of the lake's labelled batches."""
    return Registry(models).batches_new_to_current(Lake(lake).labelled_batches())


@task(name="score-flows", **MEMORY_TASK)
def score_flows(trained: TrainedModel, frame: pd.DataFrame, context: pd.DataFrame | None = None) -> pd.DataFrame:
    """``model.scoring.score_frame`` (windows reach back into ``context``, the hosts' earlier flows)."""
    return score_frame(trained, frame, context=context)


# --- novelty (label-free) ----------------------------------------------------------------------------------
@task(name="current-novelty", **MEMORY_TASK)
def current_novelty(models: Path) -> str | None:
    return novelty_registry(models).current()


_NOVELTY_LOADED: dict[tuple[str, str], TrainedNovelty] = {}


@task(name="load-novelty", **MEMORY_TASK)
def load_novelty(models: Path, version: str) -> TrainedNovelty:
    """``Registry.load`` of the novelty registry, kept for the life of the process (versions never change)."""
    key = (str(Path(models).resolve()), version)
    if key not in _NOVELTY_LOADED:
        _NOVELTY_LOADED.clear()
        _NOVELTY_LOADED[key] = novelty_registry(models).load(version)  # type: ignore[assignment]
    return _NOVELTY_LOADED[key]


@task(name="baseline-step", **MEMORY_TASK)
def baseline_step(lake: Path, models: Path, config: NoveltyConfig, guard: GuardConfig,
                  min_flows: int) -> BaselineOutcome | None:
    """``model.novelty_lifecycle.ensure_baseline``: count the baseline, train the novelty model once complete."""
    return ensure_baseline(Lake(lake), novelty_registry(models), config, guard, min_flows)


@task(name="refresh-novelty", **MEMORY_TASK)
def refresh_novelty(lake: Path, models: Path, config: NoveltyConfig, after_batches: int,
                    drifted: bool) -> BaselineRefresh | None:
    """``model.novelty_lifecycle.maybe_refresh_baseline`` on the lake as the analysts' verdicts label it
    (``reports.verdict_lake.VerdictLabelledLake``: flows marked false positive are taught as normal, confirmed
    ones kept above the alert level): keep the baseline current (None: not time yet)."""
    return maybe_refresh_baseline(VerdictLabelledLake(lake), novelty_registry(models), config, after_batches,
                                  drifted)


@task(name="score-novelty", **MEMORY_TASK)
def novelty_scores(trained: TrainedNovelty, frame: pd.DataFrame, context: pd.DataFrame | None = None
                   ) -> pd.DataFrame:
    """``model.novelty.score_novelty`` (anomalous flows explained; windows reach back into ``context``)."""
    return score_novelty(trained, frame, context=context)


@task(name="host-context", **MEMORY_TASK)
def host_context(lake: Path, lake_batches: list[str], frame: pd.DataFrame, window: int) -> pd.DataFrame | None:
    """``model.novelty_lifecycle.batch_context``: the hosts' last flows from earlier lake batches, so a batch's
    windows (of either model) reach back across batch boundaries."""
    return batch_context(Lake(lake), lake_batches, frame, window)


@task(name="combine-scores", **MEMORY_TASK)
def combined_scores(n: int, supervised: pd.DataFrame | None, novelty: pd.DataFrame | None) -> pd.DataFrame:
    """``reports.combine.combine_scores``: one verdict per flow from the models present."""
    return combine_scores(n, supervised, novelty)


# --- alert delivery (optional) -------------------------------------------------------------------------------
@task(name="notify-alerts", **MEMORY_TASK)
def notify_alerts(block_name: str, summary: dict) -> None:
    """Tell the Prefect notification block ``block_name`` (e.g. ``custom-webhook/soc``) about a batch's alerts
    (``reports.alerts.alert_digest``)."""
    subject, body = alert_digest(summary)
    block = Block.load(block_name)
    block.notify(body=body, subject=subject)


# --- reports --------------------------------------------------------------------------------------------
@task(name="explain-flows", **MEMORY_TASK)
def explain_flows(trained: TrainedModel, flows: pd.DataFrame, scores: pd.DataFrame,
                  config: AnalystConfig, context: pd.DataFrame | None = None) -> pd.DataFrame:
    """``reports.explain.explain_supervised``: reason and explanation columns added to ``scores``."""
    explained = explain_supervised(trained, flows, scores, max_flows=config.explain_max_flows,
                                   reference=config.explain_reference, samples=config.explain_samples,
                                   context=context, scope=config.explain_scope)
    return scores.assign(reason=explained["reason"].to_numpy(), explanation=explained["explanation"].to_numpy())


@task(name="analyse-batch", **MEMORY_TASK)
def analyse_batch(lake: Path, batch_id: str, flows: pd.DataFrame, scores: pd.DataFrame, model_version: str,
                  config: AnalystConfig) -> AnalystResult:
    """``reports.analyst.analyse_batch``: incidents, the lake's host table, alerts (allowlist applied)."""
    return analyse(Path(lake), batch_id, flows, scores, model_version, config)


@task(name="write-report", **MEMORY_TASK)
def write_report(lake: Path, batch_id: str, flows: pd.DataFrame, scores: pd.DataFrame, meta: ScoreMeta, top_n: int,
                 extra: dict | None, analyst: AnalystResult | None = None) -> tuple[ReportPaths, dict]:
    return write_scored_report(Lake(lake).reports_dir, batch_id, flows, scores, meta, ReportConfig(top_n=top_n),
                               extra, analyst)


@task(name="report-exists", **MEMORY_TASK)
def report_exists(lake: Path, batch_id: str) -> bool:
    return report_complete(Lake(lake).reports_dir, batch_id)


def timed(seconds: dict[str, float], stage: str, started: float) -> None:
    """Add the time since ``started`` to ``seconds[stage]``."""
    seconds[stage] = round(seconds.get(stage, 0.0) + time.perf_counter() - started, 3)
