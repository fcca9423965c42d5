"""The promotion guard of a refresh: compare the current model and the candidate, then decide.

``compare`` scores both models (each with its own threshold) on the refresh's held-out flows (all, old, new),
counts their false alerts on held-out benign flows, and checks both against the analysts' verdicts (every
verdict-labelled flow of the refresh: a false-positive verdict says "do not alert", a confirmed one "alert").

``decide_promotion`` promotes the candidate only if all four hold:

1. held-out F1 (``metric``) on all flows >= the current model's - ``f1_tolerance``;
2. on old held-out flows it drops by at most ``old_drop_tolerance``;
3. it raises no more false alerts on held-out benign flows than the current model plus
   ``benign_alert_tolerance`` x their number (F1 on attack-heavy data barely sees a few more benign flows
   flagged; an analyst sees every one);
4. it gets at most ``verdict_tolerance`` x (number of verdict-labelled flows) of them wrong, and never more
   than the current model: a candidate that still alerts on flows analysts marked false positive (or misses
   flows they confirmed) has not learnt what it was told;
5. for every attack class, its recall on that class's flows of the old data the refresh read (the replay
   sample, trained on or not) is at least the current model's minus ``recall_tolerance``: the held-out sample is
   a fifth of the flows, and a refresh that forgets attack flows outside it (an attacker's first requests, a
   one-flow ICMP flood) passes conditions 1-2 unseen. Per class, so that a rare kind cannot vanish inside a
   common one's count.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

from flowhawk.model.decision import attack_scores, decide
from flowhawk.model.evaluate import classification_metrics
from flowhawk.model.scoring import predict_proba
from flowhawk.model.train import Prepared
from flowhawk.model.trained import TrainedModel

OLD, NEW = 0, 1


class GuardSettings(Protocol):
    """The guard's part of ``model.refresh.RefreshConfig`` (documented there; read-only, as it is frozen)."""

    @property
    def metric(self) -> str: ...
    @property
    def f1_tolerance(self) -> float: ...
    @property
    def old_drop_tolerance(self) -> float: ...
    @property
    def benign_alert_tolerance(self) -> float: ...
    @property
    def verdict_tolerance(self) -> float: ...
    @property
    def recall_tolerance(self) -> float: ...


