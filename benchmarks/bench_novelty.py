"""Novelty model (self-supervised, no labels in training) beside unsupervised baselines on the same features.

Sections (each prints Markdown and, with ``--out``, appends it):

- ``lab``: train on ``lab/baseline/capture.pcap`` (1,712 flows, no attacks), score ``lab/capture.pcap``; labels
  (labels.csv, ``LabelRules``) only evaluate. Both objectives (reconstruct / predict) and IsolationForest / LOF per
  flow and per window, all calibrated on the same held-out baseline flows with the same budget.
- ``iot23``: ``zeek/iot23/conn.log.calibration_90_10`` ordered by ts; baseline = benign rows of the first 70 %
  (``clean``) or all rows of it (``contaminated``); the whole log is scored in one pass (windows see history);
  evaluation = every row of the last 30 % plus every attack row. The ``issue`` split takes the first 70 % of the
  log; the ``per-host`` split the first 70 % of each source host's flows (every host then has a baseline). The
  per-host and the contaminated cases also train with the poisoning guard, as ``flowhawk baseline`` does.
- ``speed``: windows/s of ``score_frame`` (supervised detector) and ``score_novelty`` on the same synthetic frame,
  best of ``--rounds`` alternating rounds.
- ``memory``: peak RSS of scoring N synthetic flows with the novelty model, in a fresh subprocess.

Usage (repo root): ``python benchmarks/bench_novelty.py lab|iot23|speed|memory [--epochs 40] [--flows N]
[--cache /tmp] [--out benchmarks/results/novelty.md]``; ``lab --context`` scores the attack day with the baseline day
as context (``score_novelty(context=...)``, as a deployment carrying each host's last flows across batches);
``iot23`` also takes ``--budget B`` (expected false alerts per flow, default 0.001) and ``--splits issue per-host``
(which splits to run, default both).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from common import emit

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
log = logging.getLogger("bench_novelty")
LIMIT_MIB = 1.5 * 1024**3 / 2**20
DEFAULT_BUDGET = 0.001
SPLITS = ("issue", "per-host")


def load_pcap(pcap: Path, labels: Path, cache: Path, name: str) -> pd.DataFrame:
    cached = cache / f"flowhawk_novelty_{name}.parquet"
    if cached.exists():
        return pd.read_parquet(cached)
    from flowhawk.extractors.base import ExtractNotes
    from flowhawk.extractors.labels import LabelRules
    from flowhawk.extractors.pcap_to_flows import PcapExtractor

    frame = pd.concat(list(PcapExtractor().frames(pcap, ExtractNotes())), ignore_index=True)
    frame = LabelRules.from_csv(labels).apply(frame).frame
    frame.to_parquet(cached)
    return frame


def load_zeek(path: Path) -> pd.DataFrame:
    from flowhawk.extractors.base import ExtractNotes
    from flowhawk.extractors.zeek_to_flows import ZeekConnExtractor

    frame = pd.concat(list(ZeekConnExtractor().frames(path, ExtractNotes())), ignore_index=True)
    return frame.sort_values("FLOW_START_MILLISECONDS", kind="stable").reset_index(drop=True)


def methods(baseline: pd.DataFrame, target: pd.DataFrame, epochs: int, seeds: int = 1, guarded: bool = False,
            budget: float = 0.001, context: pd.DataFrame | None = None) -> dict[str, dict]:
    """{method: {"error": scores of target, "threshold": alert threshold, "p": tail probabilities, ...}}; windows
    of ``target`` reach back into ``context`` when given."""
    from flowhawk.model.novelty import score_novelty, train_novelty
    from flowhawk.model.novelty_baselines import UNSUPERVISED, fit_unsupervised, score_unsupervised
    from flowhawk.model.novelty_config import NoveltyConfig

    out: dict[str, dict] = {}
    for objective, seed in ((o, s) for o in ("reconstruct", "predict") for s in range(seeds)):
        trained = train_novelty(baseline, NoveltyConfig(objective=objective, epochs=epochs, seed=seed, budget=budget))
        started = time.monotonic()
        scored = score_novelty(trained, target, context=context)
        out[f"novelty_{objective}" + (f" seed {seed}" if seed else "")] = {
            "error": scored["novelty_error"].to_numpy(), "p": scored["novelty_p"].to_numpy(),
            "flagged": scored["is_anomaly"].to_numpy(dtype=bool),
            "threshold": trained.calibration.threshold, "trained": trained, "scored": scored,
            "train_s": trained.metrics["seconds"], "score_s": time.monotonic() - started,
            "loss": (trained.history[0]["loss"], trained.history[-1]["loss"])}
    if guarded:
        from flowhawk.model.novelty_guard import train_guarded

        trained, report, kept = train_guarded(baseline, NoveltyConfig(epochs=epochs, budget=budget))
        scored = score_novelty(trained, target, context=context)
        out["novelty_reconstruct + guard"] = {
            "error": scored["novelty_error"].to_numpy(), "p": scored["novelty_p"].to_numpy(),
            "flagged": scored["is_anomaly"].to_numpy(dtype=bool),
            "threshold": trained.calibration.threshold, "train_s": trained.metrics["seconds"], "guard": report,
            "kept": kept}
    reference = out["novelty_reconstruct"]["trained"]
    for name in UNSUPERVISED:
        started = time.monotonic()
        model, calibration = fit_unsupervised(name, reference, baseline)
        error = score_unsupervised(name, model, reference, target, context)
        out[name] = {"error": error, "p": calibration.tail_probability(error), "threshold": calibration.threshold,
                     "train_s": time.monotonic() - started}
    return out


def flagged_of(result: dict) -> np.ndarray:
    """What a method alerts on: a novelty model's ``is_anomaly`` (its threshold or one of its baseline rules,
    ``model.novelty_rules``); for the other methods, the error at or past their threshold."""
    return result["flagged"] if "flagged" in result else result["error"] >= result["threshold"]


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(positive, score)) if 0 < positive.sum() < len(positive) else float("nan")


def host_ranking(frame: pd.DataFrame, p: np.ndarray) -> pd.DataFrame:
    """Per source host: mean novelty score (1 - tail probability), flagged share, its label; highest first."""
    hosts = pd.DataFrame({"host": frame["IPV4_SRC_ADDR"].to_numpy(), "score": 1.0 - p,
                          "attack": frame["Attack"].astype(str).to_numpy()})
    return hosts.groupby("host").agg(score=("score", "mean"), kind=("attack", "first"), flows=("score", "size")
                                     ).sort_values("score", ascending=False)


def lab(args: argparse.Namespace) -> str:
    from flowhawk.model.windows import build_window_index

    baseline = load_pcap(DATA / "lab/baseline/capture.pcap", DATA / "lab/baseline/labels.csv", args.cache,
                         "lab_baseline")
    target = load_pcap(DATA / "lab/capture.pcap", DATA / "lab/labels.csv", args.cache, "lab")
    context = baseline.drop(columns=["Label", "Attack"]) if args.context else None
    results = methods(baseline.drop(columns=["Label", "Attack"]), target.drop(columns=["Label", "Attack"]),
                      args.epochs, args.seeds, context=context)
    attack = target["Attack"].astype(str).to_numpy()
    kinds = sorted(set(attack) - {"Benign"})
    benign = attack == "Benign"
    command = (f"python benchmarks/bench_novelty.py lab --epochs {args.epochs} --seeds {args.seeds}"
               + (" --context" if args.context else ""))
    scoring = ("the baseline day as context (each host's windows reach back into its last baseline flows, as a "
               "deployment passing context scores the next batch)" if args.context else
               "as a fresh batch (each host's first 15 flows have short windows)")
    lines = [f"### Lab: baseline day -> attack day (`{command}`)",
             "", f"Baseline {len(baseline):,} flows (labels: {dict(baseline['Attack'].value_counts())}); scored "
             f"{len(target):,} flows, {scoring}; flagged = tail probability <= budget 0.001 (calibrated on the last "
             "25 % of each host's baseline flows), or for the novelty models one of their baseline rules (inbound "
             "flood, volume). Host rank: hosts ordered by mean novelty score (1 - tail "
             "probability).", "",
             "| method | benign FPR | " + " | ".join(f"{k} ({(attack == k).sum()})" for k in kinds)
             + " | AUC | attackers above all benign hosts | train s |",
             "|---|---|" + "---|" * len(kinds) + "---|---|---|"]
    for name, r in results.items():
        flagged = flagged_of(r)
        ranking = host_ranking(target, r["p"])
        worst_attacker = ranking.loc[ranking["kind"] != "Benign", "score"].min()
        best_benign = ranking.loc[ranking["kind"] == "Benign", "score"].max()
        above = int((ranking.loc[ranking["kind"] != "Benign", "score"] > best_benign).sum())
        r["targets"] = (all(flagged[attack == k].mean() >= 0.9 for k in kinds), flagged[benign].mean() <= 0.01,
                        worst_attacker > best_benign)
        lines.append(f"| {name} | {flagged[benign].mean():.2%} | "
                     + " | ".join(f"{flagged[attack == k].mean():.1%}" for k in kinds)
                     + f" | {auc(r['error'], ~benign):.4f} | {above}/{(ranking['kind'] != 'Benign').sum()} | "
                       f"{r['train_s']:.0f} |")
    lines += ["", "Targets (every kind >= 90 % / benign FPR <= 1 % / every attacker above every benign host):", ""]
    lines += [f"- {name}: " + " / ".join("met" if t else "NOT met" for t in r["targets"])
              for name, r in results.items()]
    chosen = results["novelty_reconstruct"]
    ranking = host_ranking(target, chosen["p"])
    lines += ["", f"Training loss (reconstruct): {chosen['loss'][0]:.3f} -> {chosen['loss'][1]:.3f}; predict: "
              f"{results['novelty_predict']['loss'][0]:.3f} -> {results['novelty_predict']['loss'][1]:.3f}.", "",
              "Host ranking, novelty_reconstruct:", "", "| rank | host | kind | flows | mean score |",
              "|---|---|---|---|---|"]
    lines += [f"| {i} | {h} | {row.kind} | {row.flows} | {row.score:.4f} |"
              for i, (h, row) in enumerate(ranking.iterrows(), 1)]
    flagged_benign = chosen["scored"][benign & chosen["scored"]["is_anomaly"].to_numpy()]
    depth = build_window_index(target, window=1).depth[benign & chosen["scored"]["is_anomaly"].to_numpy()]
    lines += ["", f"Flagged benign flows (reconstruct, seed 0): {len(flagged_benign)}, of them among their host's "
              f"first 15 flows of the attack day: {int((depth < 15).sum())}.", "",
              "Explanations of the flagged benign flows (reconstruct):", ""]
    lines += [f"- `{e}`" for e in flagged_benign["explanation"].head(5)]
    examples = chosen["scored"].assign(kind=attack)[chosen["scored"]["is_anomaly"].to_numpy()]
    lines += ["", "One explanation per attack kind (reconstruct; the middle flagged flow of each kind):", ""]
    lines += [f"- {k}: `{g['explanation'].iloc[len(g) // 2]}`" for k, g in examples.groupby("kind") if k != "Benign"]
    return "\n".join(lines) + "\n"


def early_rows(frame: pd.DataFrame, split: str) -> np.ndarray:
    """Rows in the first 70 % by ts: of the whole log (``issue``) or of each source host's flows (``per-host``)."""
    if split == "issue":
        return np.arange(len(frame)) < int(len(frame) * 0.7)
    rank = frame.groupby("IPV4_SRC_ADDR").cumcount().to_numpy()
    size = frame.groupby("IPV4_SRC_ADDR")["IPV4_SRC_ADDR"].transform("size").to_numpy()
    return rank < (size * 0.7).astype(np.int64)


