"""Per-flow baselines on the same split and the same fitted features as the detector.

Each baseline sees one flow's own feature vector (no window). ``majority`` always predicts the most frequent
training class; the others are scikit-learn models: ExtraTrees, RandomForest (100 trees each), kNN (k=5,
fitted on at most ``knn_max_rows`` training rows because prediction cost grows with them) and a linear SVM
(LinearSVC; its decision function is the attack score). Baselines predict their own most probable class (no
tuned threshold); every result goes through the project's metrics (``model.evaluate``), so its row in the
table is directly comparable. ``compare`` builds the table: the trained detector beside every baseline.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import LinearSVC

from flowhawk.model.config import BASELINES
from flowhawk.model.evaluate import classification_metrics, results_table
from flowhawk.model.splits import capped_subsample

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaselineConfig:
    names: tuple[str, ...] = BASELINES
    seed: int = 0
    n_jobs: int = 1
    trees: int = 100
    knn_max_rows: int = 50_000

    def __post_init__(self) -> None:
        unknown = sorted(set(self.names) - set(BASELINES))
        if unknown:
            raise ValueError(f"BaselineConfig.names: unknown {unknown}; valid: {list(BASELINES)}")
        for name in ("n_jobs", "trees", "knn_max_rows"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"BaselineConfig.{name}: must be an integer >= 1, got {getattr(self, name)!r}")


def _model(name: str, config: BaselineConfig) -> Any:
    if name == "extra_trees":
        return ExtraTreesClassifier(n_estimators=config.trees, random_state=config.seed, n_jobs=config.n_jobs)
    if name == "random_forest":
        return RandomForestClassifier(n_estimators=config.trees, random_state=config.seed, n_jobs=config.n_jobs)
    if name == "knn":
        return KNeighborsClassifier(n_neighbors=5, n_jobs=config.n_jobs)
    return LinearSVC(C=1.0, random_state=config.seed, max_iter=5000)


def predict_baseline(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                     n_classes: int, config: BaselineConfig) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class per test row, attack score per test row) of one baseline."""
    if name == "majority":
        majority = int(np.bincount(y_train, minlength=n_classes).argmax())
        return np.full(len(x_test), majority), np.full(len(x_test), float(majority != 0))
    if name == "knn" and len(x_train) > config.knn_max_rows:
        keep = capped_subsample(np.arange(len(y_train)), y_train, config.knn_max_rows, config.seed)
        x_train, y_train = x_train[keep], y_train[keep]
    model = _model(name, config)
    model.fit(x_train, y_train)
    predicted = model.predict(x_test).astype(np.int64)
    if name == "linear_svm":
        decision = model.decision_function(x_test)
        score = decision if decision.ndim == 1 else decision[:, 1:].max(axis=1) - decision[:, 0]
        return predicted, score
    probs = np.zeros((len(x_test), n_classes))
    probs[:, model.classes_] = model.predict_proba(x_test)
    return predicted, 1.0 - probs[:, 0]


def run_baselines(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                  class_names: list[str], config: BaselineConfig | None = None) -> dict[str, dict[str, Any]]:
    """{baseline name: metrics dict (plus fit_predict_seconds)} on the given train/test rows."""
    config = config or BaselineConfig()
    results = {}
    for name in config.names:
        started = time.monotonic()
        predicted, score = predict_baseline(name, x_train, y_train, x_test, len(class_names), config)
        metrics = classification_metrics(y_test, predicted, score, class_names)
        metrics["fit_predict_seconds"] = round(time.monotonic() - started, 1)
        log.info("baseline %s: F1 %.4f macro-F1 %.4f benign recall %.4f (%.0fs)", name, metrics["f1"],
                 metrics["macro_f1"], metrics["benign_recall"], metrics["fit_predict_seconds"])
        results[name] = metrics
    return results


def compare(prep: Any, trained: Any, config: BaselineConfig | None = None, name: str = "flowhawk"
            ) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """Table of the detector's test metrics beside every baseline's, all on ``prep``'s split and features
    (``prep`` from ``model.train.prepare``, ``trained`` from ``train_prepared(prep, ...)``). Returns the
    table and the full metrics per model (confusion matrices, per-class reports)."""
    train_rows, test_rows = prep.train_rows, prep.split.test
    results = {name: trained.metrics["test"]}
    results.update(run_baselines(prep.features[train_rows], prep.y[train_rows], prep.features[test_rows],
                                 prep.y[test_rows], prep.class_names, config))
    return results_table(results), results
