"""Incremental refresh: fine-tune the current model on new labelled batches plus a bounded replay sample.

Rows get a fixed role from a hash of their identity (``source_sha256``, ``flow_index``; ``RefreshConfig.salt``):
``holdout_fraction`` of them are held out, ``val_fraction`` validate (early stopping, threshold), the rest may
be trained on. The role of a flow never changes between refreshes, so a flow held out once is never trained
on by any refresh. (The first model, trained by ``train_model`` with its own split, may have seen some of
the old held-out flows; that can only favour the current model, i.e. make the guard stricter.)

Old data is sampled in blocks of ``block_rows`` consecutive flows of one source (in window order), each with
the ``window - 1`` flows before it as context only, so replayed and held-out old flows keep their real windows.
Blocks are drawn until ``replay_rows`` old training flows are in; cost therefore follows the new data and the
replay budget, not the history (only reading the old batches' Parquet grows with it).

Flows an analyst's verdict labels (``verdict_rows`` of ``refresh_frames``; ``refresh_model`` finds them when the
lake it reads is a ``VerdictSource`` such as ``reports.verdict_lake.VerdictLabelledLake``) are few and
deliberate: a handful of false positives against a replay of ``replay_rows`` flows. All of them are trained
on (a verdict overrides the hash role; they are never held out) and each counts ``verdict_weight`` times in the
loss (it is drawn that many times per epoch). So do their neighbours: for every verdict, the ``contrast_rows``
training flows of another class nearest to it (scaled features and how much host history the window holds;
``contrast_rows``): weighted alone, a few "benign" verdicts move a whole region and take the attack flows beside
them (a flood's first request beside a client's first request) along. A class with fewer than
``rare_class_rows`` training flows also trains on its validation flows (a class of one flow would otherwise be
forgotten whenever its hash role is VAL). The guard checks verdicts separately (``model/refresh_guard.py``).

The candidate is compared with the current model on the same held-out flows (old and new) and on the
verdict-labelled flows; ``model.refresh_guard.decide_promotion`` lists the five conditions (held-out F1 within
``f1_tolerance``, old data drop within ``old_drop_tolerance``, no more false alerts on held-out benign flows
than ``benign_alert_tolerance`` allows, verdicts respected up to ``verdict_tolerance``, every attack class's
recall on the old flows read no lower than the current model's minus ``recall_tolerance``).
Otherwise the candidate is saved with the reason it was not promoted.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from flowhawk.common.config import config_from_mapping
from flowhawk.lake.store import Lake
from flowhawk.model.host_features import history_depth, window_inputs
from flowhawk.model.labels import encode_labels
from flowhawk.model.refresh_guard import NEW, OLD, compare, decide_promotion
from flowhawk.model.registry import Registry, data_manifest
from flowhawk.model.splits import Split
from flowhawk.model.train import Prepared, train_prepared
from flowhawk.model.trained import TrainedModel
from flowhawk.model.verdict_source import flows_with_verdicts
from flowhawk.model.windows import build_window_index

log = logging.getLogger(__name__)
TRAIN, VAL, TEST, CONTEXT = 0, 1, 2, -1
GUARD_METRICS = ("auto", "f1", "macro_f1")
CONTRAST_POOL = 50_000  # rows searched for a verdict's neighbours (a random sample beyond that)
CONTRAST_HISTORY_SCALE = 3.0  # a window with no history vs a full one counts like 3 standard deviations


class RefreshError(ValueError):
    """A refresh that cannot run (no current model, no new labelled flows, a new class...). One line."""


@dataclass(frozen=True)
class RefreshConfig:
    """How a refresh samples, trains and decides. Validated at construction."""

    replay_rows: int = 20_000
    epochs: int = 5
    lr_scale: float = 0.5
    patience: int = 3
    holdout_fraction: float = 0.2
    val_fraction: float = 0.1
    f1_tolerance: float = 0.002
    old_drop_tolerance: float = 0.01
    block_rows: int = 256
    salt: int = 0
    seed: int = 0
    metric: str = "auto"
    verdict_weight: int = 20
    verdict_tolerance: float = 0.0
    benign_alert_tolerance: float = 0.0
    contrast_rows: int = 16
    rare_class_rows: int = 32
    recall_tolerance: float = 0.01

    def __post_init__(self) -> None:
        if self.metric not in GUARD_METRICS:
            raise ValueError(f"RefreshConfig.metric: must be one of {GUARD_METRICS}, got {self.metric!r}")
        ints = (("replay_rows", 0, 10**9), ("epochs", 1, 1000), ("patience", 1, 1000), ("block_rows", 1, 10**6),
                ("salt", 0, 2**31), ("seed", 0, 2**31), ("verdict_weight", 1, 10_000),
                ("contrast_rows", 0, 1000), ("rare_class_rows", 0, 10**6))
        for name, lo, hi in ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"RefreshConfig.{name}: must be an integer in [{lo}, {hi}], got {value!r}")
        floats = (("lr_scale", 1e-4, 10.0), ("holdout_fraction", 0.01, 0.5), ("val_fraction", 0.01, 0.5),
                  ("f1_tolerance", 0.0, 1.0), ("old_drop_tolerance", 0.0, 1.0), ("verdict_tolerance", 0.0, 1.0),
                  ("benign_alert_tolerance", 0.0, 1.0), ("recall_tolerance", 0.0, 1.0))
        for name, lo, hi in floats:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
                raise ValueError(f"RefreshConfig.{name}: must be a number in [{lo}, {hi}], got {value!r}")
        if self.holdout_fraction + self.val_fraction >= 0.9:
            raise ValueError("RefreshConfig.holdout_fraction + val_fraction: must be < 0.9 (leave rows to train)")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RefreshConfig:
        return config_from_mapping(cls, data)  # type: ignore[return-value]


@dataclass
class Refreshed:
    """The outcome of one refresh on frames (before anything is saved)."""

    candidate: TrainedModel
    promote: bool
    reason: str
    comparison: dict[str, Any]
    sizes: dict[str, int]
    seconds: dict[str, float]
    checks: dict[str, Any] = dataclasses.field(default_factory=dict)  # the guard's counts (refresh_guard.compare)


@dataclass
class RefreshResult:
    version: str
    parent: str
    promoted: bool
    reason: str
    comparison: dict[str, Any]
    sizes: dict[str, int]
    seconds: dict[str, float]
    new_batches: list[str]
    checks: dict[str, Any] = dataclasses.field(default_factory=dict)


# ------------------------------------------------------------------------------------------ row roles
def row_roles(frame: pd.DataFrame, config: RefreshConfig) -> np.ndarray:
    """TRAIN / VAL / TEST per row from a salted hash of the flow's identity (stable across runs)."""
    if {"source_sha256", "flow_index"} <= set(frame.columns):
        key = frame[["source_sha256", "flow_index"]]
    else:  # frames not from the lake: identity = position (still deterministic for a given frame)
        key = pd.DataFrame({"row": np.arange(len(frame))})
    hashed = pd.util.hash_pandas_object(key, index=False, hash_key=f"flowhawk{config.salt:08d}").to_numpy()
    u = (hashed >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    roles = np.full(len(frame), TRAIN, dtype=np.int8)
    roles[u < config.holdout_fraction + config.val_fraction] = VAL
    roles[u < config.holdout_fraction] = TEST
    return roles


def sample_old(old: pd.DataFrame, y_old: np.ndarray, config: RefreshConfig, depth: int, group_by: str
               ) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of ``old`` to keep (sorted) and each kept row's role (CONTEXT for window context only).

    Whole blocks of ``block_rows`` consecutive flows (window order) are drawn at random until they hold
    ``replay_rows`` labelled TRAIN rows; each block brings the ``depth`` flows before it as context (``history_depth``:
    ``window - 1``, twice that for a model with host features, whose context flows need windows of their own).
    """

    roles = row_roles(old, config)
    if len(old) == 0 or config.replay_rows == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int8)
    order = build_window_index(old, window=1, group_by=group_by).order
    trainable = (roles == TRAIN) & (y_old >= 0)
    starts = np.arange(0, len(order), config.block_rows)
    rng = np.random.default_rng(config.seed)
    chosen, context, count = [], [], 0
    for start in rng.permutation(starts):
        block = order[start:start + config.block_rows]
        chosen.append(block)
        context.append(order[max(0, start - depth):start])
        count += int(trainable[block].sum())
        if count >= config.replay_rows:
            break
    keep = np.concatenate(chosen)
    extra = np.setdiff1d(np.concatenate(context), keep) if context else np.zeros(0, np.int64)
    rows = np.concatenate([keep, extra]).astype(np.int64)
    row_role = np.concatenate([roles[keep], np.full(len(extra), CONTEXT, np.int8)])
    sort = np.argsort(rows, kind="stable")
    return rows[sort], row_role[sort]


def prepare_refresh(current: TrainedModel, old: pd.DataFrame, new: pd.DataFrame, config: RefreshConfig,
                    verdict_rows: np.ndarray | None = None) -> tuple[pd.DataFrame, Prepared, np.ndarray, np.ndarray]:
    """One frame (old sample + new), labelled with the current classes and split by row role.

    Returns the frame, a ``Prepared`` for ``train_prepared`` (current pipeline, hash split; every labelled row
    of ``new`` that ``verdict_rows`` (bool per row of ``new``) marks is a training row, repeated
    ``verdict_weight`` times in ``train_rows``), the origin of every row (OLD / NEW) and the frame positions of
    the labelled verdict rows.
    """

    tc = current.train_config
    y_old, _ = _labels(old, current)
    rows, old_roles = sample_old(old, y_old, config, history_depth(tc.window, tc.host_features), tc.group_by)
    frame = pd.concat([old.iloc[rows], new], ignore_index=True)
    origin = np.concatenate([np.full(len(rows), OLD, np.int8), np.full(len(new), NEW, np.int8)])
    roles = np.concatenate([old_roles, row_roles(new, config)])
    try:
        y, names = encode_labels(frame, tc.task, current.class_names)
    except ValueError as exc:
        raise RefreshError(f"refresh: {exc} (a full retrain is needed for new classes)") from None
    labelled = y >= 0
    marked = np.zeros(len(frame), bool)
    if verdict_rows is not None:
        marked[len(rows):] = verdict_rows
        marked &= labelled
        roles[marked] = TRAIN
    train_rare_classes(y, roles, config.rare_class_rows)
    if not (labelled & (origin == NEW) & (roles == TRAIN)).any():
        raise RefreshError("refresh: the new batches hold no labelled flows to train on")
    train, val, test = (np.flatnonzero(labelled & (roles == r)).astype(np.int64) for r in (TRAIN, VAL, TEST))
    verdict_positions = np.flatnonzero(marked).astype(np.int64)
    inputs, index = window_inputs(frame, tc.window, tc.group_by, tc.host_features)
    features = current.pipeline.transform(inputs)
    contrast = contrast_rows(features, index.depth, y, train, verdict_positions, config, tc.window)
    weighted = np.concatenate([np.tile(verdict_positions, config.verdict_weight),
                               np.tile(contrast, config.verdict_weight)])
    split = Split(train, np.concatenate([val, weighted]), test, method="hash")
    train_rows = np.concatenate([train, weighted[len(verdict_positions):]])
    prep = Prepared(y, names, split, train_rows, current.pipeline, features, index)
    return frame, prep, origin, verdict_positions


def train_rare_classes(y: np.ndarray, roles: np.ndarray, minimum: int) -> None:
    """In place: a class with fewer than ``minimum`` training rows has its validation rows trained on too (a class
    of one flow whose hash role is VAL would otherwise be forgotten by every refresh); held-out rows stay out."""
    labelled = y >= 0
    counts = np.bincount(y[labelled & (roles == TRAIN)], minlength=int(y.max(initial=0)) + 1)
    rare = np.flatnonzero(counts < minimum)
    roles[labelled & (roles == VAL) & np.isin(y, rare)] = TRAIN


def contrast_rows(features: np.ndarray, depth: np.ndarray, y: np.ndarray, train: np.ndarray, verdicts: np.ndarray,
                  config: RefreshConfig, window: int) -> np.ndarray:
    """Frame positions of the training rows of another class nearest to each verdict-labelled row (``contrast_rows``
    per verdict; distance over the flow's scaled features and how much host history its window holds).

    A verdict says "this flow is benign"; weighted alone it moves a whole region of feature space, and attack flows
    next to the marked ones (a flood's first request beside a client's first request) are lost with it. Weighting
    those neighbours as much (together) as the verdicts makes the refresh learn the boundary between them where
    the features allow it."""
    if config.contrast_rows == 0 or not len(verdicts) or not len(train):
        return np.zeros(0, np.int64)
    rng = np.random.default_rng(config.seed)
    history = np.minimum(depth, window - 1) / max(window - 1, 1) * CONTRAST_HISTORY_SCALE
    found = []
    for label in np.unique(y[verdicts]):
        pool = train[y[train] != label]
        if len(pool) > CONTRAST_POOL:
            pool = np.sort(rng.choice(pool, CONTRAST_POOL, replace=False))
        if not len(pool):
            continue
        for v in verdicts[y[verdicts] == label]:
            distance = ((features[pool] - features[v]) ** 2).sum(axis=1) + (history[pool] - history[v]) ** 2
            found.append(pool[np.argsort(distance, kind="stable")[:config.contrast_rows]])
    return np.unique(np.concatenate(found)).astype(np.int64) if found else np.zeros(0, np.int64)


def _labels(frame: pd.DataFrame, current: TrainedModel) -> tuple[np.ndarray, list[str]]:

    try:
        return encode_labels(frame, current.task, current.class_names)
    except ValueError as exc:
        raise RefreshError(f"refresh: old data: {exc}") from None


def refresh_frames(current: TrainedModel, old: pd.DataFrame, new: pd.DataFrame,
                   config: RefreshConfig = RefreshConfig(), verdict_rows: np.ndarray | None = None) -> Refreshed:
    """Fine-tune ``current`` on ``new`` plus a replay sample of ``old``; compare; decide (nothing saved).
    ``verdict_rows``: bool per row of ``new``, True where the label comes from an analyst's verdict."""

    started = time.monotonic()
    _, prep, origin, verdicts = prepare_refresh(current, old, new, config, verdict_rows)
    prepared_at = time.monotonic()
    tc = current.train_config
    train_config = dataclasses.replace(tc, epochs=config.epochs, patience=config.patience,
                                       lr=min(1.0, tc.lr * config.lr_scale), max_train_rows=None)
    candidate = train_prepared(prep, train_config, init_from=current)
    trained_at = time.monotonic()
    comparison, checks = compare(current, candidate, prep, origin, verdicts)
    promote, reason = decide_promotion(comparison, tc.task, config, checks)
    train = prep.split.train
    sizes = {"new_rows": int((origin == NEW).sum()), "old_rows_read": len(old),
             "old_rows_sampled": int((origin == OLD).sum()), "replay_train": int((origin[train] == OLD).sum()),
             "new_train": int((origin[train] == NEW).sum()), "verdict_train": len(verdicts),
             "val": len(prep.split.val),
             "held_out": len(prep.split.test)}
    seconds = {"prepare": round(prepared_at - started, 2), "train": round(trained_at - prepared_at, 2),
               "compare": round(time.monotonic() - trained_at, 2)}
    candidate.metrics["refresh"] = {"comparison": comparison, "checks": checks, "decision": reason, "sizes": sizes,
                                    "config": dataclasses.asdict(config)}
    log.info("refresh: %s (%s)", reason, sizes)
    return Refreshed(candidate, promote, reason, comparison, sizes, seconds, checks)


def refresh_model(registry: Registry, lake: Lake, new_batches: list[str] | None = None,
                  config: RefreshConfig = RefreshConfig()) -> RefreshResult:
    """Refresh the registry's current model with the labelled lake batches it was not trained on (or
    ``new_batches``).

    The candidate is always saved (with the decision as its reason); it becomes current only if it passes.
    """

    started = time.monotonic()
    parent = registry.require_current()
    current = registry.load(parent)
    loaded = time.monotonic()
    old_batches = [b["batch_id"] for b in registry.show(parent)["data"].get("batches", [])]
    if new_batches is None:
        new_batches = [b for b in lake.labelled_batches() if b not in set(old_batches)]
    overlap = sorted(set(new_batches) & set(old_batches))
    if overlap:
        raise RefreshError(f"refresh: batch(es) {overlap} are already in {parent}'s training data")
    if not new_batches:
        raise RefreshError(f"refresh: no new batches in {lake.location} since {parent}")
    try:
        old = lake.read_flows(old_batches)
        new = lake.read_flows(new_batches)
    except KeyError as exc:
        raise RefreshError(f"refresh: {exc.args[0] if exc.args else exc}") from None
    read = round(time.monotonic() - loaded, 2)
    done = refresh_frames(current, old, new, config, flows_with_verdicts(lake, new))
    data = data_manifest(lake, old_batches + new_batches, refresh={
        "parent": parent, "new_batches": new_batches, "sizes": done.sizes, "config": dataclasses.asdict(config)})
    version = registry.save(done.candidate, data=data, status="promoted" if done.promote else "candidate",
                            reason=done.reason, parent=parent)
    if done.promote:
        registry.promote(version, reason=done.reason)
    return RefreshResult(version, parent, done.promote, done.reason, done.comparison, done.sizes,
                         {"load": round(loaded - started, 2), "read": read, **done.seconds}, list(new_batches),
                         done.checks)
