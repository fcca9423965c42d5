"""Evaluation: decision rule, validation-tuned threshold, metrics, and the comparison table.

Class 0 is always benign. A model gives class probabilities; the attack score is ``1 - p(benign)``. The
decision: a flow is an attack when its score >= threshold, and then its class is the most probable attack
class; otherwise it is benign. So binary and multiclass use one rule, and the threshold tuned on validation
(max F1 of attack vs benign) sets the benign recall of both.

Metrics (attack = positive): accuracy, precision, recall, F1, benign recall, FPR (= 1 - benign recall),
macro-F1 over the task's classes, PR-AUC (average precision of the attack score), confusion matrix and a
per-class report.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    matthews_corrcoef,
    precision_recall_fscore_support,
)

from flowhawk.extractors.schema import BENIGN
from flowhawk.lake.store import Lake
from flowhawk.model.config import THRESHOLD_METRICS
from flowhawk.model.labels import encode_labels
from flowhawk.model.novelty import score_novelty
from flowhawk.model.novelty_lifecycle import batch_context
from flowhawk.model.novelty_store import TrainedNovelty
from flowhawk.model.scoring import score_frame
from flowhawk.model.trained import TrainedModel

TABLE_COLUMNS = ("accuracy", "precision", "recall", "f1", "benign_recall", "fpr", "macro_f1", "pr_auc")


def tune_threshold(is_attack: np.ndarray, scores: np.ndarray, metric: str = "f1") -> dict[str, float]:
    """Threshold maximising ``metric`` on validation: ``f1`` (attack positive) or ``mcc`` (Matthews
    correlation, which also weighs benign errors when attacks dominate); ties go to the higher threshold.

    The threshold is placed midway between the chosen score and the next lower one, so it does not sit on a
    validation flow. A threshold that flags every benign validation flow (FPR 1.0) is never chosen: when the
    scores separate nothing, it ends above the highest benign score instead. Returns {threshold, f1, fpr,
    benign_recall} measured at it; 0.5 when validation lacks either class.
    """
    if metric not in THRESHOLD_METRICS:
        raise ValueError(f"threshold metric: must be one of {THRESHOLD_METRICS}, got {metric!r}")
    is_attack = np.asarray(is_attack, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if is_attack.all() or not is_attack.any():
        return {"threshold": 0.5, **_rates(is_attack, scores >= 0.5)}
    candidates = np.unique(scores)[::-1]  # descending
    order = np.argsort(-scores, kind="stable")
    tp_cum = np.cumsum(is_attack[order])
    counts = np.searchsorted(-scores[order], -candidates, side="right")  # flows with score >= candidate
    tp = tp_cum[counts - 1].astype(np.float64)
    fp = counts - tp
    fn = is_attack.sum() - tp
    tn = (~is_attack).sum() - fp
    if metric == "f1":
        value = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    else:
        denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        value = np.where(denom > 0, (tp * tn - fp * fn) / np.maximum(denom, 1e-300), 0.0)
    value = np.where(fp < (~is_attack).sum(), value, -np.inf)  # FPR 1.0 is never a tuned threshold
    best = int(np.argmax(value))  # first max = highest threshold among ties
    lower = candidates[best + 1] if best + 1 < len(candidates) else 0.0
    threshold = float((candidates[best] + lower) / 2.0)
    return {"threshold": threshold, **_rates(is_attack, scores >= threshold)}


def majority_check(y_true: np.ndarray, y_pred: np.ndarray, majority: int, class_names: list[str],
                   min_z: float = 2.0) -> dict[str, Any]:
    """Is a model's validation performance better than the majority baseline (always ``majority``, the most
    frequent training class)? Both must hold: its macro-F1 beats the baseline's, and its attack-vs-benign
    Matthews correlation is significantly above the baseline's 0 (MCC * sqrt(n) > ``min_z``: under no
    association sqrt(n) * MCC is about standard normal). Returns the figures and ``ok``."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    ours = classification_metrics(y_true, y_pred, None, class_names)
    base = classification_metrics(y_true, np.full_like(y_true, majority), None, class_names)
    mcc = float(matthews_corrcoef(y_true != 0, y_pred != 0)) if len(np.unique(y_true != 0)) > 1 else 0.0
    z = mcc * float(np.sqrt(len(y_true)))
    ok = bool(ours["macro_f1"] > base["macro_f1"] and z > min_z)
    reason = "" if ok else (f"validation no better than the majority baseline: macro-F1 {ours['macro_f1']:.4f} vs "
                            f"{base['macro_f1']:.4f}, MCC {mcc:.4f} (z {z:.1f}, needs > {min_z})")
    return {"ok": ok, "reason": reason, "macro_f1": ours["macro_f1"], "majority_macro_f1": base["macro_f1"],
            "mcc": mcc, "z": z, "fpr": ours["fpr"], "n": len(y_true)}


