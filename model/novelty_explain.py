"""Explanations of novelty scores: a flow's top contributing features, observed vs expected.

The network predicts every feature in the pipeline's scaled units; for the main value of a numeric column (a
counter, a host-behaviour feature) the expectation is mapped back to raw units (standardisation and signed log1p
undone), and the observation is the raw column value. Other features (one-hots, port scale, flag bits, missing
indicators) are reported as scaled values, observed and expected alike.

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

from flowhawk.model.features import FeaturePipeline, signed_log1p

Explanation = list[dict[str, str | float]]


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
    rows = [list(row) for row in zip(*entries, strict=True)] if k else [[] for _ in range(len(raw))]
    for at, unseen in _unseen_entries(pipeline, raw).items():
        rows[at] = unseen + rows[at]
    return ["[" + ", ".join(row) + "]" for row in rows]


def _unseen_entries(pipeline: FeaturePipeline, raw: pd.DataFrame) -> dict[int, list[str]]:
    """Per row position with any: the JSON entries of the columns constant in training whose value lies outside
    the range training saw, farthest first."""
    found: list[tuple[np.ndarray, str, np.ndarray, str, np.ndarray]] = []
    for column, seen in pipeline.constants.items():
        if column not in raw.columns:
            continue
        values = pd.to_numeric(raw[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        logged = signed_log1p(values)
        lo, hi = signed_log1p(np.array([seen["lo"], seen["hi"]], dtype=np.float64))
        distance = np.where(logged > hi, logged - hi, np.where(logged < lo, lo - logged, 0.0))
        outside = np.flatnonzero(np.isfinite(distance) & (distance > 0))
        if outside.size:
            found.append((outside, json.dumps(column), values[outside], _numbers(np.array([seen["value"]]))[0],
                          distance[outside]))
    per_row: dict[int, list[tuple[float, str]]] = {}
    for outside, name, observed, expected, distance in found:
        for at, o, d in zip(outside.tolist(), _numbers(observed), distance.tolist(), strict=True):
            entry = f'{{"feature": {name}, "observed": {o}, "expected": {expected}, "share": null}}'
            per_row.setdefault(at, []).append((d, entry))
    return {at: [entry for _, entry in sorted(items, key=lambda item: -item[0])] for at, items in per_row.items()}


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
    column as observed), scaled units for every other feature."""
    columns = sorted({spec["name"] for _, spec in table if spec is not None})
    observed_raw = np.column_stack([
        pd.to_numeric(raw[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan) if c in raw.columns
        else np.full(len(raw), np.nan) for c in columns] or [np.full(len(raw), np.nan)])
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
    want = np.where(is_num, value, expected)
    observed = np.where(is_num, observed_raw[rows, column_of[top]], scaled[rows, top])
    return observed, want


def reason_text(explanation: Explanation | None) -> str:
    """One line for a report: ``HOST_RATE 15000 (expected 1.2); ...``."""
    if not explanation:
        return ""
    return "; ".join(f"{e['feature']} {e['observed']:.4g} (expected {e['expected']:.4g})"
                     if isinstance(e["observed"], float) and isinstance(e["expected"], float)
                     else f"{e['feature']} {e['observed']} (expected {e['expected']})" for e in explanation)
