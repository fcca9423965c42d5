"""The training loop of the flow detector: ``train_model(frame, config)`` turns a labelled flow frame into a
``TrainedModel`` (the run's ``TrainConfig`` lives in ``model/config.py``)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mindspore as ms
import numpy as np
import pandas as pd
from mindspore import Tensor, nn, ops
from sklearn.metrics import f1_score

from flowhawk.model.config import ModelConfig, TrainConfig
from flowhawk.model.decision import attack_scores, decide
from flowhawk.model.evaluate import classification_metrics, majority_check, tune_threshold
from flowhawk.model.features import FeaturePipeline
from flowhawk.model.host_features import HOST_FEATURES, window_inputs
from flowhawk.model.labels import attack_kinds, encode_labels
from flowhawk.model.network import build_network, make_train_step
from flowhawk.model.scoring import DEFAULT_BATCH as EVAL_BATCH
from flowhawk.model.scoring import predict_proba
from flowhawk.model.splits import Split, capped_subsample, split_rows
from flowhawk.model.trained import TrainedModel
from flowhawk.model.windows import WindowIndex

log = logging.getLogger(__name__)
MAX_WEIGHT_RATIO = 100.0  # cap on class-weight imbalance (largest / smallest)
OVERSAMPLE_FLOOR = 0.05   # oversampling lifts every class to at least this share of an epoch

# ---------------------------------------------------------------------------------------------- data
@dataclass
class Prepared:
    """Everything a run derives from the frame: labels, split, fitted features, window index."""

    y: np.ndarray               # (N,) class index per row, -1 when unlabelled
    class_names: list[str]      # class 0 is benign
    split: Split
    train_rows: np.ndarray      # split.train, capped by max_train_rows
    pipeline: FeaturePipeline
    features: np.ndarray        # (N, F) float32
    index: WindowIndex


def prepare(frame: pd.DataFrame, config: TrainConfig, pipeline: FeaturePipeline | None = None,
            class_names: list[str] | None = None) -> Prepared:
    """Labels, split, (fitted on training rows only) features and the window index of ``frame``."""
    y, names = encode_labels(frame, config.task, class_names)
    if len(np.unique(y[y >= 0])) < 2:
        raise ValueError(f"training needs at least 2 classes among labelled flows, got {np.unique(y[y >= 0])}")
    split = split_rows(frame, y, config.split, config.val_fraction, config.test_fraction, config.seed,
                       kinds=attack_kinds(frame, y))
    if split.note:
        log.warning("%s", split.note)
    train_rows = split.train
    if config.max_train_rows is not None:
        train_rows = capped_subsample(train_rows, y[train_rows], config.max_train_rows, config.seed)
    inputs, index = window_inputs(frame, config.window, config.group_by, config.host_features)
    if pipeline is None:
        pipeline = FeaturePipeline(config.feature_set, extra_numeric=HOST_FEATURES if config.host_features else (),
                                   **config.feature_options).fit(inputs.iloc[split.train])
    features = pipeline.transform(inputs)
    log.info("prepared %d flows (%s split %s, %d training rows used), %d features, classes %s", len(frame),
             split.method, split.sizes(), len(train_rows), features.shape[1], names)
    return Prepared(y, names, split, train_rows, pipeline, features, index)


# ------------------------------------------------------------------------------------------ training
def class_weights(y: np.ndarray, n_classes: int, enabled: bool, power: float = 1.0) -> np.ndarray:
    """'Balanced' weights (n / (C * n_c)) ** power (power 0.5 = square-root balancing, gentler on classes of
    a few dozen flows), capped at MAX_WEIGHT_RATIO x the smallest; ones when disabled."""
    if not enabled:
        return np.ones(n_classes, dtype=np.float32)
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, (len(y) / (n_classes * np.maximum(counts, 1))) ** power, 0.0)
    floor = weights[weights > 0].min()
    return np.minimum(weights, floor * MAX_WEIGHT_RATIO).astype(np.float32)


def epoch_rows(rows: np.ndarray, y: np.ndarray, oversample: bool, rng: np.random.Generator) -> np.ndarray:
    """Shuffled training rows of one epoch; with ``oversample``, classes under OVERSAMPLE_FLOOR of the rows
    are drawn again with replacement up to that share."""
    if oversample:
        floor = int(OVERSAMPLE_FLOOR * len(rows))
        classes, counts = np.unique(y, return_counts=True)
        extra = [rng.choice(rows[y == c], size=floor - n)
                 for c, n in zip(classes, counts, strict=True) if 0 < n < floor]
        rows = np.concatenate([rows, *extra])
    return rng.permutation(rows)


def train_model(frame: pd.DataFrame, config: TrainConfig, init_from: TrainedModel | None = None,
                on_epoch: Callable[[dict[str, Any]], None] | None = None) -> TrainedModel:
    """Train (or, with ``init_from``, fine-tune: same pipeline, classes and network shape) on ``frame``.

    Adam on (class-weighted) cross-entropy; early stopping on validation loss with ``config.patience``, best
    weights restored; attack threshold tuned on validation for F1; test metrics in ``metrics['test']``.
    ``on_epoch`` receives each epoch's history entry (it is also logged).
    """
    if init_from is not None and init_from.task != config.task:
        raise ValueError(f"init_from is a {init_from.task} model, config.task is {config.task}")
    prep = prepare(frame, config, init_from.pipeline if init_from else None,
                   init_from.class_names if init_from else None)
    return train_prepared(prep, config, init_from, on_epoch)


def build_model_config(config: TrainConfig, n_features: int, n_classes: int) -> ModelConfig:
    return ModelConfig.from_dict({**config.model, "arch": config.arch, "n_features": n_features,
                                  "n_classes": n_classes, "window": config.window})


def train_prepared(prep: Prepared, config: TrainConfig, init_from: TrainedModel | None = None,
                   on_epoch: Callable[[dict[str, Any]], None] | None = None) -> TrainedModel:
    """The training loop on an already prepared frame (benchmarks reuse ``prep`` for the baselines)."""
    ms.set_seed(config.seed)
    model_config = build_model_config(config, prep.features.shape[1], len(prep.class_names))
    network = build_network(model_config)
    if init_from is not None:
        if init_from.model_config.to_dict() != model_config.to_dict():
            raise ValueError("init_from: its ModelConfig differs from this run's (window, arch, model overrides "
                             "must match the model being fine-tuned)")
        ms.load_param_into_net(network, {p.name: ms.Parameter(p.data.copy(), name=p.name)
                                         for p in init_from.network.get_parameters()}, strict_load=True)
    started = time.monotonic()
    history = fit_network(network, prep, config, on_epoch)
    val_probs = predict_proba(network, prep.features, prep.index, prep.split.val, EVAL_BATCH)
    tuned = tune_threshold(prep.y[prep.split.val] != 0, attack_scores(val_probs), config.threshold_metric)
    majority = int(np.bincount(prep.y[prep.train_rows]).argmax())
    check = majority_check(prep.y[prep.split.val], decide(val_probs, tuned["threshold"]), majority,
                           prep.class_names)
    if not check["ok"]:
        log.warning("%s", check["reason"])
    test_probs = predict_proba(network, prep.features, prep.index, prep.split.test, EVAL_BATCH)
    y_test = prep.y[prep.split.test]
    test = classification_metrics(y_test, decide(test_probs, tuned["threshold"]), attack_scores(test_probs),
                                  prep.class_names)
    metrics = {"test": test, "validation": tuned, "majority_check": check,
               "split": {**prep.split.sizes(), "method": prep.split.method, "note": prep.split.note,
                         "train_used": len(prep.train_rows)},
               "train_seconds": round(time.monotonic() - started, 1), "n_features": prep.features.shape[1],
               "fine_tuned": init_from is not None}
    log.info("done: threshold %.4f (val F1 %.4f, FPR %.4f); test F1 %.4f macro-F1 %.4f benign recall %.4f",
             tuned["threshold"], tuned["f1"], tuned["fpr"], test["f1"], test["macro_f1"], test["benign_recall"])
    network.set_train(False)
    return TrainedModel(network, model_config, config, prep.pipeline, tuned["threshold"], prep.class_names,
                        metrics, history)


def fit_network(network: Any, prep: Prepared, config: TrainConfig,
                on_epoch: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Train ``network`` in place on ``prep.train_rows``; early stopping on the (capped) validation loss;
    the best epoch's weights are restored before returning the per-epoch history."""
    n_classes = len(prep.class_names)
    y_train = prep.y[prep.train_rows]
    weights = class_weights(y_train, n_classes, config.class_weighted, config.class_weight_power)
    monitor_weights = weights if config.monitor == "weighted_loss" else np.ones_like(weights)
    batch = min(config.batch_size, len(prep.train_rows))
    steps_per_epoch = -(-len(prep.train_rows) // batch)  # whole batches: the last one is padded below
    optimizer = nn.Adam(network.trainable_params(), learning_rate=learning_rates(config, steps_per_epoch))
    step = make_train_step(network, nn.CrossEntropyLoss(weight=Tensor(weights)), optimizer)
    rng = np.random.default_rng(config.seed)
    history: list[dict[str, Any]] = []
    best_loss, best_state, since_best = float("inf"), _snapshot(network), 0
    monitor = capped_subsample(prep.split.val, prep.y[prep.split.val], config.max_monitor_rows, config.seed)
    y_val = prep.y[monitor]
    for epoch in range(1, config.epochs + 1):
        t0 = time.monotonic()
        rows = epoch_rows(prep.train_rows, y_train, config.oversample, rng)
        rows = np.concatenate([rows, rows[: (-len(rows)) % batch]])  # whole batches: one compiled shape
        losses = []
        for chunk, x, mask in prep.index.batches(prep.features, rows, batch):
            losses.append(float(step(Tensor(x), Tensor(mask), Tensor(prep.y[chunk].astype(np.int32))).asnumpy()))
        probs = predict_proba(network, prep.features, prep.index, monitor, EVAL_BATCH)
        val_loss = weighted_cross_entropy(probs, y_val, monitor_weights)
        val_pred = np.argmax(probs, axis=1)
        entry = {"epoch": epoch, "loss": float(np.mean(losses)), "val_loss": val_loss,
                 "val_f1": _val_f1(y_val, val_pred, n_classes), "seconds": round(time.monotonic() - t0, 1)}
        history.append(entry)
        log.info("epoch %d/%d loss %.4f val_loss %.4f val_f1 %.4f (%.0fs)", epoch, config.epochs,
                 entry["loss"], val_loss, entry["val_f1"], entry["seconds"])
        improved = val_loss < best_loss - 1e-6
        if improved:
            best_loss, best_state, since_best = val_loss, _snapshot(network), 0
        else:
            since_best += 1
        if on_epoch:
            on_epoch(entry)
        if since_best >= config.patience:
            log.info("early stop after epoch %d: no validation improvement for %d epochs", epoch, since_best)
            break
    _restore(network, best_state)
    best_epoch = min(history, key=lambda h: h["val_loss"])["epoch"]
    for entry in history:
        entry["best"] = entry["epoch"] == best_epoch
    return history


def learning_rates(config: TrainConfig, steps_per_epoch: int) -> float | list[float]:
    """Adam's learning rate: ``config.lr``, or one value per step for the cosine schedule (to 1 % of lr, then
    held there: oversampled epochs run more steps than ``steps_per_epoch`` predicts)."""
    if config.lr_schedule == "constant":
        return float(config.lr)
    steps = max(1, config.epochs * steps_per_epoch)
    floor = 0.01 * config.lr
    decay = [floor + 0.5 * (config.lr - floor) * (1 + math.cos(math.pi * i / steps)) for i in range(steps)]
    return decay + [floor] * steps


def weighted_cross_entropy(probs: np.ndarray, y: np.ndarray, weights: np.ndarray) -> float:
    """Mean of w[y] * -log p[y] over rows, divided by the mean weight (as nn.CrossEntropyLoss(weight=...))."""
    p = np.clip(probs[np.arange(len(y)), y].astype(np.float64), 1e-12, 1.0)
    w = weights[y].astype(np.float64)
    return float((w * -np.log(p)).sum() / w.sum())


def _val_f1(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    if n_classes == 2:
        return float(f1_score(y, pred, zero_division=0.0))
    return float(f1_score(y, pred, labels=np.unique(y), average="macro", zero_division=0.0))


def _snapshot(network: Any) -> dict[str, np.ndarray]:
    return {p.name: p.asnumpy().copy() for p in network.get_parameters()}


def _restore(network: Any, state: dict[str, np.ndarray]) -> None:
    """Write ``state`` into the parameters in place. ``Parameter.set_data`` / ``load_param_into_net`` swap the
    tensor object, which graphs compiled earlier (train step, predict) never see; ``ops.assign`` does."""
    for p in network.get_parameters():
        ops.assign(p, Tensor(state[p.name]))
