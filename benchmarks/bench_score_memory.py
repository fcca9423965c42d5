"""Peak memory of scoring one million flows (target: < 1.5 GB peak RSS).

Each measurement runs in a fresh subprocess that reports ``ru_maxrss``:

(a) ``frame``: generate the synthetic N-flow frame only (the input every scorer must hold anyway);
(b) ``score``: generate the same frame, build a detector (pipeline fitted and the network trained for one
    short epoch on 5,000 of its flows), then ``score_frame`` all N flows in batches.

The frame has the 12 NF-v1 columns plus FLOW_START_MILLISECONDS, 2,000 source addresses (Zipf-like sizes),
so windows draw on real per-source index arrays. The network is the paper-size CNN-BiLSTM unless
``--channels`` shrinks it (memory of the scorer does not depend on it much; time does). ``--host-features``
measures a detector trained with ``TrainConfig.host_features`` (the host-window statistics computed at scoring),
and also the plain detector in the same run, so the two compare as a ratio.

Usage (repo root): ``python benchmarks/bench_score_memory.py [--flows 1000000] [--batch 1024] [--channels 64]
[--host-features] [--out benchmarks/results/train.md]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from common import emit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
LIMIT_MIB = 1.5 * 1024**3 / 2**20


def synthetic_frame(n: int, seed: int = 0):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    hosts = np.array([f"10.{i // 250}.{i % 250}.{7 + i % 3}" for i in range(2000)], dtype=object)
    weights = 1.0 / np.arange(1, 2001) ** 0.8
    src = hosts[rng.choice(2000, size=n, p=weights / weights.sum())]
    attack = rng.random(n) < 0.3
    return pd.DataFrame({
        "IPV4_SRC_ADDR": src, "IPV4_DST_ADDR": hosts[rng.integers(0, 2000, n)],
        "L4_SRC_PORT": rng.integers(1024, 65536, n).astype(np.int32),
        "L4_DST_PORT": rng.choice(np.array([80, 443, 53, 22, 8080], dtype=np.int32), n),
        "PROTOCOL": rng.choice(np.array([6, 17, 1], dtype=np.int16), n),
        "L7_PROTO": rng.choice([7.0, 91.126, 5.0, 0.0], n),
        "IN_BYTES": np.where(attack, 60, rng.integers(100, 10**6, n)).astype(np.int64),
        "OUT_BYTES": rng.integers(0, 10**6, n).astype(np.int64),
        "IN_PKTS": rng.integers(1, 1000, n).astype(np.int64),
        "OUT_PKTS": rng.integers(0, 1000, n).astype(np.int64),
        "TCP_FLAGS": np.where(attack, 2, 27).astype(np.int32),
        "FLOW_DURATION_MILLISECONDS": rng.integers(0, 60_000, n).astype(np.int64),
        "FLOW_START_MILLISECONDS": np.sort(rng.integers(0, 3_600_000, n)).astype(np.int64) + 1_700_000_000_000,
        "Label": attack.astype(np.int8),
        "Attack": np.where(attack, "DoS", "Benign"),
    })


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker(mode: str, flows: int, batch: int, channels: int, host_features: bool = False) -> dict:
    started = time.monotonic()
    frame = synthetic_frame(flows)
    out = {"mode": mode, "flows": flows, "frame_mib": frame.memory_usage(deep=True).sum() / 2**20,
           "generate_s": time.monotonic() - started}
    if mode == "score":
        from flowhawk.model.config import TrainConfig
        from flowhawk.model.scoring import score_frame
        from flowhawk.model.train import train_model

        config = TrainConfig(epochs=1, batch_size=256, max_train_rows=5000, split="stratified",
                             host_features=host_features, model={"conv_channels": channels, "hidden": channels})
        small = frame.sample(n=20_000, random_state=0).sort_index()
        trained = train_model(small, config)
        del small
        t0 = time.monotonic()
        scored = score_frame(trained, frame, batch_size=batch)
        out.update(score_s=time.monotonic() - t0, flagged=int(scored["is_anomaly"].sum()),
                   aligned=bool(scored.index.equals(frame.index)))
    out["peak_rss_mib"] = _peak_mib()
    return out


def measure(mode: str, args: argparse.Namespace, host_features: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--worker", mode, "--flows", str(args.flows), "--batch", str(args.batch),
           "--channels", str(args.channels)] + (["--host-features"] if host_features else [])
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"worker {mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="peak RSS of score_frame on N synthetic flows")
    parser.add_argument("--flows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--host-features", action="store_true",
                        help="also score with a detector trained with host features (TrainConfig.host_features)")
    parser.add_argument("--worker", choices=("frame", "score"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.flows, args.batch, args.channels, args.host_features)))
        return 0
    frame, score = measure("frame", args), measure("score", args)
    hosts = measure("score", args, host_features=True) if args.host_features else None
    ok = score["peak_rss_mib"] < LIMIT_MIB and score["aligned"]
    text = "\n".join([
        "### Scoring memory", "",
        f"`python benchmarks/bench_score_memory.py --flows {args.flows} --batch {args.batch} "
        f"--channels {args.channels}`", "",
        "| measurement | peak RSS (MiB) | seconds |", "|---|---|---|",
        f"| generate the {args.flows:,}-flow frame only ({frame['frame_mib']:.0f} MiB in pandas) | "
        f"{frame['peak_rss_mib']:.0f} | {frame['generate_s']:.1f} |",
        f"| generate + train tiny detector + score_frame all flows | {score['peak_rss_mib']:.0f} | "
        f"{score['score_s']:.1f} (scoring) |", "",
        f"Scoring adds {score['peak_rss_mib'] - frame['peak_rss_mib']:.0f} MiB over holding the frame "
        f"(ratio {score['peak_rss_mib'] / frame['peak_rss_mib']:.2f}); limit {LIMIT_MIB:.0f} MiB: "
        f"{'PASS' if ok else 'FAIL'}; {score['flows'] / score['score_s']:,.0f} flows/s scored "
        f"({score['flagged']:,} flagged).", ""] + (host_lines(hosts, score) if hosts else []))
    emit(text, args.out)
    ok = ok and (hosts is None or (hosts["peak_rss_mib"] < LIMIT_MIB and hosts["aligned"]))
    return 0 if ok else 1


def host_lines(hosts: dict, plain: dict) -> list[str]:
    """The host-feature detector's row, beside the plain one measured in the same run."""
    return ["| measurement | peak RSS (MiB) | seconds |", "|---|---|---|",
            f"| plain detector (above) | {plain['peak_rss_mib']:.0f} | {plain['score_s']:.1f} |",
            f"| detector with host features: generate + train + score_frame all flows | {hosts['peak_rss_mib']:.0f} "
            f"| {hosts['score_s']:.1f} |", "",
            f"With host features: peak {hosts['peak_rss_mib'] / plain['peak_rss_mib']:.2f}x the plain detector's, "
            f"scoring time {hosts['score_s'] / plain['score_s']:.2f}x ({hosts['flows'] / hosts['score_s']:,.0f} "
            f"flows/s); limit {LIMIT_MIB:.0f} MiB: {'PASS' if hosts['peak_rss_mib'] < LIMIT_MIB else 'FAIL'}.", ""]


if __name__ == "__main__":
    sys.exit(main())
