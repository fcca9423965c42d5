"""Explanations of novelty scores: a flow's top contributing features, observed vs expected.

The network predicts every feature in the pipeline's scaled units; for the main value of a numeric column (a
counter, a host-behaviour feature) the expectation is mapped back to raw units (standardisation and signed log1p
undone), and the observation is the raw column value. Other features (one-hots, port scale, flag bits, missing
indicators) are reported as scaled values, observed and expected alike.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from flowhawk.model.features import FeaturePipeline

Explanation = list[dict[str, str | float]]


def _feature_table(pipeline: FeaturePipeline) -> list[tuple[str, dict | None]]:
    """Per feature position: its name and, for the raw value of a numeric column, that column's spec."""
    return [(name, spec if spec["kind"] == "numeric" and offset == 0 else None)
            for name, spec, offset in pipeline.feature_specs()]


def raw_value(spec: dict, scaled: float) -> float:
    """Inverse of the numeric scaling of ``spec`` (clipped to its fitted range)."""
    value = float(np.clip(scaled * spec["std"] + spec["mean"], spec["lo"], spec["hi"]))
    return float(np.sign(value) * np.expm1(abs(value))) if spec["log"] else value


def explain_rows(pipeline: FeaturePipeline, raw: pd.DataFrame, top: np.ndarray, expected: np.ndarray,
                 share: np.ndarray) -> list[Explanation]:
    """One explanation per row of ``raw`` (the flows' input columns) from its top feature positions."""
    table = _feature_table(pipeline)
    scaled = pipeline.transform(raw)
    columns = {spec["name"] for _, spec in table if spec is not None}
    observed_raw = {c: pd.to_numeric(raw[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                    if c in raw.columns else np.full(len(raw), np.nan) for c in columns}
    out: list[Explanation] = []
    for i in range(len(raw)):
        items: Explanation = []
        for j, position in enumerate(top[i]):
            name, spec = table[int(position)]
            if spec is not None:
                observed, want = float(observed_raw[spec["name"]][i]), raw_value(spec, float(expected[i, j]))
            else:
                observed, want = float(scaled[i, position]), float(expected[i, j])
            items.append({"feature": name, "observed": _finite(observed), "expected": _finite(want),
                          "share": round(float(share[i, j]), 4)})
        out.append(items)
    return out


def _finite(value: float) -> float | None:
    return round(value, 6) if np.isfinite(value) else None


def reason_text(explanation: Explanation | None) -> str:
    """One line for a report: ``HOST_RATE 15000 (expected 1.2); ...``."""
    if not explanation:
        return ""
    return "; ".join(f"{e['feature']} {e['observed']:.4g} (expected {e['expected']:.4g})"
                     if isinstance(e["observed"], float) and isinstance(e["expected"], float)
                     else f"{e['feature']} {e['observed']} (expected {e['expected']})" for e in explanation)
