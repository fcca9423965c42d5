"""Metrics against scikit-learn and hand counts, threshold tuning, the decision rule, baselines, tables."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score

from flowhawk.model.baselines import BaselineConfig, run_baselines
from flowhawk.model.decision import decide
from flowhawk.model.evaluate import (
    classification_metrics,
    render_confusion,
    render_table,
    results_table,
    tune_threshold,
)

NAMES = ["Benign", "DoS", "Scan"]
# hand-made: 4 benign (one flagged as DoS), 4 DoS (one called Scan, one missed), 2 Scan
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
Y_PRED = np.array([0, 0, 0, 1, 1, 1, 2, 0, 2, 2])
SCORES = np.array([0.1, 0.2, 0.3, 0.7, 0.9, 0.8, 0.6, 0.4, 0.95, 0.85])


def test_metrics_match_hand_counts_and_sklearn():
    m = classification_metrics(Y_TRUE, Y_PRED, SCORES, NAMES)
    # attack vs benign: TP = 5 (attacks flagged as any attack), FP = 1, FN = 1, TN = 3
    assert m["precision"] == pytest.approx(5 / 6) and m["recall"] == pytest.approx(5 / 6)
    assert m["f1"] == pytest.approx(5 / 6)
    assert m["benign_recall"] == pytest.approx(0.75) and m["fpr"] == pytest.approx(0.25)
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["macro_f1"] == pytest.approx(f1_score(Y_TRUE, Y_PRED, average="macro"))
    assert m["pr_auc"] == pytest.approx(average_precision_score(Y_TRUE != 0, SCORES))
    assert m["confusion"] == [[3, 1, 0], [1, 2, 1], [0, 0, 2]]
    assert m["per_class"]["DoS"]["precision"] == pytest.approx(precision_score(Y_TRUE, Y_PRED, labels=[1],
                                                                               average="macro"))
    assert m["per_class"]["Scan"]["recall"] == pytest.approx(recall_score(Y_TRUE, Y_PRED, labels=[2],
                                                                          average="macro"))
    assert m["per_class"]["Benign"]["support"] == 4
    assert "true DoS" in render_confusion(m)


def test_threshold_maximises_f1_and_prefers_lower_fpr_on_ties():
    is_attack = np.array([0, 0, 1, 0, 1, 1], dtype=bool)
    scores = np.array([0.1, 0.2, 0.3, 0.5, 0.8, 0.9])
    tuned = tune_threshold(is_attack, scores)
    # candidates: >=0.8 -> F1 0.8 ; >=0.5 -> 4/6=0.667 ; >=0.3 -> F1 6/7=0.857 (best)
    assert 0.2 < tuned["threshold"] <= 0.3
    assert tuned["f1"] == pytest.approx(6 / 7) and tuned["fpr"] == pytest.approx(1 / 3)
    separable = tune_threshold(np.array([0, 0, 1, 1], bool), np.array([0.1, 0.2, 0.7, 0.9]))
    assert 0.2 < separable["threshold"] < 0.7 and separable["f1"] == 1.0 and separable["fpr"] == 0.0
    assert tune_threshold(np.array([1, 1], bool), np.array([0.3, 0.9]))["threshold"] == 0.5
    # MCC weighs benign errors too: >=0.8 (TP 2, FP 0, FN 1, TN 3) and >=0.3 tie at 0.707; the higher wins
    mcc = tune_threshold(is_attack, scores, metric="mcc")
    assert 0.5 < mcc["threshold"] <= 0.8 and mcc["fpr"] == 0.0 and mcc["f1"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="threshold metric"):
        tune_threshold(is_attack, scores, metric="auc")


def test_decision_rule_binary_and_multiclass():
    probs = np.array([[0.9, 0.05, 0.05], [0.4, 0.1, 0.5], [0.6, 0.3, 0.1]])
    assert decide(probs, 0.5).tolist() == [0, 2, 0]
    assert decide(probs, 0.35).tolist() == [0, 2, 1]  # attack score 0.4 >= 0.35 -> best attack class
    assert decide(np.array([[0.7, 0.3], [0.2, 0.8]]), 0.25).tolist() == [1, 1]


def test_baselines_on_separable_flows_and_results_table():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4))
    y = (x[:, 0] > 0.5).astype(np.int64) + (x[:, 1] > 1.0).astype(np.int64) * (x[:, 0] > 0.5)
    results = run_baselines(x[:300], y[:300], x[300:], y[300:], NAMES,
                            BaselineConfig(trees=20, knn_max_rows=100))
    assert list(results) == ["majority", "extra_trees", "random_forest", "knn", "linear_svm"]
    assert results["majority"]["benign_recall"] == 1.0 and results["majority"]["recall"] == 0.0
    assert results["random_forest"]["f1"] > 0.9 and results["extra_trees"]["macro_f1"] > 0.6
    table = results_table(results)
    assert list(table.index) == list(results) and table.loc["knn", "f1"] == results["knn"]["f1"]
    text = render_table(table, markdown=True)
    assert text.splitlines()[0].startswith("| model | accuracy") and "random_forest" in text
    with pytest.raises(ValueError, match="unknown"):
        BaselineConfig(names=("xgboost",))