def iot_case(frame: pd.DataFrame, split: str, case: str, epochs: int, seeds: int, budget: float) -> list[str]:
    early = early_rows(frame, split)
    attack = (frame["Label"] == 1).to_numpy()
    if case == "contaminated" and not (early & attack).any():
        return [f"#### IoT-23, {split} split, contaminated baseline: identical to the clean one (no attack row "
                "falls in the first 70 %), not run again", ""]
    baseline = frame[early & ~attack] if case == "clean" else frame[early]
    evaluate = ~early | attack
    results = methods(baseline.drop(columns=["Label", "Attack"]), frame.drop(columns=["Label", "Attack"]), epochs,
                      seeds, guarded=case == "contaminated" or split == "per-host", budget=budget)
    y = (frame["Label"] == 1).to_numpy()[evaluate]
    kinds = frame["Attack"].astype(str).to_numpy()[evaluate]
    attack_kinds = sorted(set(kinds[y]))
    lines = [f"#### IoT-23, {split} split, {case} baseline ({len(baseline):,} flows: "
             f"{int((baseline['Label'] == 1).sum()):,} attacks); evaluated {evaluate.sum():,} flows "
             f"({int(y.sum()):,} attacks)", "",
             "| method | recall | benign FPR | " + " | ".join(f"{k} ({(kinds == k).sum()})" for k in attack_kinds)
             + " | AUC | recall at FPR 2 % (oracle threshold) |",
             "|---|---|---|" + "---|" * len(attack_kinds) + "---|---|"]
    for name, r in results.items():
        error = r["error"][evaluate]
        flagged = flagged_of(r)[evaluate]
        oracle = np.quantile(error[~y], 0.98)
        lines.append(f"| {name} | {flagged[y].mean():.3f} | {flagged[~y].mean():.2%} | "
                     + " | ".join(f"{flagged[kinds == k].mean():.1%}" for k in attack_kinds)
                     + f" | {auc(error, y):.4f} | {(error[y] > oracle).mean():.3f} |")
    for r in (r for r in results.values() if "guard" in r):
        dropped = ~r["kept"]
        is_attack = (baseline["Label"] == 1).to_numpy()  # labels only say what the guard left out
        lines += ["", f"Poisoning guard: left out {dropped.sum():,} of {len(baseline):,} baseline flows "
                  f"({(dropped & is_attack).sum():,} of the {is_attack.sum():,} attack rows, "
                  f"{(dropped & ~is_attack).sum():,} benign); hosts left out whole: "
                  f"{[h for x in r['guard']['rounds'] for h in x['hosts']]}."]
    return [*lines, ""]