def _rates(is_attack: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    benign = ~is_attack
    benign_recall = float((benign & ~flagged).sum() / benign.sum()) if benign.any() else float("nan")
    f1 = f1_score(is_attack, flagged, zero_division=0.0) if is_attack.any() else float("nan")
    return {"f1": float(f1), "fpr": 1.0 - benign_recall, "benign_recall": benign_recall}


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, scores: np.ndarray | None,
                           class_names: list[str]) -> dict[str, Any]:
    """All metrics for predictions ``y_pred`` (class indices, 0 = benign) against ``y_true``."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    labels = list(range(len(class_names)))
    true_attack, pred_attack = y_true != 0, y_pred != 0
    precision, recall, f1, _ = precision_recall_fscore_support(
        true_attack, pred_attack, average="binary", zero_division=0.0)
    per_p, per_r, per_f, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0.0)
    present = [k for k in labels if support[k] > 0]
    benign = ~true_attack
    benign_recall = float((~pred_attack & benign).sum() / benign.sum()) if benign.any() else float("nan")
    pr_auc = float("nan")
    if scores is not None and true_attack.any() and benign.any():
        pr_auc = float(average_precision_score(true_attack, scores))
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision": float(precision), "recall": float(recall), "f1": float(f1),
        "benign_recall": benign_recall, "fpr": 1.0 - benign_recall,
        "macro_f1": float(np.mean(per_f[present])) if present else float("nan"),
        "pr_auc": pr_auc,
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "class_names": list(class_names),
        "per_class": {class_names[k]: {"precision": float(per_p[k]), "recall": float(per_r[k]),
                                       "f1": float(per_f[k]), "support": int(support[k])} for k in labels},
    }


def results_table(results: dict[str, dict[str, Any]], extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """{model name: metrics dict} -> tidy table (one row per model, TABLE_COLUMNS + ``extra`` columns)."""
    rows = []
    for name, metrics in results.items():
        rows.append({"model": name, **{c: metrics.get(c, float("nan")) for c in (*TABLE_COLUMNS, *extra)}})
    return pd.DataFrame(rows).set_index("model")


def render_table(table: pd.DataFrame, digits: int = 4, markdown: bool = False) -> str:
    """Console (or Markdown) rendering of a results table."""
    shown = table.copy()
    for col in shown.columns:
        if pd.api.types.is_float_dtype(shown[col]):
            shown[col] = shown[col].map(lambda v: "-" if pd.isna(v) else f"{v:.{digits}f}")
    if not markdown:
        return shown.to_string()
    header = "| model | " + " | ".join(shown.columns) + " |"
    lines = [header, "|" + "---|" * (len(shown.columns) + 1)]
    lines += ["| " + " | ".join([str(i), *map(str, r)]) + " |" for i, r in zip(shown.index, shown.values, strict=True)]
    return "\n".join(lines)


def render_confusion(metrics: dict[str, Any]) -> str:
    """Confusion matrix with class names (rows = truth, columns = prediction)."""
    names = metrics["class_names"]
    return pd.DataFrame(metrics["confusion"], index=[f"true {n}" for n in names], columns=names).to_string()


def render_per_class(metrics: dict[str, Any], digits: int = 4) -> str:
    frame = pd.DataFrame(metrics["per_class"]).T
    return frame.to_string(float_format=lambda v: f"{v:.{digits}f}")


def evaluate_batches(trained: TrainedModel | TrainedNovelty, lake: Lake, batches: list[str]
                     ) -> dict[str, dict[str, Any]]:
    """Metrics of ``trained`` on the labelled flows of each batch (scored batch by batch, as in production)
    and on all of them together (key ``all``). A novelty model is evaluated as attack-vs-benign: its flags
    against ``Label`` (labels used for evaluation only), its score ``novelty_score``. Either kind scores each
    batch with its hosts' earlier lake flows as context (as ``process_inbox`` scores it)."""
    results: dict[str, dict[str, Any]] = {}
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    names = list(trained.class_names) if isinstance(trained, TrainedModel) else [BENIGN, "Attack"]
    for batch in batches:
        frame = lake.read_flows([batch])
        window = trained.config.window if isinstance(trained, TrainedNovelty) else trained.train_config.window
        context = batch_context(lake, [batch], frame, window)
        y, pred, score = _predictions(trained, frame, names, context)
        keep = y >= 0
        if keep.any():
            results[batch] = classification_metrics(y[keep], pred[keep], score[keep], names)
            parts.append((y[keep], pred[keep], score[keep]))
    if not parts:
        raise ValueError(f"batches {batches}: no labelled flows")
    y, pred, score = (np.concatenate(p) for p in zip(*parts, strict=True))
    results["all"] = classification_metrics(y, pred, score, names)
    return results


def _predictions(trained: TrainedModel | TrainedNovelty, frame: pd.DataFrame, names: list[str],
                 context: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true class, predicted class, score) per flow of ``frame``."""
    if isinstance(trained, TrainedModel):
        y, _ = encode_labels(frame, trained.task, names)
        scored = score_frame(trained, frame, context=context)
        lookup = {name: i for i, name in enumerate(names)}
        return y, scored["predicted_class"].map(lookup).to_numpy(dtype=np.int64), scored["score"].to_numpy()
    y, _ = encode_labels(frame, "binary", names)
    scored = score_novelty(trained, frame, explain="none", context=context)
    return y, scored["is_anomaly"].to_numpy(dtype=np.int64), scored["novelty_score"].to_numpy()
