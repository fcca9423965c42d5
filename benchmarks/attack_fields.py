"""Model-free: where does each attack's traffic lie against an attack-free batch of the same network?

For every feature a label-free model sees (the nf-v1 flow fields and the HOST_FEATURES of each flow's window), per
true attack class of the scored batch: the share of its flows whose value the quiet batch never had (a numeric
value outside the quiet batch's [min, max]; a port, protocol, flag set or application value absent from it), and
for numeric features the quiet batch's percentile of the class's median. A deviation-based explanation (observed
vs expected) can only lead with a feature where the attack leaves what normal traffic does; this table shows, per
attack, which features do and whether its EXPECTED fields are among them. Used by ``bench_explain.py --kind
fields``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from flowhawk.lake.store import Lake
from flowhawk.model.features import CATEGORY_COLUMNS, FLAG_COLUMNS, PORT_COLUMNS, column_floats, feature_columns
from flowhawk.model.host_features import with_host_features

WINDOW = 16  # NoveltyConfig's default window
# Compared as sets of values, not ranges: categories, flag sets, service ports. L4_SRC_PORT is a range (ephemeral
# ports: a client's next source port is new but not unusual).
SETS = CATEGORY_COLUMNS + FLAG_COLUMNS + tuple(c for c in PORT_COLUMNS if c != "L4_SRC_PORT")


def _features(lake: Lake, batch: str) -> pd.DataFrame:
    """The batch's nf-v1 fields, HOST_FEATURES (windows within the batch) and its Attack label."""
    flows = lake.read_flows([batch])
    framed, _ = with_host_features(flows, WINDOW, columns=feature_columns("nf-v1"))
    framed["Attack"] = flows["Attack"].astype(str).to_numpy() if "Attack" in flows.columns else "unlabelled"
    return framed


def _unseen(values: np.ndarray, quiet: np.ndarray, as_set: bool) -> np.ndarray:
    """Per value: True when the quiet batch never had it (outside its range; absent from its set)."""
    known = quiet[np.isfinite(quiet)]
    if as_set:
        return np.isfinite(values) & ~np.isin(values, known)
    return np.isfinite(values) & ((values < known.min()) | (values > known.max()))


def _percentile(value: float, quiet: np.ndarray) -> float:
    known = quiet[np.isfinite(quiet)]
    return float(((known < value).mean() + 0.5 * (known == value).mean()) * 100)


def deviations(attack: pd.DataFrame, quiet: pd.DataFrame) -> list[tuple[str, float, str]]:
    """Per feature, largest unseen share first: (feature, share of ``attack`` rows unseen in ``quiet``, the
    median and its quiet percentile for numeric features, or '' for set-compared ones)."""
    out = []
    for name in [c for c in quiet.columns if c != "Attack"]:
        values, known = column_floats(attack, name), column_floats(quiet, name)
        if not np.isfinite(known).any():
            continue
        as_set = name in SETS
        share = float(_unseen(values, known, as_set).mean())
        median = float(np.nanmedian(values)) if np.isfinite(values).any() else float("nan")
        where = "" if as_set or not np.isfinite(median) else f"{median:.4g} (p{_percentile(median, known):.0f})"
        out.append((name, share, where))
    return sorted(out, key=lambda item: -item[1])


def fields_table(lake_dir: Path, batch: str, quiet_batch: str, expected: dict[str, tuple[str, ...]]) -> str:
    """Per attack kind: its three most-unseen features, and each of its EXPECTED fields' unseen share."""
    lake = Lake(lake_dir)
    scored, quiet = _features(lake, batch), _features(lake, quiet_batch)
    lines = [f"batch {batch} ({len(scored):,} flows) against {quiet_batch} ({len(quiet):,} flows), windows of "
             f"{WINDOW} flows within each batch; share = flows whose value {quiet_batch} never had", "",
             "| class | flows | 1st (share unseen; median, quiet percentile) | 2nd | 3rd | EXPECTED fields "
             "(share unseen; median, quiet percentile) |", "|---|---:|---|---|---|---|"]
    for cls in sorted(set(scored["Attack"])):
        rows = scored[scored["Attack"] == cls]
        ranked = deviations(rows, quiet)
        cells = [f"{n} ({s:.0%}{'; ' + w if w else ''})" for n, s, w in ranked[:3]]
        wanted = expected.get(cls, ())
        by_name = {n: (s, w) for n, s, w in ranked}
        tail = "; ".join(f"{f} {by_name[f][0]:.0%}" + (f" ({by_name[f][1]})" if by_name[f][1] else "")
                         for f in wanted if f in by_name) or "-"
        lines.append(f"| {cls} | {len(rows):,} | " + " | ".join(cells) + f" | {tail} |")
    return "\n".join(lines)