def iot23(args: argparse.Namespace) -> str:
    frame = load_zeek(DATA / "zeek/iot23/conn.log.calibration_90_10")
    command = (f"python benchmarks/bench_novelty.py iot23 --epochs {args.epochs} --seeds {args.seeds}"
               + (f" --budget {args.budget}" if args.budget != DEFAULT_BUDGET else "")
               + (f" --splits {' '.join(args.splits)}" if tuple(args.splits) != SPLITS else ""))
    lines = [f"### IoT-23 Zeek conn.log (`{command}`)", "",
             f"{len(frame):,} rows ordered by ts ({dict(frame['Attack'].value_counts())}). Flagged = calibrated "
             f"threshold (budget {args.budget}); the oracle column picks the threshold from the evaluation labels "
             "(98th percentile of benign scores) and is shown only to separate ranking from calibration.", ""]
    hosts = frame.assign(early=early_rows(frame, "issue")).groupby(["IPV4_SRC_ADDR", "early"])["Attack"]
    lines += ["Rows per source host, first 70 % (True) / last 30 % (False):", "",
              f"`{hosts.value_counts().to_dict()}`", ""]
    for split, case in ((s, c) for s in args.splits for c in ("clean", "contaminated")):
        lines += iot_case(frame, split, case, args.epochs, args.seeds, args.budget)
    return "\n".join(lines)


