"""Refresh cost vs a full retraining, measured in one run on real NF-BoT-IoT-v2 flows.

``--rows`` rows of the NF CSV (seeded sample) are cut into ``--batches`` CSV files (rows assigned at random,
file order kept inside each) and ingested into a lake as batches ``nf-00`` ... One run then:

1. trains the base model on every batch but the last (the "history") and registers it as current;
2. refreshes it with the last batch (``model.refresh.refresh_model``: replay sample + fine-tuning + guard),
   timed end to end (load the current model, read the lake, sample, fine-tune, compare, save);
3. trains from scratch on all batches (what a refresh replaces), timed end to end (read the lake,
   ``train_model``, save the version in the registry, as the refresh saves its candidate).

Both trainings run ``--epochs`` epochs with patience = epochs (no early stop), the same network, batch size and
learning rate, so the ratio reflects the data each one has to go through. The replay sample defaults to as many
old flows as the new batch contributes training flows (a 1:1 mix). Target: refresh <= 25 % of full. Both CPU
time (this process, all threads) and wall time are reported: on shared cores other jobs inflate wall time.

Usage (repo root): ``python benchmarks/bench_refresh.py [--rows 60000] [--batches 10] [--epochs 3]
[--work DIR] [--out benchmarks/results/registry.md]``. The lake in ``--work`` is reused by reruns.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from common import emit

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FLOWHAWK_SHARED_DATA", ROOT.parent / "shared" / "data"))
NF_CSV = DATA / "nf" / "NF-BoT-IoT-v2_reduced_c2dc.csv.gz"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flowhawk.lake.ingest import IngestConfig, ingest_paths  # noqa: E402
from flowhawk.lake.store import Lake  # noqa: E402
from flowhawk.model.config import TrainConfig  # noqa: E402
from flowhawk.model.refresh import RefreshConfig, refresh_model  # noqa: E402
from flowhawk.model.registry import Registry, data_manifest  # noqa: E402
from flowhawk.model.train import train_model  # noqa: E402

log = logging.getLogger("bench_refresh")


def build_lake(work: Path, rows: int, batches: int, seed: int) -> tuple[Lake, list[str]]:
    """Sample the NF CSV into ``batches`` CSVs and ingest each as one lake batch (idempotent)."""
    lake = Lake(work / "lake")
    ids = [f"nf-{i:02d}" for i in range(batches)]
    if all(lake.has_batch(b) for b in ids):
        return lake, ids
    raw = pd.read_csv(NF_CSV, low_memory=False)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(raw), size=min(rows, len(raw)), replace=False))
    part = rng.integers(0, batches, size=len(chosen))
    csv_dir = work / "csv"
    csv_dir.mkdir(parents=True, exist_ok=True)
    for i, batch in enumerate(ids):
        path = csv_dir / f"{batch}.csv"
        raw.iloc[chosen[part == i]].to_csv(path, index=False)
        summary = ingest_paths([path], IngestConfig(lake=lake.root, batch_id=batch, source="nf-csv"))
        log.info("%s", summary.line())
    return lake, ids


def timed(fn, *args, **kwargs):
    """(result, {"wall": s, "cpu": s}); cpu = this process's CPU time, all threads (robust to other load)."""
    wall, cpu = time.monotonic(), time.process_time()
    out = fn(*args, **kwargs)
    return out, {"wall": time.monotonic() - wall, "cpu": time.process_time() - cpu}


def run(args: argparse.Namespace) -> dict:
    lake, ids = build_lake(args.work, args.rows, args.batches, args.seed)
    old, new = ids[:-1], ids[-1:]
    config = TrainConfig(task=args.task, epochs=args.epochs, patience=args.epochs, batch_size=args.batch_size,
                         lr=args.lr, window=args.window, max_train_rows=None, seed=args.seed,
                         model={"hidden": args.hidden, "conv_channels": args.hidden})
    models = args.work / "models"
    shutil.rmtree(models, ignore_errors=True)
    registry = Registry(models)
    load = [os.getloadavg()[0]]
    base, base_s = timed(lambda: train_model(lake.read_flows(old), config))
    base_version = registry.save(base, data=data_manifest(lake, old), status="promoted", reason="bench base")
    registry.promote(base_version)
    load.append(os.getloadavg()[0])
    new_train = round((1 - RefreshConfig().holdout_fraction - RefreshConfig().val_fraction) * lake.batch_manifest(
        new[0])["rows"])
    refresh = RefreshConfig(replay_rows=args.replay_rows or new_train, epochs=args.epochs, patience=args.epochs,
                            seed=args.seed)
    result, refresh_s = timed(refresh_model, registry, lake, new, refresh)
    load.append(os.getloadavg()[0])
    def retrain():  # what a refresh replaces: read everything, train, save the version (as refresh does)
        trained = train_model(lake.read_flows(ids), config)
        registry.save(trained, data=data_manifest(lake, ids), reason="bench full retraining")
        return trained
    full, full_s = timed(retrain)
    load.append(os.getloadavg()[0])
    return {"config": config, "refresh_config": refresh, "base_s": base_s, "refresh_s": refresh_s,
            "full_s": full_s, "result": result, "full": full, "base": base, "load": load,
            "rows": {b: lake.batch_manifest(b)["rows"] for b in ids}}


