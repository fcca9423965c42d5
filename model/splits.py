"""Train / validation / test splits of labelled flows, and seeded stratified subsampling.

``time``: labelled rows ordered by FLOW_START_MILLISECONDS (ties keep frame order); the oldest go to train,
then validation, the newest to test, so nothing is learnt from the future. ``stratified``: every class is
shuffled (seeded) and cut in the same proportions, so a rare class is present in all three parts when it
has at least 3 flows. ``auto``: ``time`` when the frame has start times, else ``stratified``.
A time split must not leave an attack kind out of training (in a lab capture every attack runs in its own
time window, so the newest kinds would land in validation and test only, unseen): with ``auto`` the split falls
back to ``stratified`` by attack kind and says which kinds forced it (``Split.note``); an explicit ``time``
split stops with that message.
``capped_subsample`` caps the training part without losing rare classes.
Split members are 0-based row positions into the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from flowhawk.model.windows import time_key

SPLIT_METHODS = ("auto", "time", "stratified")


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    method: str
    note: str = ""

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def split_rows(frame: pd.DataFrame, y: np.ndarray, method: str = "auto", val_fraction: float = 0.1,
               test_fraction: float = 0.1, seed: int = 0, kinds: np.ndarray | None = None) -> Split:
    """Split the rows with a label (``y >= 0``) of ``frame``; unlabelled rows (``y < 0``) are in no part.

    ``kinds`` (one attack-kind name per row, e.g. the ``Attack`` column; default ``y``) is what a time split
    must cover; when it does not, ``auto`` falls back to a split stratified on ``kinds``."""
    if method not in SPLIT_METHODS:
        raise ValueError(f"split: must be one of {SPLIT_METHODS}, got {method!r}")
    if len(y) != len(frame):
        raise ValueError(f"split: {len(y)} labels for {len(frame)} rows")
    labelled = np.flatnonzero(np.asarray(y) >= 0)
    if len(labelled) < 3:
        raise ValueError(f"split: need at least 3 labelled flows, got {len(labelled)}")
    times = time_key(frame)
    if method == "stratified" or (method == "auto" and times is None):
        return _stratified(labelled, np.asarray(y)[labelled], val_fraction, test_fraction, seed)
    kinds = np.asarray(y if kinds is None else kinds)
    if times is None:
        raise ValueError("split='time' needs FLOW_START_MILLISECONDS values; use 'stratified'")
    ordered = labelled[np.lexsort((labelled, times[labelled]))]
    n_test = max(1, round(test_fraction * len(ordered)))
    n_val = max(1, round(val_fraction * len(ordered)))
    n_train = len(ordered) - n_val - n_test
    split = Split(ordered[:n_train], ordered[n_train:n_train + n_val], ordered[n_train + n_val:], "time")
    missing = sorted(map(str, (set(kinds[split.val]) | set(kinds[split.test])) - set(kinds[split.train])))
    if not missing:
        return split
    if method == "time":
        raise ValueError(f"split='time' leaves attack kind(s) {missing} out of training (they occur only in the "
                         "newest flows); use split='stratified' or 'auto'")
    fallback = _stratified(labelled, kinds[labelled], val_fraction, test_fraction, seed)
    return Split(fallback.train, fallback.val, fallback.test, "stratified",
                 note=f"a time split would leave attack kind(s) {missing} out of training: stratified by "
                      "attack kind instead")


def _stratified(rows: np.ndarray, y: np.ndarray, val_fraction: float, test_fraction: float,
                seed: int) -> Split:
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for cls in np.unique(y):
        members = rng.permutation(rows[y == cls])
        n = len(members)
        n_test = max(1, round(test_fraction * n)) if n >= 3 else 0
        n_val = max(1, round(val_fraction * n)) if n >= 3 else 0
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test:n_test + n_val])
        parts["train"].append(members[n_test + n_val:])
    out = {k: np.sort(np.concatenate(v)).astype(np.int64) for k, v in parts.items()}
    return Split(out["train"], out["val"], out["test"], "stratified")


def capped_subsample(rows: np.ndarray, y: np.ndarray, max_rows: int, seed: int = 0) -> np.ndarray:
    """At most ``max_rows`` of ``rows`` (labels ``y`` aligned), seeded: rare classes are kept whole and the
    budget left is shared equally among the larger ones (water filling), so capping a 99.5 %-attack set never
    throws away benign flows. Sorted; ``rows`` unchanged when already small enough."""
    rows, y = np.asarray(rows), np.asarray(y)
    if len(rows) <= max_rows:
        return rows
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    keep, budget = [], max_rows
    for i, k in enumerate(np.argsort(counts, kind="stable")):
        take = min(int(counts[k]), budget // (len(classes) - i))
        budget -= take
        keep.append(rng.choice(rows[y == classes[k]], size=take, replace=False))
    return np.sort(np.concatenate(keep)).astype(np.int64)
