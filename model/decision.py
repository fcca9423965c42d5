"""The decision rule, in one place and without scikit-learn: attack score and predicted class from probabilities.

Class 0 is always benign. The attack score is ``1 - p(benign)``; a flow is an attack when its score >=
threshold, and then its class is the most probable attack class, otherwise benign.
"""

from __future__ import annotations

import numpy as np


def attack_scores(probs: np.ndarray) -> np.ndarray:
    """(N, C) class probabilities -> (N,) attack score 1 - p(benign)."""
    return np.clip(1.0 - probs[:, 0], 0.0, 1.0)


def decide(probs: np.ndarray, threshold: float) -> np.ndarray:
    """Predicted class per row: 0 (benign) when the attack score < threshold, else the best attack class."""
    if probs.shape[1] == 2:
        return (attack_scores(probs) >= threshold).astype(np.int64)
    best_attack = 1 + np.argmax(probs[:, 1:], axis=1)
    return np.where(attack_scores(probs) >= threshold, best_attack, 0).astype(np.int64)
