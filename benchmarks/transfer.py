"""Transfer learning: pretrain on NF-BoT-IoT-v2, fine-tune on 5 % of the lab capture's labels, vs from scratch.

Both datasets go through the real lake (NF CSV and the lab pcap via nfstream, labelled by labels.csv) and are
described by the NF-v1 feature set, the one both have. Binary task (the attack classes differ).

* Pretrain: ``train_model`` on NF-BoT-IoT-v2 (``--nf-max-train-rows`` cap, stratified split).
* Lab: one fixed held-out test set (``--test-fraction`` of the flows, stratified by attack class). For every
  seed, ``--label-fraction`` of the remaining flows (stratified by attack class, at least one per class) are
  "labelled"; a quarter of those validate (early stopping, threshold), the rest train. All other lab flows stay
  in the frame unlabelled, as window context only.
* Compared on the same test flows: the NF model as is (zero-shot), fine-tuned from it (same NF feature
  pipeline, ``init_from``), and trained from scratch (pipeline fitted on the labelled lab flows). Same network,
  epochs, batch size, learning rate and early stopping for fine-tuning and scratch (small batches and up to 40
  epochs, so scratch is not starved of optimiser steps on ~700 flows). ``--reference`` adds scratch on all
  non-test lab labels (an upper bound).

Usage (repo root): ``python benchmarks/transfer.py [--seeds 0,1,2] [--label-fraction 0.05] [--epochs 15]
[--work DIR] [--out benchmarks/results/registry.md]``. The lake in ``--work`` is reused by reruns.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from common import emit

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FLOWHAWK_SHARED_DATA", ROOT.parent / "shared" / "data"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flowhawk.lake.ingest import IngestConfig, ingest_paths  # noqa: E402
from flowhawk.lake.store import Lake  # noqa: E402
from flowhawk.model.config import TrainConfig  # noqa: E402
from flowhawk.model.decision import attack_scores, decide  # noqa: E402
from flowhawk.model.evaluate import classification_metrics  # noqa: E402
from flowhawk.model.features import FeaturePipeline  # noqa: E402
from flowhawk.model.labels import encode_labels  # noqa: E402
from flowhawk.model.scoring import predict_proba  # noqa: E402
from flowhawk.model.splits import Split  # noqa: E402
from flowhawk.model.train import Prepared, train_model, train_prepared  # noqa: E402
from flowhawk.model.windows import build_window_index  # noqa: E402

log = logging.getLogger("transfer")
KEYS = ("f1", "macro_f1", "precision", "recall", "fpr", "pr_auc", "epochs_run")


def load(work: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(NF flows, lab flows) from a lake in ``work`` (ingested on the first run)."""
    lake = Lake(work / "lake")
    sources = {"nf": ([DATA / "nf" / "NF-BoT-IoT-v2_reduced_c2dc.csv.gz"], None),
               "lab": ([DATA / "lab" / "capture.pcap"], DATA / "lab" / "labels.csv")}
    for batch, (paths, labels) in sources.items():
        if not lake.has_batch(batch):
            summary = ingest_paths(paths, IngestConfig(lake=lake.root, batch_id=batch, labels=labels,
                                                       quarantine="copy"))
            log.info("%s", summary.line())
            if not lake.has_batch(batch):
                raise RuntimeError(f"ingest of {paths} failed: {summary.line()}")
    return lake.read_flows(["nf"]), lake.read_flows(["lab"])


def stratified_pick(rows: np.ndarray, strata: np.ndarray, fraction: float, rng: np.random.Generator
                    ) -> np.ndarray:
    """``fraction`` of ``rows`` from every stratum (at least one each), sorted."""
    picked = []
    for value in np.unique(strata):
        members = rows[strata == value]
        n = max(1, round(fraction * len(members)))
        picked.append(rng.choice(members, size=min(n, len(members)), replace=False))
    return np.sort(np.concatenate(picked)).astype(np.int64)


def lab_split(lab: pd.DataFrame, test_fraction: float, label_fraction: float, seed: int) -> Split:
    """Fixed test rows (seed 1000); per seed a labelled ``label_fraction`` of the rest, 3/4 train, 1/4 val."""
    strata = lab["Attack"].fillna("?").to_numpy()
    rows = np.arange(len(lab))
    test = stratified_pick(rows, strata, test_fraction, np.random.default_rng(1000))
    pool = np.setdiff1d(rows, test)
    rng = np.random.default_rng(seed)
    labelled = stratified_pick(pool, strata[pool], label_fraction, rng)
    val = stratified_pick(labelled, strata[labelled], 0.25, rng)
    return Split(np.setdiff1d(labelled, val), val, test, "transfer")


def prepared(lab: pd.DataFrame, split: Split, pipeline: FeaturePipeline, config: TrainConfig) -> Prepared:
    y, names = encode_labels(lab, "binary")
    features = pipeline.transform(lab)
    index = build_window_index(lab, window=config.window, group_by=config.group_by)
    return Prepared(y, names, split, split.train, pipeline, features, index)


def held_out_metrics(model, prep: Prepared) -> dict:
    probs = predict_proba(model.network, prep.features, prep.index, prep.split.test)
    y = prep.y[prep.split.test]
    return classification_metrics(y, decide(probs, model.threshold), attack_scores(probs), prep.class_names)


