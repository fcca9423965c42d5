"""Class indices from a flow frame's ``Label`` / ``Attack`` columns (training, refresh and evaluation share it)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from flowhawk.extractors.schema import BENIGN


def encode_labels(frame: pd.DataFrame, task: str, class_names: list[str] | None = None
                  ) -> tuple[np.ndarray, list[str]]:
    """Class index per row (-1 = unlabelled) and the class names (benign first).

    binary: ``Label`` (falling back to ``Attack`` != benign where Label is null). multiclass: ``Attack``
    (a case-insensitive 'benign' is the benign class). With ``class_names`` given (fine-tuning), a label
    outside them is an error.
    """
    n = len(frame)
    attack = frame["Attack"].astype("string") if "Attack" in frame.columns else pd.Series(pd.NA, index=frame.index,
                                                                                        dtype="string")
    attack = attack.where((attack.str.lower() != BENIGN.lower()).fillna(True), BENIGN)  # keep NA as NA
    if task == "binary":
        label = pd.to_numeric(frame["Label"], errors="coerce") if "Label" in frame.columns \
            else pd.Series(np.nan, index=frame.index)
        label = label.where(label.notna(), (attack != BENIGN).astype("Float64").where(attack.notna()))
        y = label.fillna(-1).to_numpy(dtype=np.int64)
        names = class_names or [BENIGN, "Attack"]
        if not set(np.unique(y)) <= {-1, 0, 1}:
            raise ValueError(f"binary labels must be 0/1, got {sorted(set(np.unique(y)) - {-1})}")
        return y, list(names)
    names = list(class_names) if class_names else [BENIGN, *sorted(set(attack.dropna()) - {BENIGN})]
    lookup = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(attack.dropna()) - set(lookup))
    if unknown:
        raise ValueError(f"Attack classes {unknown} are not among the model's classes {names}")
    y = attack.map(lookup).fillna(-1).to_numpy(dtype=np.int64) if n else np.zeros(0, np.int64)
    return y, names


def attack_kinds(frame: pd.DataFrame, y: np.ndarray) -> np.ndarray:
    """One attack-kind name per row (what a split must cover): the ``Attack`` name where present (benign
    spelled ``BENIGN``), else the class index as text."""
    kinds = np.asarray([str(v) for v in y], dtype=object)
    if "Attack" in frame.columns:
        attack = frame["Attack"].astype("string")
        attack = attack.where((attack.str.lower() != BENIGN.lower()).fillna(True), BENIGN)
        kinds = np.where(attack.notna().to_numpy(), attack.fillna("").to_numpy(dtype=object), kinds)
    return kinds