def markdown(out: dict, command: str) -> str:
    rows, result, cfg = out["rows"], out["result"], out["config"]
    total, new_rows = sum(rows.values()), rows[result.new_batches[0]]
    ratio = {k: out["refresh_s"][k] / out["full_s"][k] for k in ("wall", "cpu")}
    cmp_ = result.comparison
    trained = result.sizes["new_train"] + result.sizes["replay_train"]
    lines = [
        "### Refresh vs full retraining (NF-BoT-IoT-v2)", "", f"`{command}`", "",
        f"{total:,} flows in {len(rows)} batches; new batch {result.new_batches[0]} = {new_rows:,} flows "
        f"({100 * new_rows / total:.1f} %). Both trainings: {cfg.epochs} epochs (no early stop), batch "
        f"{cfg.batch_size}, lr {cfg.lr}, window {cfg.window}, hidden {cfg.model['hidden']}. "
        f"Load average during the run: {', '.join(f'{v:.1f}' for v in out['load'])} (2 shared cores).", "",
        "| step | CPU s | wall s | flows trained on per epoch |", "|---|---:|---:|---:|",
        f"| full training on all batches | {out['full_s']['cpu']:.1f} | {out['full_s']['wall']:.1f} | "
        f"{out['full'].metrics['split']['train_used']:,} |",
        f"| refresh with the new batch | {out['refresh_s']['cpu']:.1f} | {out['refresh_s']['wall']:.1f} | "
        f"{trained:,} ({result.sizes['new_train']:,} new + {result.sizes['replay_train']:,} replayed) |",
        f"| (base model on the history, for reference) | {out['base_s']['cpu']:.1f} | {out['base_s']['wall']:.1f} | "
        f"{out['base'].metrics['split']['train_used']:,} |", "",
        f"**refresh / full: CPU {ratio['cpu']:.3f}, wall {ratio['wall']:.3f}** (target <= 0.25: "
        f"{'met' if max(ratio.values()) <= 0.25 else 'NOT met'}; CPU time is this process's, so other jobs on the "
        "shared cores inflate wall time but not CPU time). "
        f"Refresh breakdown (s): {', '.join(f'{k} {v}' for k, v in result.seconds.items())}; the rest is saving the "
        "candidate (checkpoint, MindIR export, hashes).", "",
        f"Guard decision: {result.reason}.", "",
        "| model | held-out | n | F1 | macro-F1 | FPR |", "|---|---|---:|---:|---:|---:|",
    ]
    for model in ("current", "candidate"):
        for part, m in cmp_[model].items():
            lines.append(f"| {model} | {part} | {m['n']:,} | {m['f1']:.4f} | {m['macro_f1']:.4f} | {m['fpr']:.4f} |")
    lines += ["", f"Full model's own test split: F1 {out['full'].metrics['test']['f1']:.4f}, macro-F1 "
              f"{out['full'].metrics['test']['macro_f1']:.4f}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=60_000, help="NF rows sampled (default 60000)")
    parser.add_argument("--batches", type=int, default=10, help="lake batches; the last is the new data")
    parser.add_argument("--task", choices=("binary", "multiclass"), default="binary")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--replay-rows", type=int, default=0,
                        help="default: as many as the new batch's training flows (a 1:1 mix)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "flowhawk-bench-refresh")
    parser.add_argument("--out", type=Path, help="append the Markdown section to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not NF_CSV.exists():
        print(f"bench_refresh: {NF_CSV} is absent (set FLOWHAWK_SHARED_DATA)", file=sys.stderr)
        return 2
    out = run(args)
    command = "python benchmarks/bench_refresh.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(out, command)
    emit(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