def compare(current: TrainedModel, candidate: TrainedModel, prep: Prepared, origin: np.ndarray,
            verdict_rows: np.ndarray | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics of both models on held-out flows: ``{model: {all|old|new: metrics}}``, the guard's counts:
    ``{model: {"benign_alerts": {n, flagged}, "verdicts": {...}}}``: false alerts on held-out benign flows and
    agreement with the verdict-labelled rows ``verdict_rows`` (``verdicts`` only when there are some))."""

    test = prep.split.test
    verdict_rows = np.zeros(0, np.int64) if verdict_rows is None else verdict_rows
    benign = prep.y[test] == 0
    old_attacks = np.flatnonzero((origin == OLD) & (prep.y > 0)).astype(np.int64)
    metrics: dict[str, Any] = {}
    counts: dict[str, Any] = {}
    for name, model in (("current", current), ("candidate", candidate)):
        probs = predict_proba(model.network, prep.features, prep.index, test)
        pred = decide(probs, model.threshold)
        scores = attack_scores(probs)
        metrics[name] = {}
        for part, sel in (("all", np.ones(len(test), bool)), ("old", origin[test] == OLD),
                          ("new", origin[test] == NEW)):
            if sel.any():
                metrics[name][part] = classification_metrics(prep.y[test][sel], pred[sel], scores[sel],
                                                             prep.class_names)
        counts[name] = {"benign_alerts": {"n": int(benign.sum()), "flagged": int((pred[benign] != 0).sum())}}
        if len(verdict_rows):
            counts[name]["verdicts"] = verdict_agreement(model, prep, verdict_rows)
        if len(old_attacks):
            detected = decide(predict_proba(model.network, prep.features, prep.index, old_attacks),
                              model.threshold) != 0
            classes = prep.y[old_attacks]
            counts[name]["old_recall"] = {prep.class_names[c]: {"n": int((classes == c).sum()),
                                                                "detected": int(detected[classes == c].sum())}
                                          for c in np.unique(classes)}
    return metrics, counts


def verdict_agreement(model: TrainedModel, prep: Prepared, rows: np.ndarray) -> dict[str, int]:
    """How ``model`` treats verdict-labelled rows: ``flagged_false_positive`` (alerts on a flow marked false
    positive), ``missed_confirmed`` (no alert on a confirmed flow), ``wrong`` (their sum), ``n``."""
    alert = decide(predict_proba(model.network, prep.features, prep.index, rows), model.threshold) != 0
    attack = prep.y[rows] != 0
    flagged, missed = int((alert & ~attack).sum()), int((~alert & attack).sum())
    return {"n": len(rows), "flagged_false_positive": flagged, "missed_confirmed": missed, "wrong": flagged + missed}


def decide_promotion(comparison: dict[str, Any], task: str, config: GuardSettings,
                     checks: dict[str, Any] | None = None) -> tuple[bool, str]:
    """(promote?, one-line reason with the numbers) from ``compare``'s two results (without ``checks``, only
    the F1 conditions 1 and 2 apply)."""
    key = config.metric if config.metric != "auto" else ("f1" if task == "binary" else "macro_f1")
    cur, cand = comparison["current"], comparison["candidate"]
    c_all, n_all = cur["all"][key], cand["all"][key]
    text = f"held-out {key} {n_all:.4f} vs current {c_all:.4f} (n={cur['all']['n']})"
    if not n_all >= c_all - config.f1_tolerance:
        return False, f"rejected: {text}: worse by more than {config.f1_tolerance}"
    if "old" in cur:
        c_old, n_old = cur["old"][key], cand["old"][key]
        text += f"; old {n_old:.4f} vs {c_old:.4f} (n={cur['old']['n']})"
        if not n_old >= c_old - config.old_drop_tolerance:
            return False, f"rejected: {text}: old data drop over {config.old_drop_tolerance}"
    else:
        text += "; no old held-out flows"
    c_counts, n_counts = (checks or {}).get("current", {}), (checks or {}).get("candidate", {})
    for check in (_benign_alerts, _verdicts, _old_recall):
        ok, text = check(c_counts, n_counts, config, text)
        if not ok:
            return False, f"rejected: {text}"
    return True, f"promoted: {text}"


def _benign_alerts(cur: dict[str, Any], cand: dict[str, Any], config: GuardSettings, text: str) -> tuple[bool, str]:
    if "benign_alerts" not in cur:
        return True, text
    n, c_flag, n_flag = cur["benign_alerts"]["n"], cur["benign_alerts"]["flagged"], cand["benign_alerts"]["flagged"]
    text += f"; benign flagged {n_flag} vs {c_flag} of {n}"
    allowed = c_flag + math.floor(config.benign_alert_tolerance * n + 1e-9)
    if n_flag > allowed:
        return False, f"{text}: more false alerts on held-out benign flows than {allowed}"
    return True, text


def _verdicts(cur: dict[str, Any], cand: dict[str, Any], config: GuardSettings, text: str) -> tuple[bool, str]:
    if "verdicts" not in cand:
        return True, text
    n, c_wrong, n_wrong = cand["verdicts"]["n"], cur["verdicts"]["wrong"], cand["verdicts"]["wrong"]
    text += f"; verdicts contradicted {n_wrong} vs {c_wrong} of {n}"
    allowed = min(c_wrong, math.floor(config.verdict_tolerance * n + 1e-9))
    if n_wrong > allowed:
        return False, f"{text}: contradicts more analyst verdicts than {allowed}"
    return True, text


def _old_recall(cur: dict[str, Any], cand: dict[str, Any], config: GuardSettings, text: str) -> tuple[bool, str]:
    if "old_recall" not in cur:
        return True, text
    drops = {c: (cur["old_recall"][c]["detected"] - cand["old_recall"][c]["detected"]) / cur["old_recall"][c]["n"]
             for c in cur["old_recall"]}
    worst = max(drops, key=lambda c: (drops[c], c))
    w_cur, w_cand = cur["old_recall"][worst], cand["old_recall"][worst]
    text += f"; old {worst} flows detected {w_cand['detected']} vs {w_cur['detected']} of {w_cur['n']}"
    if drops[worst] > config.recall_tolerance + 1e-12:
        return False, f"{text}: {worst} recall drops by more than {config.recall_tolerance}"
    return True, text