def speed(args: argparse.Namespace) -> str:
    from bench_score_memory import synthetic_frame

    from flowhawk.model.novelty import score_novelty, train_novelty
    from flowhawk.model.novelty_config import NoveltyConfig
    from flowhawk.model.scoring import score_frame
    from flowhawk.model.train import TrainConfig, train_model

    frame = synthetic_frame(args.flows, seed=1)
    small = frame.sample(n=min(20_000, len(frame)), random_state=0).sort_index()
    supervised = train_model(small, TrainConfig(epochs=1, batch_size=256, max_train_rows=5000, split="stratified"))
    novelty = train_novelty(small[small["Label"] == 0].drop(columns=["Label", "Attack"]),
                            NoveltyConfig(epochs=1, max_train_rows=5000))
    data = frame.drop(columns=["Label", "Attack"])
    start = data["FLOW_START_MILLISECONDS"]  # the same flows an hour-span earlier: every host's full history
    context = data.assign(FLOW_START_MILLISECONDS=start - (int(start.max() - start.min()) + 1))
    runs = (("supervised score_frame", lambda: score_frame(supervised, data)),
            ("supervised with context, 30 earlier flows per host", lambda: score_frame(supervised, data,
                                                                                     context=context)),
            ("novelty score_novelty (explain anomalous)", lambda: score_novelty(novelty, data)),
            ("novelty score_novelty (explain none)", lambda: score_novelty(novelty, data, explain="none")),
            ("novelty with context, 30 earlier flows per host (explain anomalous)",
             lambda: score_novelty(novelty, data, context=context)))
    for _, run in runs:  # the first run compiles the graphs
        run()
    seconds: dict[str, list[float]] = {name: [] for name, _ in runs}
    for _ in range(args.rounds):  # rounds alternate the scorers, so a busy spell of the machine hits each alike
        for name, run in runs:
            started = time.monotonic()
            run()
            seconds[name].append(time.monotonic() - started)
    rows = [(name, min(s)) for name, s in seconds.items()]
    base = args.flows / rows[0][1]
    lines = [f"### Scoring speed (`python benchmarks/bench_novelty.py speed --flows {args.flows} --rounds "
             f"{args.rounds}`)", "",
             f"Same synthetic {args.flows:,}-flow frame (benchmarks/bench_score_memory.py), batch 1024, best of "
             f"{args.rounds} alternating rounds after a warm-up run, whole scoring path (features, host features, "
             "windows, network, calibration). Context (what process_inbox now passes): the same flows shifted before "
             "the frame, so every host has its full 30 "
             f"earlier flows ({data['IPV4_SRC_ADDR'].nunique():,} hosts).", "",
             "| scorer | seconds | windows/s | vs supervised |", "|---|---|---|---|"]
    lines += [f"| {name} | {s:.1f} | {args.flows / s:,.0f} | {args.flows / s / base:.2f}x |" for name, s in rows]
    best = dict(rows)
    lines += ["", "Both with context (as process_inbox scores a batch now): novelty (explain anomalous) "
              f"{best[runs[1][0]] / best[runs[-1][0]]:.2f}x the supervised scorer."]
    return "\n".join(lines) + "\n"


