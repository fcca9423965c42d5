"""Unsupervised baselines for the novelty model, on exactly its features, split and calibration.

Each baseline is fitted on the novelty model's training part of the baseline (its pipeline, host features and
segments), its anomaly scores on the held-out part (windows reaching back into the training part, as in
``train_novelty``) are calibrated by the same ``TailCalibration`` and budget, and it scores the same target flows:

- ``iforest_flow`` / ``lof_flow``: IsolationForest / LocalOutlierFactor (novelty mode) on one flow's feature
  vector (flow features + host-behaviour features of its window);
- ``iforest_window`` / ``lof_window``: the same on the whole window, flattened to T * F numbers (zeros at padding).

Scores are ``-score_samples`` (higher = more anomalous; positive for both models), so the calibration's
log-scale tail applies unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor

from flowhawk.model.calibration import TailCalibration
from flowhawk.model.novelty import novelty_inputs, segment_frame, split_by_time, with_context
from flowhawk.model.novelty_config import check_range
from flowhawk.model.novelty_store import TrainedNovelty
from flowhawk.model.splits import capped_subsample

UNSUPERVISED: tuple[str, ...] = ("iforest_flow", "lof_flow", "iforest_window", "lof_window")


@dataclass(frozen=True)
class UnsupervisedConfig:
    """IsolationForest trees, LOF neighbours, at most ``max_fit_rows`` baseline rows fitted (seeded)."""

    trees: int = 200
    neighbors: int = 20
    max_fit_rows: int = 20_000
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("trees", "neighbors", "max_fit_rows"):
            check_range("UnsupervisedConfig", name, getattr(self, name), 1, 10**8, integer=True)


def _matrix(trained: TrainedNovelty, frame: pd.DataFrame, per_window: bool, context: pd.DataFrame | None = None
            ) -> np.ndarray:
    """(N, F) flow vectors or (N, T * F) flattened windows of ``frame``, in the novelty model's features; windows
    reach back into ``context`` as in ``score_novelty``."""
    whole, offset = with_context(frame, context, trained.config.window)
    inputs, index = novelty_inputs(whole, trained.pipeline, trained.config.window)
    features = trained.pipeline.transform(inputs)
    rows = offset + np.arange(len(frame))
    if not per_window:
        return features[rows]
    x, _ = index.gather(features, rows)
    return x.reshape(len(frame), -1)


def _model(name: str, config: UnsupervisedConfig) -> IsolationForest | LocalOutlierFactor:
    if name.startswith("iforest"):
        return IsolationForest(n_estimators=config.trees, random_state=config.seed, n_jobs=1)
    return LocalOutlierFactor(n_neighbors=config.neighbors, novelty=True, n_jobs=1)


def fit_unsupervised(name: str, trained: TrainedNovelty, baseline: pd.DataFrame,
                     config: UnsupervisedConfig | None = None
                     ) -> tuple[IsolationForest | LocalOutlierFactor, TailCalibration]:
    """Fit baseline ``name`` on the novelty model's training part of ``baseline``; calibrate on its holdout."""
    if name not in UNSUPERVISED:
        raise ValueError(f"fit_unsupervised: name must be one of {UNSUPERVISED}, got {name!r}")
    config = config or UnsupervisedConfig()
    per_window = name.endswith("window")
    fit_rows, cal_rows = split_by_time(baseline, trained.config.holdout)
    fit = _matrix(trained, segment_frame(baseline.iloc[fit_rows], trained.config.segments), per_window)
    if len(fit) > config.max_fit_rows:
        fit = fit[capped_subsample(np.arange(len(fit)), np.zeros(len(fit), np.int64), config.max_fit_rows,
                                   config.seed)]
    model = _model(name, config).fit(fit)
    reference = -model.score_samples(_matrix(trained, baseline.iloc[cal_rows], per_window, baseline.iloc[fit_rows]))
    calibration = TailCalibration.fit(reference, trained.config.budget, trained.config.tail_fraction)
    return model, calibration


def score_unsupervised(name: str, model: IsolationForest | LocalOutlierFactor, trained: TrainedNovelty,
                       frame: pd.DataFrame, context: pd.DataFrame | None = None) -> np.ndarray:
    """Anomaly score (higher = more anomalous) of every flow of ``frame`` under a fitted baseline (windows reach
    back into ``context``, as in ``score_novelty``)."""
    return -model.score_samples(_matrix(trained, frame, name.endswith("window"), context))
