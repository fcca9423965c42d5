"""Does the supervised detector catch an attack kind it never saw, with and without host features?

Leave one attack kind out: a binary model (``TrainConfig``, stratified split) is trained on a labelled lake batch
with every flow of one attack kind unlabelled (still in the frame, as window context and host statistics, never
trained on or validated with); then the whole batch is scored. Per held-out kind and per setting
(``host_features`` off / on):

- recall on the held-out kind's flows (none of them trained on);
- false-positive rate on the benign flows of the test split;
- with ``--benign-batch``, the false-positive rate on that batch (an attack-free capture of the same network
  that no model trained on: the lab's quiet day, 1,712 flows, against the test split's 105 benign flows);
- the same for ExtraTrees on the same per-flow features (the window model's per-flow baseline).

    python benchmarks/bench_host_features.py --lake L --batch lab [--benign-batch quiet] [--epochs 8] \
        [--seed 0] [--out benchmarks/results/analyst.md]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit

MIN_FLOWS = 50  # kinds with fewer flows are held out too, but their recall is a count of a few flows


def held_out(frame: pd.DataFrame, kind: str) -> pd.DataFrame:
    """``frame`` with the flows of attack ``kind`` unlabelled (window context only)."""
    out = frame.copy()
    hide = (out["Attack"].astype(str) == kind).to_numpy()
    out["Label"] = out["Label"].astype("Float64").mask(hide)
    out["Attack"] = out["Attack"].astype("string").mask(hide)
    return out


def run_fold(frame: pd.DataFrame, quiet: pd.DataFrame, kind: str, host: bool, args: argparse.Namespace
             ) -> dict[str, float]:
    from sklearn.ensemble import ExtraTreesClassifier

    from flowhawk.model.config import TrainConfig
    from flowhawk.model.host_features import window_inputs
    from flowhawk.model.scoring import score_frame
    from flowhawk.model.train import prepare, train_prepared

    config = TrainConfig(task="binary", split="stratified", epochs=args.epochs, seed=args.seed, host_features=host)
    hidden = held_out(frame, kind)
    t0 = time.monotonic()
    prep = prepare(hidden, config)
    trained = train_prepared(prep, config)
    flagged = score_frame(trained, hidden)["is_anomaly"].to_numpy()
    seconds = time.monotonic() - t0
    target = (frame["Attack"].astype(str) == kind).to_numpy()
    test_benign = prep.split.test[prep.y[prep.split.test] == 0]
    trees = ExtraTreesClassifier(n_estimators=100, n_jobs=2, random_state=args.seed)
    trees.fit(prep.features[prep.train_rows], prep.y[prep.train_rows])
    tree_flag = trees.predict(prep.features) == 1
    out = {"recall": flagged[target].mean(), "fpr": flagged[test_benign].mean(),
           "tree_recall": tree_flag[target].mean(), "tree_fpr": tree_flag[test_benign].mean(),
           "quiet_fpr": np.nan, "quiet_tree_fpr": np.nan, "flows": int(target.sum()), "seconds": seconds}
    if len(quiet):
        quiet_inputs = window_inputs(quiet, config.window, config.group_by, host)[0]
        out["quiet_fpr"] = score_frame(trained, quiet)["is_anomaly"].mean()
        out["quiet_tree_fpr"] = (trees.predict(prep.pipeline.transform(quiet_inputs)) == 1).mean()
    return out


def pair(plain: dict, host: dict, key: str, fmt: str) -> str:
    """One table cell: the plain model's value / the host-feature model's."""
    return f"{plain[key]:{fmt}} / {host[key]:{fmt}}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", type=Path, required=True)
    parser.add_argument("--batch", required=True)
    parser.add_argument("--benign-batch", help="an attack-free lake batch of the same network: its FPR too")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", help="comma list of attack kinds to hold out (default: all)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    from flowhawk.lake.store import Lake

    frame = Lake(args.lake).read_flows([args.batch])
    quiet = Lake(args.lake).read_flows([args.benign_batch]) if args.benign_batch else frame.iloc[:0]
    kinds = sorted(set(frame["Attack"].dropna().astype(str)) - {"Benign", "BENIGN", "benign"})
    if args.kinds:
        kinds = [k for k in kinds if k in args.kinds.split(",")]
    lines = [f"batch {args.batch}, {len(frame):,} flows; binary, stratified split, {args.epochs} epochs, seed "
             f"{args.seed}; one attack kind unlabelled per row", "",
             "| held-out kind | flows | recall: flow fields / + host features | FPR test split: flow / + host | "
             f"FPR {args.benign_batch or '(no benign batch)'}: flow / + host | ExtraTrees recall: flow / + host | "
             "ExtraTrees FPR test split | ExtraTrees FPR benign batch |", "|---|---:|---|---|---|---|---|---|"]
    for kind in kinds:
        plain, host = (run_fold(frame, quiet, kind, h, args) for h in (False, True))
        note = "" if plain["flows"] >= MIN_FLOWS else " (few flows)"
        cells = [pair(plain, host, key, fmt) for key, fmt in (("recall", ".3f"), ("fpr", ".4f"), ("quiet_fpr", ".4f"),
                                                              ("tree_recall", ".3f"), ("tree_fpr", ".4f"),
                                                              ("quiet_tree_fpr", ".4f"))]
        lines.append(f"| {kind}{note} | {plain['flows']:,} | " + " | ".join(cells) + " |")
        print(lines[-1], f"({plain['seconds']:.0f} s / {host['seconds']:.0f} s)", flush=True)
    emit("\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
