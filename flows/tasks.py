"""Prefect tasks. Each one calls one library function (lake, model, reports) and returns its result.

Only ``ingest_file`` persists its result (JSON, no pickle) so that it can be cached, keyed on the file's
content (sha256), never on its path. Every other task passes big objects (frames, networks) in memory, so it
neither caches nor hashes its inputs (``NO_CACHE``).
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

INGEST_CACHE_VERSION = "v1"  # bump when ingest output for the same bytes changes
CACHE_DIR = ".prefect-cache"  # under the lake: hidden from dataset discovery, removed with the lake
_PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
_MEMORY = {"cache_policy": NO_CACHE, "persist_result": False}


# --- retry policy ---------------------------------------------------------------------------------------
def is_transient_error(exc: BaseException | None) -> bool:
    """Worth retrying: an OS-level I/O error that may pass (EIO, EAGAIN, a concurrent writer's rename...).

    Never a malformed input (``BadInputError``: it is quarantined) and never a permanent condition (missing
    file, permission denied, a directory).
    """
    from flowhawk.extractors.base import BadInputError

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
    from flowhawk.extractors.base import sha256_file

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
def ingest_file(path: Path, lake: Path, labels: Path | None = None, source: str = "auto") -> dict[str, Any]:
    """One capture into its own lake batch (``lake.ingest.ingest_paths``); a bad capture is quarantined
    (returned with status ``quarantined`` and its reason), not raised."""
    from flowhawk.lake.ingest import IngestConfig, ingest_paths

    summary = ingest_paths([path], IngestConfig(lake=Path(lake), labels=labels, source=source, quarantine="copy"))
    result = summary.files[0].to_dict()
    result["file"] = Path(path).name
    if summary.batch_id is None and result["status"] == "duplicate":  # which batch already holds the content
        from flowhawk.lake.store import Lake

        summary.batch_id = Lake(lake).ledger().get(result["sha256"])
    result["lake_batch"] = summary.batch_id
    get_run_logger().info("%s: %s, %d flows%s", result["file"], result["status"], result["flows"],
                          f" ({result['reason']})" if result.get("reason") else "")
    return result


@task(name="quarantine-file", **_MEMORY)
def quarantine_file(lake: Path, path: Path, reason: str) -> str:
    """Keep a copy and the reason in the lake's quarantine (the inbox moves the original)."""
    from flowhawk.lake.store import Lake

    return str(Lake(lake).quarantine(Path(path), None, reason, move=False))


@task(name="lake-batches", **_MEMORY)
def lake_batches(lake: Path) -> list[str]:
    from flowhawk.lake.store import Lake

    return Lake(lake).batches()


@task(name="labelled-batches", **_MEMORY)
def labelled_batches(lake: Path) -> list[str]:
    """Lake batches with at least one labelled flow."""
    from flowhawk.lake.store import Lake
    from flowhawk.model.refresh import labelled_batches as labelled

    return labelled(Lake(lake))


@task(name="read-flows", **_MEMORY)
def read_flows(lake: Path, batches: list[str] | None) -> Any:
    from flowhawk.lake.store import Lake

    return Lake(lake).read_flows(batches)


# --- inbox ----------------------------------------------------------------------------------------------
@task(name="claim-inbox", **_MEMORY)
def claim_inbox(inbox: Path, settle_seconds: float, max_files: int) -> list[Any]:
    from flowhawk.lake.inbox import Inbox, InboxConfig

    return Inbox(InboxConfig(Path(inbox), settle_seconds, max_files)).claim()


@task(name="finish-claim", **_MEMORY)
def finish_claim(inbox: Path, claim: Any, outcomes: dict[str, dict]) -> dict:
    from flowhawk.lake.inbox import Inbox, InboxConfig

    return Inbox(InboxConfig(Path(inbox))).finish(claim, outcomes)


@task(name="covered-batches", **_MEMORY)
def covered_batches(lake: Path) -> set[str]:
    from flowhawk.lake.store import Lake
    from flowhawk.reports.scored import covered_lake_batches

    return covered_lake_batches(Lake(lake).reports_dir)


# --- model ----------------------------------------------------------------------------------------------
@task(name="current-model", **_MEMORY)
def current_model(models: Path) -> str | None:
    from flowhawk.model.registry import Registry

    return Registry(models).current()


_LOADED: dict[tuple[str, str], Any] = {}  # (registry, version) -> TrainedModel; versions never change


@task(name="load-model", **_MEMORY)
def load_model(models: Path, version: str) -> Any:
    """``Registry.load`` (checked), kept for the life of the process: a version folder is immutable, so
    ``process_inbox`` can load it while ingest runs and scoring finds it ready."""
    from flowhawk.model.registry import Registry

    key = (str(Path(models).resolve()), version)
    if key not in _LOADED:
        _LOADED.clear()  # one model at a time
        _LOADED[key] = Registry(models).load(version)
    return _LOADED[key]


@task(name="fit-model", **_MEMORY)
def fit_model(frame: Any, config: Any, init_from: Any = None, progress_id: Any = None) -> Any:
    """``model.train.train_model``; each epoch is logged (and moves the progress artifact, when given)."""
    from flowhawk.model.train import train_model
    from prefect.artifacts import update_progress_artifact

    logger = get_run_logger()

    def on_epoch(entry: dict) -> None:
        logger.info("epoch %d/%d: loss %.4f, val_loss %.4f, val_f1 %.4f (%.1f s)", entry["epoch"], config.epochs,
                    entry["loss"], entry["val_loss"], entry["val_f1"], entry["seconds"])
        if progress_id is not None:
            update_progress_artifact(progress_id, 100.0 * entry["epoch"] / config.epochs)

    return train_model(frame, config, init_from=init_from, on_epoch=on_epoch)


@task(name="register-model", **_MEMORY)
def register_model(models: Path, trained: Any, data: dict, status: str, reason: str,
                   parent: str | None = None) -> str:
    from flowhawk.model.registry import Registry

    return Registry(models).save(trained, data=data, status=status, reason=reason, parent=parent)


@task(name="data-manifest", **_MEMORY)
def training_data_manifest(lake: Path, batches: list[str]) -> dict:
    from flowhawk.lake.store import Lake
    from flowhawk.model.registry import data_manifest

    return data_manifest(Lake(lake), batches)


@task(name="promote-model", **_MEMORY)
def promote_model(models: Path, version: str, reason: str) -> None:
    from flowhawk.model.registry import Registry

    Registry(models).promote(version, reason)


@task(name="refresh", **_MEMORY)
def refresh(models: Path, lake: Path, new_batches: list[str] | None, config: Any) -> Any:
    """``model.refresh.refresh_model``: fine-tune, compare on held-out flows, promote only if not worse."""
    from flowhawk.lake.store import Lake
    from flowhawk.model.refresh import refresh_model
    from flowhawk.model.registry import Registry

    return refresh_model(Registry(models), Lake(lake), new_batches, config)


@task(name="batches-new-to-model", **_MEMORY)
def batches_new_to_model(models: Path, lake: Path) -> list[str]:
    """Labelled lake batches that neither the current model nor a refresh attempt from it has trained on
    (so a rejected refresh candidate is not retried on the same batches every run)."""
    from flowhawk.lake.store import Lake
    from flowhawk.model.refresh import labelled_batches as labelled
    from flowhawk.model.registry import Registry

    registry = Registry(models)
    current = registry.require_current()
    tried = [current] + [r["version"] for r in registry.list() if r.get("parent") == current]
    seen = {b["batch_id"] for v in tried for b in registry.show(v)["data"].get("batches", [])}
    return [b for b in labelled(Lake(lake)) if b not in seen]


@task(name="score-flows", **_MEMORY)
def score_flows(trained: Any, frame: Any) -> Any:
    from flowhawk.model.scoring import score_frame

    return score_frame(trained, frame)


# --- reports --------------------------------------------------------------------------------------------
@task(name="write-report", **_MEMORY)
def write_report(lake: Path, batch_id: str, flows: Any, scores: Any, meta: Any, top_n: int,
                 extra: dict | None) -> tuple[Any, dict]:
    from flowhawk.lake.store import Lake
    from flowhawk.reports.scored import ReportConfig, write_scored_report

    return write_scored_report(Lake(lake).reports_dir, batch_id, flows, scores, meta, ReportConfig(top_n=top_n),
                               extra)


@task(name="report-exists", **_MEMORY)
def report_exists(lake: Path, batch_id: str) -> bool:
    from flowhawk.lake.store import Lake
    from flowhawk.reports.scored import report_exists as exists

    return exists(Lake(lake).reports_dir, batch_id)


def timed(seconds: dict[str, float], stage: str, started: float) -> None:
    """Add the time since ``started`` to ``seconds[stage]``."""
    seconds[stage] = round(seconds.get(stage, 0.0) + time.perf_counter() - started, 3)