def run_seed(lab: pd.DataFrame, pretrained, config: TrainConfig, args: argparse.Namespace, seed: int
             ) -> dict[str, dict]:
    split = lab_split(lab, args.test_fraction, args.label_fraction, seed)
    cfg = TrainConfig.from_dict({**config.to_dict(), "seed": seed, "epochs": args.epochs, "lr": args.lr,
                                 "patience": args.patience, "batch_size": args.ft_batch_size,
                                 "max_train_rows": None})
    out: dict[str, dict] = {}
    prep = prepared(lab, split, pretrained.pipeline, cfg)
    if seed == args.seeds[0]:
        out["NF model as is (zero-shot)"] = held_out_metrics(pretrained, prep)
    started = time.monotonic()
    tuned = train_prepared(prep, cfg, init_from=pretrained)
    out["fine-tuned from NF"] = {**held_out_metrics(tuned, prep), "seconds": time.monotonic() - started,
                                 "epochs_run": len(tuned.history)}
    pipeline = FeaturePipeline("nf-v1").fit(lab.iloc[split.train])
    scratch_prep = prepared(lab, split, pipeline, cfg)
    started = time.monotonic()
    scratch = train_prepared(scratch_prep, cfg)
    out["from scratch"] = {**held_out_metrics(scratch, scratch_prep), "seconds": time.monotonic() - started,
                           "epochs_run": len(scratch.history)}
    log.info("seed %d: %d labelled (%d train, %d val), %d test; fine-tuned F1 %.4f, scratch F1 %.4f", seed,
             len(split.train) + len(split.val), len(split.train), len(split.val), len(split.test),
             out["fine-tuned from NF"]["f1"], out["from scratch"]["f1"])
    return out


def reference(lab: pd.DataFrame, config: TrainConfig, args: argparse.Namespace) -> dict:
    full = lab_split(lab, args.test_fraction, 1.0, args.seeds[0])
    cfg = TrainConfig.from_dict({**config.to_dict(), "epochs": args.reference_epochs, "lr": args.lr,
                                 "patience": args.patience, "max_train_rows": None})
    pipeline = FeaturePipeline("nf-v1").fit(lab.iloc[full.train])
    prep = prepared(lab, full, pipeline, cfg)
    model = train_prepared(prep, cfg)
    return {**held_out_metrics(model, prep), "epochs_run": len(model.history)}


def summarise(per_seed: list[dict[str, dict]]) -> pd.DataFrame:
    rows = {}
    for name in dict.fromkeys(k for result in per_seed for k in result):
        runs = [r[name] for r in per_seed if name in r]
        row = {}
        for key in KEYS:
            values = np.array([m.get(key, np.nan) for m in runs], dtype=float)
            if np.isnan(values).all():
                row[key] = "-"
                continue
            fmt = ".1f" if key == "epochs_run" else ".4f"
            row[key] = f"{values.mean():{fmt}}" + (f" ± {values.std():{fmt}}" if len(values) > 1 else "")
        row["runs"] = len(runs)
        rows[name] = row
    return pd.DataFrame(rows).T


def markdown(table: pd.DataFrame, info: dict, command: str) -> str:
    lines = ["### Transfer: NF-BoT-IoT-v2 -> lab capture (binary, NF-v1 features)", "", f"`{command}`", "",
             f"Pretrained on {info['nf_rows']:,} NF flows ({info['nf_train']:,} training rows, {info['pre_s']:.0f} s; "
             f"NF test F1 {info['nf_f1']:.4f}). Lab: {info['lab_rows']:,} flows, held-out test "
             f"{info['test_rows']:,} (fixed), {info['labelled']:,} labelled flows per seed "
             f"({100 * info['label_fraction']:.0f} % of the rest), seeds {info['seeds']}. Test metrics, mean ± std "
             "over seeds:", "", "| model | " + " | ".join(table.columns) + " |",
             "|---|" + "---:|" * len(table.columns)]
    lines += ["| " + " | ".join([str(i), *map(str, r)]) + " |" for i, r in zip(table.index, table.values,
                                                                              strict=True)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")], default=[0, 1, 2])
    parser.add_argument("--label-fraction", type=float, default=0.05)
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--pretrain-epochs", type=int, default=4)
    parser.add_argument("--nf-max-train-rows", type=int, default=40_000)
    parser.add_argument("--epochs", type=int, default=40, help="fine-tuning / scratch maximum epochs")
    parser.add_argument("--patience", type=int, default=8, help="early stopping patience (validation loss)")
    parser.add_argument("--ft-batch-size", type=int, default=64, help="fine-tuning / scratch batch size")
    parser.add_argument("--reference-epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3, help="fine-tuning / scratch learning rate")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=256, help="pretraining / reference batch size")
    parser.add_argument("--reference", action="store_true", help="also train on all non-test lab labels")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "flowhawk-bench-transfer")
    parser.add_argument("--out", type=Path, help="append the Markdown section to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    nf, lab = load(args.work)
    config = TrainConfig(task="binary", feature_set="nf-v1", epochs=args.pretrain_epochs, lr=2e-3,
                         batch_size=args.batch_size, window=args.window, max_train_rows=args.nf_max_train_rows,
                         model={"hidden": args.hidden, "conv_channels": args.hidden})
    started = time.monotonic()
    pretrained = train_model(nf, config)
    info = {"nf_rows": len(nf), "nf_train": pretrained.metrics["split"]["train_used"],
            "pre_s": time.monotonic() - started, "nf_f1": pretrained.metrics["test"]["f1"], "lab_rows": len(lab),
            "label_fraction": args.label_fraction, "seeds": args.seeds}
    split = lab_split(lab, args.test_fraction, args.label_fraction, args.seeds[0])
    info.update(test_rows=len(split.test), labelled=len(split.train) + len(split.val))
    per_seed = [run_seed(lab, pretrained, config, args, seed) for seed in args.seeds]
    if args.reference:
        per_seed[0]["scratch on all non-test lab labels (reference)"] = reference(lab, config, args)
    command = "python benchmarks/transfer.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(summarise(per_seed), info, command)
    emit(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
