"""Reproduce the MindFlow experiments: the detector beside per-flow baselines on NF-BoT-IoT-v2 and the lab capture.

For one dataset and task, one run: load flows (NF CSV through ``NfCsvExtractor``; the lab pcap through
``PcapExtractor`` labelled by ``LabelRules`` from labels.csv), ``model.train.prepare`` (split, features fitted
on the training rows, windows), train the detector, then fit every baseline on the same training rows and
features and score all on the same test rows. Prints the results table, confusion matrices and per-class
reports as Markdown; ``--json`` keeps every metric.

Usage (repo root): ``python benchmarks/bench_paper.py --dataset nf --task binary [--epochs 10]
[--max-train-rows 40000] [--group-by source] [--window 16] [--split auto] [--out FILE.md] [--json FILE]``.
Data is read from ../shared/data (or $FLOWHAWK_SHARED_DATA). The lab flows are cached as Parquet under
``--cache`` (default: the temp dir) to skip nfstream on reruns.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from common import emit

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FLOWHAWK_SHARED_DATA", ROOT.parent / "shared" / "data"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flowhawk.extractors.base import ExtractNotes  # noqa: E402
from flowhawk.model.baselines import BaselineConfig, compare  # noqa: E402
from flowhawk.model.config import TrainConfig  # noqa: E402
from flowhawk.model.evaluate import render_confusion, render_per_class, render_table  # noqa: E402
from flowhawk.model.train import prepare, train_prepared  # noqa: E402

log = logging.getLogger("bench_paper")


def load_nf(path: Path) -> pd.DataFrame:
    from flowhawk.extractors.nfcsv_to_flows import NfCsvExtractor

    notes = ExtractNotes()
    frame = pd.concat(list(NfCsvExtractor().frames(path, notes)), ignore_index=True)
    log.info("NF CSV %s: %d flows; notes: %s", path.name, len(frame), "; ".join(notes.messages))
    return frame


def load_lab(pcap: Path, labels: Path, cache: Path) -> pd.DataFrame:
    cached = cache / "flowhawk_lab_flows.parquet"
    if cached.exists():
        return pd.read_parquet(cached)
    from flowhawk.extractors.labels import LabelRules
    from flowhawk.extractors.pcap_to_flows import PcapExtractor

    notes = ExtractNotes()
    frame = pd.concat(list(PcapExtractor().frames(pcap, notes)), ignore_index=True)
    result = LabelRules.from_csv(labels).apply(frame)
    log.info("lab capture: %d flows, labels %s", len(result.frame), result.counts)
    result.frame.to_parquet(cached)
    return result.frame


def run(frame: pd.DataFrame, config: TrainConfig, baselines: BaselineConfig) -> dict:
    started = time.monotonic()
    prep = prepare(frame, config)
    trained = train_prepared(prep, config)
    table, results = compare(prep, trained, baselines)
    return {"table": table, "results": results, "trained": trained, "seconds": time.monotonic() - started,
            "split": trained.metrics["split"]}


def markdown(title: str, command: str, out: dict, config: TrainConfig) -> str:
    trained = out["trained"]
    epochs = len(trained.history)
    best = next(h["epoch"] for h in trained.history if h["best"])
    lines = [f"### {title}", "", f"`{command}`", "",
             f"Split {out['split']}; {trained.metrics['n_features']} features ({config.feature_set}); window "
             f"{config.window} grouped by {config.group_by}; {epochs} epochs run (best {best}), "
             f"{trained.metrics['train_seconds']:.0f} s training, {out['seconds']:.0f} s total; "
             f"threshold {trained.threshold:.4f} (tuned for {config.threshold_metric}; validation F1 "
             f"{trained.metrics['validation']['f1']:.4f}, "
             f"FPR {trained.metrics['validation']['fpr']:.4f}).", "",
             render_table(out["table"], markdown=True), "",
             "flowhawk confusion (rows = truth):", "", "```", render_confusion(out["results"]["flowhawk"]),
             "```", "", "flowhawk per class:", "", "```", render_per_class(out["results"]["flowhawk"]), "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=("nf", "lab"), required=True)
    parser.add_argument("--task", choices=("binary", "multiclass"), default="binary")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--max-train-rows", type=int, default=40_000, help="0: no cap")
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--group-by", choices=("source", "global"), default="source")
    parser.add_argument("--split", choices=("auto", "time", "stratified"), default="auto")
    parser.add_argument("--feature-set", choices=("nf-v1", "full"), default="nf-v1")
    parser.add_argument("--arch", default="cnn_bilstm")
    parser.add_argument("--channels", type=int, default=32, help="conv channels and LSTM hidden size")
    parser.add_argument("--top-ports", type=int, default=8, help="one-hot of the N most common ports per port field")
    parser.add_argument("--top-values", type=int, default=0, help="one-hot of each counter's N most common values")
    parser.add_argument("--flow-skip", type=int, default=0, help="width of the per-flow branch (0: none)")
    parser.add_argument("--monitor", choices=("weighted_loss", "loss"), default="weighted_loss")
    parser.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant")
    parser.add_argument("--baselines", default="majority,extra_trees,random_forest,knn,linear_svm")
    parser.add_argument("--threshold-metric", choices=("f1", "mcc"), default="f1")
    parser.add_argument("--weight-power", type=float, default=1.0, help="class-weight power (0.5 = sqrt)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--out", type=Path, help="append the Markdown section to this file")
    parser.add_argument("--json", type=Path, help="write every metric as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = TrainConfig(task=args.task, arch=args.arch, epochs=args.epochs, batch_size=args.batch_size,
                         lr=args.lr, patience=args.patience, seed=args.seed, window=args.window,
                         group_by=args.group_by, feature_set=args.feature_set,
                         max_train_rows=args.max_train_rows or None, split=args.split,
                         threshold_metric=args.threshold_metric, class_weight_power=args.weight_power,
                         lr_schedule=args.lr_schedule, monitor=args.monitor,
                         feature_options={"top_ports": args.top_ports, "top_values": args.top_values},
                         model={"conv_channels": args.channels, "hidden": args.channels, "flow_skip": args.flow_skip})
    if args.dataset == "nf":
        frame = load_nf(DATA / "nf" / "NF-BoT-IoT-v2_reduced_c2dc.csv.gz")
    else:
        frame = load_lab(DATA / "lab" / "capture.pcap", DATA / "lab" / "labels.csv", args.cache)
    baselines = BaselineConfig(names=tuple(args.baselines.split(",")) if args.baselines else (), seed=args.seed)
    out = run(frame, config, baselines)
    command = "python benchmarks/bench_paper.py " + " ".join(argv if argv is not None else sys.argv[1:])
    title = f"{'NF-BoT-IoT-v2' if args.dataset == 'nf' else 'lab capture'}, {args.task}"
    text = markdown(title, command, out, config)
    emit(text, args.out)
    if args.json:
        args.json.write_text(json.dumps({"config": config.to_dict(), "results": out["results"],
                                         "history": out["trained"].history, "split": out["split"]},
                                        indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
