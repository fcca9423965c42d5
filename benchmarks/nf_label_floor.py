"""How far can any per-flow model go on NF-BoT-IoT-v2? Cross-validated forests and the flows no model separates.

Three measurements, all on the whole file through ``NfCsvExtractor`` (278,779 flows):

1. Out-of-fold predictions (stratified k-fold, default 5 = the issue's 80/20 anchor protocol repeated so that
   every flow is tested once) of RandomForest and ExtraTrees on the NF-v1 fields: errors over all 1,285 benign
   and all 33 Theft flows instead of the 128 / 3 of one 10 % test split, with a Wilson 95 % interval on benign
   recall.
2. The reply group: TCP flows from a victim's port 80 back to an attacker host (attacker hosts = sources whose
   flows are >= 99 % attacks). The same group holds flows labelled Benign, DoS and DDoS with overlapping fields.
   Inside it, forests get every NF-v2 field plus both host identities and k-fold CV; the fewest errors any of
   them (or calling the whole group benign) makes there is the group's error floor as far as we can measure:
   the NF CSV has no timestamps, which is what told these flows apart when they were labelled.
3. What the floor means for the binary target (F1 >= 0.9999): the errors it allows per 10 % test split beside
   the floor's expected share and the forests' other errors.

Usage (repo root): ``python benchmarks/nf_label_floor.py [--folds 5] [--trees 100] [--out FILE.md]``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from common import emit

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FLOWHAWK_SHARED_DATA", ROOT.parent / "shared" / "data"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flowhawk.extractors.base import ExtractNotes  # noqa: E402
from flowhawk.extractors.nfcsv_to_flows import NfCsvExtractor  # noqa: E402
from flowhawk.extractors.schema import NF_V1_FEATURES  # noqa: E402

ADDRESSES = ("IPV4_SRC_ADDR", "IPV4_DST_ADDR")
NOT_FEATURES = (*ADDRESSES, "Label", "Attack", "DNS_QUERY_ID", "FLOW_START_MILLISECONDS", "FLOW_END_MILLISECONDS")
MODELS = {"random_forest": RandomForestClassifier, "extra_trees": ExtraTreesClassifier}


def load() -> pd.DataFrame:
    path = DATA / "nf" / "NF-BoT-IoT-v2_reduced_c2dc.csv.gz"
    frame = pd.concat(list(NfCsvExtractor().frames(path, ExtractNotes())), ignore_index=True)
    return frame.reset_index(drop=True)


def numeric(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    block = frame[columns].apply(pd.to_numeric, errors="coerce").astype("float64")
    return block.fillna(-1.0).to_numpy()


def nf_fields(frame: pd.DataFrame, full: bool) -> list[str]:
    names = [c for c in frame.columns if c not in NOT_FEATURES] if full else \
        [c for c in NF_V1_FEATURES if c not in NOT_FEATURES]
    return [c for c in names if pd.to_numeric(frame[c], errors="coerce").notna().any()]


def out_of_fold(x: np.ndarray, y: np.ndarray, model: str, folds: int, trees: int) -> np.ndarray:
    """Predicted class of every row by a model that never saw it (stratified k-fold, seed 0)."""
    pred = np.zeros(len(y), dtype=y.dtype)
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=0).split(x, y):
        clf = MODELS[model](n_estimators=trees, n_jobs=-1, random_state=0).fit(x[train], y[train])
        pred[test] = clf.predict(x[test])
    return pred


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def binary_row(name: str, y: np.ndarray, pred: np.ndarray, seconds: float) -> str:
    benign = int((y == 0).sum())
    flagged = int(((pred == 1) & (y == 0)).sum())
    missed = int(((pred == 0) & (y == 1)).sum())
    lo, hi = wilson(benign - flagged, benign)
    return (f"| {name} | {flagged} of {benign} | {missed} of {int(y.sum())} | {1 - flagged / benign:.4f} "
            f"({lo:.4f}-{hi:.4f}) | {f1_score(y, pred):.5f} | {seconds:.0f} |")


def attacker_hosts(frame: pd.DataFrame, y: np.ndarray) -> list[str]:
    share = pd.Series(y, index=frame.index).groupby(frame["IPV4_SRC_ADDR"]).agg(["mean", "size"])
    return sorted(share[(share["mean"] >= 0.99) & (share["size"] >= 100)].index)


def reply_group(frame: pd.DataFrame, attackers: list[str]) -> np.ndarray:
    """Rows of TCP flows from port 80 of a non-attacker host to an attacker host."""
    src_port = pd.to_numeric(frame["L4_SRC_PORT"], errors="coerce")
    proto = pd.to_numeric(frame["PROTOCOL"], errors="coerce")
    mask = (src_port == 80) & (proto == 6) & frame["IPV4_DST_ADDR"].isin(attackers) \
        & ~frame["IPV4_SRC_ADDR"].isin(attackers)
    return np.flatnonzero(mask.to_numpy())


def section_oof(frame: pd.DataFrame, y: np.ndarray, args: argparse.Namespace) -> tuple[str, dict]:
    x = numeric(frame, nf_fields(frame, full=False))
    lines = [f"#### Every flow tested once: {args.folds}-fold out-of-fold forests, NF-v1 fields, binary", "",
             "| model | benign flagged | attacks missed | benign recall (Wilson 95 %) | F1 | s |",
             "|---|---|---|---|---|---|"]
    preds = {}
    for name in MODELS:
        started = time.monotonic()
        preds[name] = out_of_fold(x, y, name, args.folds, args.trees)
        lines.append(binary_row(name, y, preds[name], time.monotonic() - started))
    return "\n".join(lines), preds


def section_group(frame: pd.DataFrame, y: np.ndarray, rows: np.ndarray, preds: dict,
                  args: argparse.Namespace) -> tuple[str, int]:
    sub = frame.iloc[rows]
    ys = y[rows]
    hosts = np.c_[sub["IPV4_SRC_ADDR"].astype("category").cat.codes, sub["IPV4_DST_ADDR"].astype("category").cat.codes]
    x = np.c_[numeric(sub, nf_fields(frame, full=True)), hosts]
    majority = int(min(ys.sum(), len(ys) - ys.sum()))
    counts = sub["Attack"].value_counts().to_dict()
    lines = [f"#### The reply group: {len(rows)} TCP flows from a victim's port 80 to an attacker host", "",
             f"Labels: {counts}. Calling the whole group benign makes {majority} errors.", "",
             "| inside the group (all NF-v2 fields + both host ids, "
             f"{args.folds}-fold CV) | errors | of the whole-file OOF errors (NF-v1 forests above), in this group |",
             "|---|---|---|"]
    floor = majority
    for name in MODELS:
        pred = out_of_fold(x, ys, name, args.folds, args.trees)
        floor = min(floor, int((pred != ys).sum()))
        whole = preds[name] != y
        lines.append(f"| {name} | {int((pred != ys).sum())} | {int(whole[rows].sum())} of {int(whole.sum())} |")
    lines += ["", "Fields by label inside the group (median [min-max]):", "", "| field | " +
              " | ".join(sorted(counts)) + " |", "|---|" + "---|" * len(counts)]
    for field in ("IN_BYTES", "IN_PKTS", "OUT_BYTES", "OUT_PKTS", "TCP_FLAGS", "FLOW_DURATION_MILLISECONDS"):
        values = pd.to_numeric(sub[field], errors="coerce").groupby(sub["Attack"])
        cells = [f"{values.get_group(k).median():g} [{values.get_group(k).min():g}-{values.get_group(k).max():g}]"
                 for k in sorted(counts)]
        lines.append(f"| {field} | " + " | ".join(cells) + " |")
    return "\n".join(lines), floor


def section_budget(y: np.ndarray, floor: int, rows: np.ndarray, preds: dict) -> str:
    test_attacks = round(0.1 * int(y.sum()))
    allowed = 2 * test_attacks * (1 / 0.9999 - 1)
    lines = ["#### What the binary target allows on a 10 % test split", "",
             f"F1 >= 0.9999 with ~{test_attacks:,} test attacks allows {allowed:.1f} errors; benign recall "
             f">= 0.99 with ~{round(0.1 * (y == 0).sum())} test benign flows allows 1 flagged.", "",
             "| source of errors | whole file | expected per 10 % split |", "|---|---|---|",
             f"| reply group: the fewest errors of any model above (or of calling it all benign) | {floor} | "
             f"{floor / 10:.1f} |"]
    outside = np.ones(len(y), bool)
    outside[rows] = False
    for name, pred in preds.items():
        other = int(((pred != y) & outside).sum())
        lines.append(f"| {name}: its other errors (outside the group) | {other} | {other / 10:.1f} |")
    return "\n".join(lines)


def section_multiclass(frame: pd.DataFrame, args: argparse.Namespace) -> str:
    classes = sorted(frame["Attack"].unique())
    y = frame["Attack"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    x = numeric(frame, nf_fields(frame, full=False))
    lines = [f"#### 5-class, {args.folds}-fold out-of-fold forests, NF-v1 fields", "",
             "| model | macro-F1 | " + " | ".join(f"{c} F1 (n={int((y == i).sum())})" for i, c in enumerate(classes))
             + " |", "|---|---|" + "---|" * len(classes)]
    for name in MODELS:
        pred = out_of_fold(x, y, name, args.folds, args.trees)
        per = f1_score(y, pred, average=None, labels=list(range(len(classes))))
        lines.append(f"| {name} | {per.mean():.4f} | " + " | ".join(f"{v:.3f}" for v in per) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--out", type=Path, help="append the Markdown section to this file")
    args = parser.parse_args()
    frame = load()
    y = pd.to_numeric(frame["Label"], errors="coerce").astype(int).to_numpy()
    oof, preds = section_oof(frame, y, args)
    rows = reply_group(frame, attacker_hosts(frame, y))
    group, floor = section_group(frame, y, rows, preds, args)
    command = "python benchmarks/nf_label_floor.py " + " ".join(sys.argv[1:])
    emit("\n\n".join([f"### NF-BoT-IoT-v2: the error floor of per-flow models ({len(frame):,} flows)",
                      f"`{command.strip()}`", oof, group, section_budget(y, floor, rows, preds),
                      section_multiclass(frame, args)]) + "\n", args.out)


if __name__ == "__main__":
    main()
