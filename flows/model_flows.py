"""``train_model`` and ``refresh_model``: the model package, run through Prefect, metrics published as artifacts."""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact

from flowhawk.flows.params import (
    DEFAULT_LAKE,
    DEFAULT_MODELS,
    DEFAULT_REFRESH,
    DEFAULT_TRAIN,
    Location,
    RefreshOptions,
    TrainOptions,
    local_root,
    use_kernel_settings_from_env,
)
from flowhawk.flows.tasks import first_model, refresh, train_register
from flowhawk.model.refresh import RefreshResult

_METRIC_KEYS = ("accuracy", "precision", "recall", "f1", "benign_recall", "fpr", "macro_f1", "pr_auc")


@flow(name="train-model", persist_result=False, result_serializer="json", log_prints=False)
def train_model(lake: Location = DEFAULT_LAKE, models: Location = DEFAULT_MODELS,
                options: TrainOptions = DEFAULT_TRAIN, batches: list[str] | None = None,
                promote: Literal["auto", "always", "never"] = "auto",
                only_if_no_model: bool = False) -> dict[str, Any]:
    """Train a detector on the labelled flows of ``batches`` (default: every lake batch with labels) and save
    it as a new registry version (``model.lifecycle``). ``promote``: auto = only a first model becomes current
    (decided under the models folder's lock); ``only_if_no_model``: do nothing when a model is current (the
    inbox's first-model rule). Returns version, metrics, batches."""
    lake, models = local_root(lake), local_root(models)
    logger = get_run_logger()
    use_kernel_settings_from_env()
    config = options.to_train_config()
    progress = create_progress_artifact(0.0, description=f"training ({config.epochs} epochs max)")
    if only_if_no_model:
        outcome = first_model(lake, models, config, options.to_baseline_config(), progress)
    else:
        outcome = train_register(lake, models, config, options.to_baseline_config(), batches, promote, progress)
    if outcome is None:
        logger.info("nothing trained: a model is current, or the last candidate saw the same batches")
        return {"version": None, "promoted": False, "reason": "nothing new to train on"}
    trained = outcome.trained
    logger.info("trained %s/%s on %d flows of %d batch(es): %s%s", config.task, config.arch, outcome.flows,
                len(outcome.batches), outcome.version, " (now current)" if outcome.promoted else "")
    publish_metrics(outcome.version, trained.metrics, trained.history, trained.threshold, trained.class_names)
    return {"version": outcome.version, "promoted": outcome.promoted, "reason": "; ".join(outcome.notes),
            "batches": outcome.batches,
            "flows": outcome.flows, "threshold": float(trained.threshold),
            "test": _headline(trained.metrics.get("test", {}))}


@flow(name="refresh-model", persist_result=False, result_serializer="json", log_prints=False)
def refresh_model(lake: Location = DEFAULT_LAKE, models: Location = DEFAULT_MODELS,
                  options: RefreshOptions = DEFAULT_REFRESH, new_batches: list[str] | None = None) -> dict[str, Any]:
    """Fine-tune the current model on the labelled batches it has not seen (or ``new_batches``) plus a replay
    sample of old ones; promote the candidate only if it is not worse on held-out flows (``model.refresh``).
    The candidate is kept in the registry either way, with the decision as its reason."""
    lake, models = local_root(lake), local_root(models)
    logger = get_run_logger()
    use_kernel_settings_from_env()
    result = refresh(models, lake, new_batches, options.to_refresh_config())
    logger.info("refresh of %s on %d new batch(es) -> %s: %s", result.parent, len(result.new_batches),
                result.version, result.reason)
    publish_refresh(result)
    return {"version": result.version, "parent": result.parent, "promoted": result.promoted,
            "reason": result.reason, "new_batches": result.new_batches, "sizes": result.sizes,
            "seconds": result.seconds}


def publish_refresh(result: RefreshResult) -> None:
    """A table of held-out metrics (current vs candidate; all, old, new flows) and the decision."""
    rows = [{"model": name, "held_out": part, **_headline(metrics), "n": metrics.get("n")}
            for name, parts in result.comparison.items() for part, metrics in parts.items()]
    key = f"refresh-{result.version.lower()}"
    create_table_artifact(rows, key=key, description=f"Refresh {result.parent} -> {result.version}: held-out "
                          "metrics of both models")
    create_markdown_artifact(
        f"# Refresh `{result.parent}` -> `{result.version}`\n\n- decision: **{result.reason}**\n"
        f"- new batches: {', '.join(result.new_batches)}\n- sizes: {result.sizes}\n- seconds: {result.seconds}\n",
        key=f"refresh-summary-{result.version.lower()}", description="Refresh decision")


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics[k] for k in _METRIC_KEYS if k in metrics}


def publish_metrics(version: str, metrics: dict[str, Any], history: list[dict[str, Any]], threshold: float,
                    class_names: list[str]) -> None:
    """A table artifact of the test metrics and a markdown artifact with the training history."""
    key = f"model-metrics-{version.lower()}"
    test = metrics.get("test", {})
    create_table_artifact([{"metric": k, "value": test[k]} for k in _METRIC_KEYS if k in test],
                          key=key, description=f"Test-split metrics of model {version}")
    lines = [f"# Model `{version}`", "", f"- classes: {', '.join(class_names)}",
             f"- threshold (validation-tuned): {threshold:.4f}",
             f"- split: {metrics.get('split', {})}", f"- training time: {metrics.get('train_seconds')} s", "",
             "| epoch | loss | val_loss | val_f1 | s |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {h['epoch']}{' (best)' if h.get('best') else ''} | {h['loss']:.4f} | {h['val_loss']:.4f} | "
              f"{h['val_f1']:.4f} | {h['seconds']} |" for h in history]
    create_markdown_artifact("\n".join(lines) + "\n", key=f"model-summary-{version.lower()}",
                             description=f"Training summary of model {version}")
