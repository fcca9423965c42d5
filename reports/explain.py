"""Why a flow is anomalous: a ``reason`` a person reads and a JSON ``explanation`` a program reads.

Both columns have one shape for every model, so the label-free novelty model fills them the same way:

``explanation`` (JSON, ``EXPLANATION_VERSION``)::

    {"version": 1, "model": "supervised" | "novelty" | ..., "method": "occlusion" | ...,
     "predicted_class": "synflood", "probability": 0.98, "score": 0.99,
     "top": [{"feature": "TCP_FLAGS", "observed": 2, "expected": 27, "weight": 0.61}, ...]}

``top`` lists the features that drove the decision, strongest first: ``observed`` is the flow's value,
``expected`` what normal traffic has (here: the median, or for ports, flags and categories the most frequent
value or "varied", over the batch's flows predicted benign), ``weight`` how much the feature mattered (for
occlusion: the drop in the log-odds of the predicted class against benign, log p(class) - log p(benign);
log-odds, because a confident network's p(class) rounds to 1.0 while p(benign) still moves from 1e-9 to 1e-6;
a novelty model puts its deviation there). ``reason`` is ``reason_text`` of the same content, e.g.
``synflood p=0.98: TCP_FLAGS 2 (normal 27), IN_PKTS 1 (normal 6)``.

Supervised model (``explain_supervised``): occlusion. For each source column of the feature pipeline, that
column's features are set, in the scored flow (``scope="flow"``, the default: which of the flow's own fields
drove its alert; its window's other flows stay as they are) or in every flow of its window (``window``; always for
a model with host features (``TrainConfig.host_features``) when the column is one: a host feature describes the
host's recent flows, and its earlier flows carry nearly the same value, so occluding it in one flow hides
nothing), to their
mean over the batch's flows predicted benign (the pipeline's fitted medians when there are none; a mean rather
than one benign flow's value, so that 16 flows sharing one source port do not look like a tool pinning its port);
the network runs
again, and the drop of the log-odds is the column's weight. With ``reference="sampled"`` the column takes instead,
in every flow independently, the features of a random flow predicted benign, and the weight is the mean drop over
``samples`` draws (the expected drop under the benign distribution, as interventional Shapley values use): a
mean of one-hot port buckets, flag bits or port frequencies is a value no flow has, and a network may react to
such an off-distribution input in ways real traffic never triggers. It costs ``samples`` times the network runs;
on the lab capture it moved the top feature to the expected field for one more attack kind of eight
(benchmarks/results/analyst.md), so ``mean`` stays the default. Anomalous flows are explained up to ``max_flows``,
the best-scoring flow of each (source, class, protocol) first, then each one's second, ...; the rest get their
incident's reason.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

from flowhawk.model.host_features import HOST_FEATURES
from flowhawk.model.scoring import model_inputs, predict_proba
from flowhawk.model.trained import TrainedModel
from flowhawk.model.windows import WindowIndex
from flowhawk.reports.analyst_config import EXPLAIN_REFERENCES, EXPLAIN_SCOPES

EXPLANATION_VERSION = 1
TOP_FEATURES = 3
REFERENCES = EXPLAIN_REFERENCES
SCOPES = EXPLAIN_SCOPES
_MODE_KINDS = ("port", "flags", "category")


def make_explanation(model: str, method: str, predicted_class: str | None, probability: float | None,
                     score: float | None, top: list[dict]) -> str:
    """The ``explanation`` JSON (see the module doc); ``top`` items: feature, observed, expected, weight."""
    return json.dumps({"version": EXPLANATION_VERSION, "model": model, "method": method,
                       "predicted_class": predicted_class, "probability": _clean(probability),
                       "score": _clean(score),
                       "top": [{k: _clean(item.get(k)) for k in ("feature", "observed", "expected", "weight")}
                               for item in top]}, sort_keys=True, allow_nan=False)


def reason_text(predicted_class: str | None, probability: float | None, top: list[dict]) -> str:
    """One readable line: class, probability, then each top feature with its observed and normal value."""
    head = f"{predicted_class or 'anomaly'}" + (f" p={probability:.2f}" if probability is not None else "")
    parts = [f"{t['feature']} {_show(t.get('observed'))} (normal {_show(t.get('expected'))})" for t in top]
    return head + (": " + ", ".join(parts) if parts else "")


def _clean(value: object) -> object:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if not math.isfinite(value):
            return None
        return int(value) if value.is_integer() and abs(value) < 2**53 else round(value, 6)
    return value


def _show(value: object) -> str:
    """A value as a person reads it in a reason: integers whole, other numbers to 3 significant digits (whole
    from 100 up); the ``explanation`` JSON keeps them exact."""
    value = _clean(value)
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return str(round(value)) if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def _explain_order(frame: pd.DataFrame, scores: pd.DataFrame, anomalous: np.ndarray) -> np.ndarray:
    """Anomalous rows in the order they are explained: the highest-scoring flow of every (source, predicted
    class, protocol) first, so that each incident's representative is explained even under the cap, then the
    second of each, and so on."""
    picked = pd.DataFrame({"row": anomalous, "score": scores["score"].to_numpy(dtype=float)[anomalous]})
    key = (frame["IPV4_SRC_ADDR"].astype(str) + "|" + scores["predicted_class"].astype(str).to_numpy() + "|"
           + frame["PROTOCOL"].astype(str)).to_numpy(dtype=object)
    picked["key"] = key[anomalous]
    picked = picked.sort_values(["score", "row"], ascending=[False, True], kind="stable")
    picked["rank"] = picked.groupby("key", sort=False).cumcount()
    return picked.sort_values(["rank", "score", "row"], ascending=[True, False, True],
                              kind="stable")["row"].to_numpy()


def _log_odds(probs: np.ndarray, cls_idx: np.ndarray) -> np.ndarray:
    """log p(predicted class) - log p(benign): a saturated network's p(class) rounds to 1.0 in float32, but its
    p(benign) (1e-9, 1e-7, ...) still ranks the features."""
    p = np.clip(probs.astype(np.float64), 1e-38, 1.0)
    return np.log(p[np.arange(len(p)), cls_idx]) - np.log(p[:, 0])


def _column_blocks(trained: TrainedModel) -> list[tuple[str, str, slice]]:
    """(source column, kind, feature slice) for every spec of the pipeline, in feature order."""
    names = trained.pipeline.feature_names
    bases = [re.split(r"[:=]", n, maxsplit=1)[0] for n in names]
    blocks, col = [], 0
    for spec in trained.pipeline.specs:
        width = 0
        while col + width < len(bases) and bases[col + width] == spec["name"]:
            width += 1
        blocks.append((spec["name"], spec["kind"], slice(col, col + width)))
        col += width
    return blocks


def typical_benign(frame: pd.DataFrame, benign: np.ndarray, blocks: list[tuple[str, str, slice]]) -> pd.DataFrame:
    """One row: each column's typical value over the benign rows: the median, or for ports, flags and categories
    the most frequent value when at least half the rows share it, else ``"varied"`` (ephemeral ports)."""
    rows = frame[benign]
    values: dict[str, object] = {}
    for name, kind, _ in blocks:
        column = rows[name].dropna() if name in rows.columns else pd.Series(dtype=float)
        if column.empty:
            values[name] = np.nan
        elif kind in _MODE_KINDS:
            counts = column.value_counts()
            values[name] = counts.index[0] if counts.iloc[0] >= 0.5 * len(column) else "varied"
        else:
            values[name] = float(column.astype(float).median())
    return pd.DataFrame([values], dtype=object)


def explain_supervised(trained: TrainedModel, frame: pd.DataFrame, scores: pd.DataFrame,
                       max_flows: int = 20_000, batch_size: int = 1024, reference: str = REFERENCES[0],
                       samples: int = 4, seed: int = 0, context: pd.DataFrame | None = None,
                       scope: str = SCOPES[0]) -> pd.DataFrame:
    """``reason`` and ``explanation`` for the anomalous rows of ``scores`` (None elsewhere), aligned to
    ``frame``'s rows (``frame`` and ``scores`` share row order). ``reference``: what an occluded column is
    replaced by (``sampled``: real benign flows' values, averaged over ``samples`` draws; ``mean``: the benign
    mean in feature space; see the module doc). ``context``: the earlier flows ``scores`` were computed with
    (``score_frame(context=)``); the windows reach back into them here too, occluded like the rest."""
    _check_options(reference, scope, samples)
    n = len(frame)
    out = pd.DataFrame({"reason": [None] * n, "explanation": [None] * n}, dtype=object)
    anomalous = np.flatnonzero(scores["is_anomaly"].to_numpy(dtype=bool))
    if not len(anomalous) or max_flows == 0:
        return out
    rows = _explain_order(frame, scores, anomalous)[:max_flows]
    rows = np.sort(rows)
    classes = list(trained.class_names)
    predicted = scores["predicted_class"].astype(str).to_numpy()
    cls_idx = np.array([classes.index(c) if c in classes else 1 for c in predicted[rows]])
    blocks = _column_blocks(trained)
    benign = predicted == classes[0]
    inputs, features, index, offset = model_inputs(trained, frame.reset_index(drop=True), context)
    flows = inputs.iloc[offset:].reset_index(drop=True)  # the batch's flows, with their host features if any
    expected = typical_benign(flows, benign, blocks)
    base = predict_proba(trained.network, features, index, offset + rows, batch_size)
    base_p = base[np.arange(len(rows)), cls_idx]
    references = _references(trained, features, np.concatenate([np.zeros(offset, bool), benign]), blocks,
                             reference, samples, seed)
    weights = _occlusion_weights(trained, features, index, offset + rows, (cls_idx, _log_odds(base, cls_idx)),
                                 blocks, references, batch_size, scope)
    names = [b[0] for b in blocks]
    typical = expected.iloc[0]
    score_values = scores["score"].to_numpy(dtype=float)
    reasons, explanations = [], []
    for i, row in enumerate(rows):
        top_j = [j for j in np.argsort(-weights[i], kind="stable")[:TOP_FEATURES] if weights[i, j] > 0]
        top = [{"feature": names[j], "observed": flows.at[row, names[j]] if names[j] in flows.columns else None,
                "expected": typical[names[j]], "weight": weights[i, j]} for j in top_j]
        cls, p = classes[cls_idx[i]], float(base_p[i])
        reasons.append(reason_text(cls, p, [{k: _clean(v) for k, v in t.items()} for t in top]))
        explanations.append(make_explanation("supervised", "occlusion", cls, p, float(score_values[row]), top))
    out.loc[rows, "reason"] = reasons
    out.loc[rows, "explanation"] = explanations
    return out


def _check_options(reference: str, scope: str, samples: int) -> None:
    if reference not in REFERENCES:
        raise ValueError(f"explain_supervised: reference must be one of {REFERENCES}, got {reference!r}")
    if scope not in SCOPES:
        raise ValueError(f"explain_supervised: scope must be one of {SCOPES}, got {scope!r}")
    if not isinstance(samples, int) or not 1 <= samples <= 64:
        raise ValueError(f"explain_supervised: samples must be an integer in [1, 64], got {samples!r}")


def _occlusion_weights(trained: TrainedModel, features: np.ndarray, index: WindowIndex, rows: np.ndarray,
                       predicted: tuple[np.ndarray, np.ndarray], blocks: list[tuple[str, str, slice]],
                       references: Iterator[np.ndarray], batch_size: int, scope: str) -> np.ndarray:
    """(rows, columns): mean over the references of the drop of the log-odds (``predicted``: each row's class
    index and unoccluded log-odds) when a column takes the reference's values in every flow of the window
    (``scope`` window, and host features in either scope; ``features`` is restored after each column) or in the
    scored flow only (``flow``)."""
    cls_idx, base_odds = predicted
    weights = np.zeros((len(rows), len(blocks)), dtype=np.float64)
    draws = 0
    for draw in references:
        draws += 1
        for j, (name, _, block) in enumerate(blocks):
            if scope == "flow" and name not in HOST_FEATURES:
                occluded = predict_proba(trained.network, features, index, rows, batch_size,
                                         edit=_last_flow_edit(draw, block))
            else:
                saved = features[:, block].copy()
                features[:, block] = draw[..., block]
                occluded = predict_proba(trained.network, features, index, rows, batch_size)
                features[:, block] = saved
            weights[:, j] += base_odds - _log_odds(occluded, cls_idx)
    return weights / max(draws, 1)


def _last_flow_edit(draw: np.ndarray, block: slice) -> Callable[[np.ndarray, np.ndarray], None]:
    """An ``edit`` for ``predict_proba``: the scored flow (last in its window) takes the reference's values of
    one column (``draw``: (F,) for every row, or (N, F) per row)."""
    def edit(chunk: np.ndarray, x: np.ndarray) -> None:
        x[:, -1, block] = draw[block] if draw.ndim == 1 else draw[chunk][:, block]
    return edit


def _references(trained: TrainedModel, features: np.ndarray, benign: np.ndarray,
                blocks: list[tuple[str, str, slice]], reference: str, samples: int, seed: int
                ) -> Iterator[np.ndarray]:
    """What occluded columns take, one at a time: ``samples`` (N, F) matrices whose every row is a random benign
    flow's features (``sampled``), or one (F,) vector, the benign mean (``mean``); without benign flows, the
    pipeline's fitted medians (one vector)."""
    if not benign.any():
        yield trained.pipeline.transform(pd.DataFrame([{b[0]: np.nan for b in blocks}]))[0]
    elif reference == "mean":
        yield features[benign].mean(axis=0)
    else:
        rng = np.random.default_rng(seed)
        pool = np.flatnonzero(benign)
        for _ in range(samples):
            yield features[rng.choice(pool, size=len(features))]
