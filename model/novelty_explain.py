"""Explanations of novelty scores: a flow's top contributing features, observed vs expected.

The network predicts every feature in the pipeline's scaled units; for the main value of a numeric column (a
counter, a host-behaviour feature) the expectation is mapped back to raw units (standardisation and signed log1p
undone), and the observation is the raw column value. Other features (one-hots, port scale, flag bits, missing
indicators) are reported as scaled values, observed and expected alike, the expectation clipped to the range the
feature takes (0..1; -1..1 for a port's scaled value): a reconstruction may overshoot it, and "PROTOCOL=1 1
(normal -0.04)" reads as nonsense where "(normal 0)" says what the network expected.

Columns the pipeline dropped as constant in training (``FeaturePipeline.constants``: a host that never sent a lone
SYN on a quiet day has HOST_SYN_ONLY 0 in every window) are not in the network's input, so no error can point at
them; yet a value outside the range training saw is the plainest deviation there is. Such columns come first,
farthest outside that range first (in signed log1p units), observed raw vs the training median as expected, with
``share`` null (they carry no share of the error); the network's ``top`` features follow.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from flowhawk.model.features import FeaturePipeline, column_floats, signed_log1p


def _feature_table(pipeline: FeaturePipeline) -> list[tuple[str, dict | None]]:
    """Per feature position: its name and, for the raw value of a numeric column, that column's spec."""
    return [(name, spec if spec["kind"] == "numeric" and offset == 0 else None)
            for name, spec, offset in pipeline.feature_specs()]


def explain_rows(pipeline: FeaturePipeline, raw: pd.DataFrame, top: np.ndarray, expected: np.ndarray,
                 share: np.ndarray) -> list[str]:
    """One explanation per row of ``raw`` (the flows' input columns) from its top feature positions, as the JSON
    text of a list of ``{"feature", "observed", "expected", "share"}`` (what ``json.dumps`` of the list gives;
    written directly: serialising tens of thousands of small lists cost more than scoring them)."""
    table = _feature_table(pipeline)
    scaled = pipeline.transform(raw)
    observed, want = _observed_expected(table, raw, np.asarray(scaled, dtype=np.float64), top,
                                        np.asarray(expected, dtype=np.float64))
    names = [json.dumps(name) for name, _ in table]
    k = top.shape[1]
    columns = [([names[p] for p in top[:, j].tolist()], _numbers(observed[:, j]), _numbers(want[:, j]),
                list(map(repr, np.round(np.asarray(share[:, j], dtype=np.float64), 4).tolist())))
               for j in range(k)]
    entries = [[f'{{"feature": {n}, "observed": {o}, "expected": {e}, "share": {w}}}'
                for n, o, e, w in zip(*column, strict=True)] for column in columns]
    inner = [", ".join(row) for row in zip(*entries, strict=True)] if k else [""] * len(raw)
    for at, unseen in _unseen_entries(pipeline, raw).items():
        inner[at] = unseen + (", " + inner[at] if inner[at] else "")
    return ["[" + text + "]" for text in inner]


def _unseen_entries(pipeline: FeaturePipeline, raw: pd.DataFrame) -> dict[int, str]:
    """Per row position with any: the JSON entries (joined) of the columns constant in training whose value lies
    outside the range training saw, farthest first (vectorised over the few constant columns)."""
    columns = [c for c in pipeline.constants if c in raw.columns]
    if not columns or not len(raw):
        return {}
    values = np.column_stack([column_floats(raw, c) for c in columns])  # (N, C)
    lo = signed_log1p(np.array([pipeline.constants[c]["lo"] for c in columns], dtype=np.float64))
    hi = signed_log1p(np.array([pipeline.constants[c]["hi"] for c in columns], dtype=np.float64))
    logged = signed_log1p(values)
    distance = np.where(logged > hi, logged - hi, np.where(logged < lo, lo - logged, 0.0))
    distance[~np.isfinite(distance)] = 0.0
    rows = np.flatnonzero((distance > 0).any(axis=1))
    if not rows.size:
        return {}
    distance = distance[rows]
    order = np.argsort(-distance, axis=1, kind="stable")  # (M, C): farthest first, ties in column order
    count = (distance > 0).sum(axis=1)
    expected = _numbers(np.array([pipeline.constants[c]["value"] for c in columns], dtype=np.float64))
    heads = [f'{{"feature": {json.dumps(c)}, "observed": ' for c in columns]
    tails = [f', "expected": {e}, "share": null}}' for e in expected]
    observed = [_numbers(values[rows, j]) for j in range(len(columns))]
    return {at: ", ".join(heads[j] + observed[j][i] + tails[j] for j in order[i, :count[i]].tolist())
            for i, at in enumerate(rows.tolist())}


def _numbers(values: np.ndarray) -> list[str]:
    """JSON numbers rounded to 6 decimals (null for a non-finite value), one string per value, vectorised."""
    finite = np.isfinite(values)
    text = list(map(repr, np.round(np.where(finite, values, 0.0), 6).tolist()))
    for at in np.flatnonzero(~finite).tolist():
        text[at] = "null"
    return text


def _observed_expected(table: list[tuple[str, dict | None]], raw: pd.DataFrame, scaled: np.ndarray, top: np.ndarray,
                       expected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(observed, expected) per row and top position, vectorised: raw units for a numeric column's main value
    (the expectation unscaled: standardisation undone, clipped to the fitted range, signed log1p undone; the raw
    column as observed), scaled units for every other feature (the expectation clipped to its range)."""
    columns = sorted({spec["name"] for _, spec in table if spec is not None})
    observed_raw = np.column_stack([
        column_floats(raw, c) for c in columns] or [np.full(len(raw), np.nan)])
    n_features = len(table)
    numeric = np.zeros(n_features, dtype=bool)
    column_of = np.zeros(n_features, dtype=np.int64)
    params = np.zeros((4, n_features))  # std, mean, lo, hi
    logged = np.zeros(n_features, dtype=bool)
    for k, (_, spec) in enumerate(table):
        if spec is not None:
            numeric[k], column_of[k], logged[k] = True, columns.index(spec["name"]), bool(spec["log"])
            params[:, k] = spec["std"], spec["mean"], spec["lo"], spec["hi"]
    rows = np.arange(len(raw))[:, None]
    is_num = numeric[top]
    std, mean, lo, hi = (p[top] for p in params)
    value = np.clip(expected * std + mean, lo, hi)
    with np.errstate(over="ignore", invalid="ignore"):  # expm1 of unlogged positions' values is discarded
        value = np.where(logged[top], np.sign(value) * np.expm1(np.abs(value)), value)
    lower = np.array([-1.0 if name.endswith(":value") else 0.0 for name, _ in table])  # port:value is in -1..1
    want = np.where(is_num, value, np.clip(expected, lower[top], 1.0))
    observed = np.where(is_num, observed_raw[rows, column_of[top]], scaled[rows, top])
    return observed, want