def memory_worker(flows: int) -> dict:
    from bench_score_memory import synthetic_frame

    from flowhawk.model.novelty import score_novelty, train_novelty
    from flowhawk.model.novelty_config import NoveltyConfig

    frame = synthetic_frame(flows).drop(columns=["Label", "Attack"])
    small = frame.sample(n=20_000, random_state=0).sort_index()
    trained = train_novelty(small, NoveltyConfig(epochs=1, max_train_rows=5000))
    del small
    started = time.monotonic()
    scored = score_novelty(trained, frame)
    return {"flows": flows, "score_s": time.monotonic() - started, "flagged": int(scored["is_anomaly"].sum()),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def memory(args: argparse.Namespace) -> str:
    cmd = [sys.executable, __file__, "memory-worker", "--flows", str(args.flows)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"memory worker failed:\n{done.stderr[-3000:]}")
    r = json.loads(done.stdout.strip().splitlines()[-1])
    verdict = "PASS" if r["peak_rss_mib"] < LIMIT_MIB else "FAIL"
    return "\n".join([f"### Novelty scoring memory (`python benchmarks/bench_novelty.py memory --flows {args.flows}`)",
                      "", f"Fresh process: synthesise {r['flows']:,} flows, train a 1-epoch novelty model on 20,000 "
                      f"of them, score all: peak RSS {r['peak_rss_mib']:.0f} MiB (limit {LIMIT_MIB:.0f}: {verdict}); "
                      f"scoring {r['score_s']:.1f} s, {r['flagged']:,} flagged (explanations built for those).", ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", choices=("lab", "iot23", "speed", "memory", "memory-worker"))
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--flows", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=1, help="train each novelty objective with seeds 0..N-1")
    parser.add_argument("--cache", type=Path, default=Path("/tmp"))
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET, help="iot23: expected false alerts per flow")
    parser.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS), help="iot23: which splits")
    parser.add_argument("--context", action="store_true", help="lab: score the attack day with the baseline day "
                        "as context")
    parser.add_argument("--rounds", type=int, default=3, help="speed: alternating rounds (best of each scorer)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.section == "memory-worker":
        print(json.dumps(memory_worker(args.flows or 1_000_000)))
        return 0
    args.flows = args.flows or (1_000_000 if args.section == "memory" else 200_000)
    emit({"lab": lab, "iot23": iot23, "speed": speed, "memory": memory}[args.section](args), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
