"""One verdict per flow from the supervised detector and the novelty model, whichever of them exist.

The rule (documented in the README's report schema):

- ``attack_score``: the supervised model's attack probability (1 - p(benign)); null without a supervised model.
- ``novelty_score``: 1 - the flow's tail probability among baseline flows; null without a novelty model.
- ``is_anomaly``: the supervised model flags it (attack_score >= its threshold) **or** the novelty model does
  (tail probability <= its false-alert budget).
- ``score``: the larger of the two scores present (null when neither model exists: a baselining report).
- ``novelty_rule``: one of the novelty model's baseline rules flags the flow (inbound flood, volume excess); used
  for incident severity (``reports.incidents``), not written to the scored flows.
- ``predicted_class``: the supervised class when the supervised model flags the flow; ``novel`` when only the
  novelty model does (``inbound-flood`` when its inbound-flood rule is among the reasons: the flow's destination
  heard far more sources at once than any destination of the baseline, ``model.novelty_inbound``); otherwise the
  benign class (``Benign``); null while baselining.
- ``reason`` / ``explanation``: the supervised model's (known attack class, probability and the features that
  drove it) when it flags the flow; otherwise, when the novelty model does, ``novel: `` and its top deviating
  features with observed vs expected values ("normal" in the text), and the same JSON shape
  (``reports.explain``) with ``model: novelty`` and each feature's share of the flow's error as its weight.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from flowhawk.extractors.schema import BENIGN
from flowhawk.model.novelty_inbound import INBOUND_CLASS
from flowhawk.reports.explain import make_explanation, reason_text

NOVEL = "novel"
COLUMNS = ("score", "is_anomaly", "predicted_class", "attack_score", "novelty_score", "novelty_rule", "reason",
           "explanation")


def combine_scores(n: int, supervised: pd.DataFrame | None, novelty: pd.DataFrame | None) -> pd.DataFrame:
    """``supervised``: ``score``, ``is_anomaly``, ``predicted_class`` (+ optional ``reason``, ``explanation``) per
    flow; ``novelty``: ``score_novelty``'s frame. Both in flow order with ``n`` rows (or None)."""
    for name, part in (("supervised", supervised), ("novelty", novelty)):
        if part is not None and len(part) != n:
            raise ValueError(f"combine_scores: {name} scores have {len(part)} rows for {n} flows")
    nan = np.full(n, np.nan)
    no = np.zeros(n, dtype=bool)
    attack = supervised["score"].to_numpy(dtype=np.float64) if supervised is not None else nan
    novel = novelty["novelty_score"].to_numpy(dtype=np.float64) if novelty is not None else nan
    flag_s = supervised["is_anomaly"].to_numpy(dtype=bool) if supervised is not None else no
    flag_n = novelty["is_anomaly"].to_numpy(dtype=bool) if novelty is not None else no
    out = pd.DataFrame({
        "score": np.fmax(attack, novel),
        "is_anomaly": flag_s | flag_n,
        "predicted_class": _classes(n, supervised, novelty, flag_s, flag_n),
        "attack_score": attack, "novelty_score": novel, "novelty_rule": _rule_hits(n, novelty),
    })
    reason, explanation = _reasons(n, supervised, novelty, flag_s, flag_n, out["predicted_class"].to_numpy())
    out["reason"], out["explanation"] = reason, explanation
    return out


def _rule_hits(n: int, novelty: pd.DataFrame | None) -> np.ndarray:
    """Per flow: one of the novelty model's baseline rules flags it (inbound flood, volume excess)."""
    hits = np.zeros(n, dtype=bool)
    for column in ("inbound_flood", "volume_excess"):
        if novelty is not None and column in novelty.columns:
            hits |= novelty[column].to_numpy(dtype=bool)
    return hits


def _classes(n: int, supervised: pd.DataFrame | None, novelty: pd.DataFrame | None, flag_s: np.ndarray,
             flag_n: np.ndarray) -> np.ndarray:
    if supervised is None and novelty is None:
        return np.full(n, None, dtype=object)
    classes = np.full(n, BENIGN, dtype=object)
    if supervised is not None:
        classes = supervised["predicted_class"].astype(object).to_numpy().copy()
    classes[flag_n & ~flag_s] = NOVEL
    if novelty is not None and "inbound_flood" in novelty.columns:
        classes[flag_n & ~flag_s & novelty["inbound_flood"].to_numpy(dtype=bool)] = INBOUND_CLASS
    return classes


def _reasons(n: int, supervised: pd.DataFrame | None, novelty: pd.DataFrame | None, flag_s: np.ndarray,
             flag_n: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    reason = np.full(n, None, dtype=object)
    explanation = np.full(n, None, dtype=object)
    if supervised is not None:
        for name, target in (("reason", reason), ("explanation", explanation)):
            if name in supervised.columns:
                target[flag_s] = supervised[name].astype(object).to_numpy()[flag_s]
    if novelty is not None:
        only = np.flatnonzero(flag_n & ~flag_s)
        texts = novelty["explanation"].astype(object).to_numpy()
        scores = novelty["novelty_score"].to_numpy(dtype=np.float64)
        for i in only:
            top = [{"feature": e["feature"], "observed": e["observed"], "expected": e["expected"],
                    "weight": e.get("share")} for e in (json.loads(texts[i]) if texts[i] else [])]
            reason[i] = reason_text(classes[i], None, top)
            explanation[i] = make_explanation("novelty", "reconstruction error", classes[i], None, float(scores[i]),
                                              top)
    return reason, explanation
