"""Do the explanations name what each attack does? Score a labelled lake batch with the current model, explain
the anomalies by occlusion, group them into incidents, and tabulate per true attack class the most frequent top
feature of its incidents against the fields that attack changes (decided before running, listed in EXPECTED).

    python benchmarks/bench_explain.py --lake L --models M --batch lab \
        [--reference mean|sampled] [--samples K --seed S] [--out benchmarks/results/analyst.md]

Also writes the batch's full report (report.html, incidents.parquet, alerts.jsonl) into ``<lake>/reports``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit

# What each lab attack does to a flow record (the tool's behaviour, from ../shared/data/README.md):
EXPECTED: dict[str, tuple[str, ...]] = {
    "synscan": ("L4_DST_PORT", "TCP_FLAGS"),                 # nmap -sS: one SYN per port 1-1024, RST back
    "connscan": ("L4_DST_PORT", "TCP_FLAGS"),                # nmap -sT: full handshake per port, then RST
    "synflood": ("TCP_FLAGS", "IN_PKTS", "OUT_PKTS", "L4_SRC_PORT"),  # hping3 -S: lone SYNs, rolling src port
    "udpflood": ("PROTOCOL", "IN_BYTES", "L4_DST_PORT"),     # hping3 --udp: 120-byte datagrams
    "icmpflood": ("PROTOCOL", "IN_PKTS", "IN_BYTES"),        # hping3 --icmp: 5,000 echoes in one flow
    "httpflood": ("IN_BYTES", "OUT_BYTES", "IN_PKTS", "OUT_PKTS", "FLOW_DURATION_MILLISECONDS"),  # ab: identical GETs
    "dirscan": ("OUT_BYTES", "IN_BYTES", "OUT_PKTS"),        # curl probing 300 paths: 404 replies
    "slowloris": ("FLOW_DURATION_MILLISECONDS", "IN_BYTES", "IN_PKTS"),  # held connections, trickled headers
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", type=Path, required=True)
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--batch", required=True)
    parser.add_argument("--reference", default="mean", choices=("mean", "sampled"),
                        help="occlusion reference (reports.explain.explain_supervised)")
    parser.add_argument("--samples", type=int, default=4, help="benign draws per column (--reference sampled)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the benign draws (--reference sampled)")
    parser.add_argument("--scope", default="flow", choices=("flow", "window"),
                        help="occlude in every flow of the window or in the scored flow only")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    from flowhawk.lake.store import Lake
    from flowhawk.model.registry import Registry
    from flowhawk.model.scoring import score_frame
    from flowhawk.reports.analyst import analyse_batch
    from flowhawk.reports.explain import explain_supervised
    from flowhawk.reports.scored import ScoreMeta, write_scored_report

    registry = Registry(args.models)
    version = registry.require_current()
    trained = registry.load(version)
    flows = Lake(args.lake).read_flows([args.batch])
    t0 = time.perf_counter()
    scores = score_frame(trained, flows)
    t_score = time.perf_counter() - t0
    t0 = time.perf_counter()
    explained = explain_supervised(trained, flows, scores, reference=args.reference, samples=args.samples,
                                   seed=args.seed, scope=args.scope)
    t_explain = time.perf_counter() - t0
    scores = scores.assign(reason=explained["reason"].to_numpy(), explanation=explained["explanation"].to_numpy())
    t0 = time.perf_counter()
    analyst = analyse_batch(args.lake, args.batch, flows, scores, version)
    t_analyse = time.perf_counter() - t0
    meta = ScoreMeta(model_version=version, threshold=trained.threshold)
    paths, _ = write_scored_report(Lake(args.lake).reports_dir, args.batch, flows, scores, meta,
                                    analyst=analyst)
    method = f"{args.reference} reference" + (f", {args.samples} draws, seed {args.seed}"
                                              if args.reference == "sampled" else "") + f", {args.scope} scope"
    emit(table(analyst.incidents, int(scores["is_anomaly"].sum()), version, len(flows),
               (t_score, t_explain, t_analyse), method), args.out)
    print(f"report: {paths.html}")
    return 0


def table(incidents, anomalies: int, version: str, flows: int, seconds: tuple[float, float, float],
          method: str) -> str:
    lines = [f"model {version}; {flows:,} flows, {anomalies:,} anomalous, {len(incidents):,} incidents; "
             f"scoring {seconds[0]:.1f} s, occlusion explanations ({method}) {seconds[1]:.1f} s, "
             f"incidents + hosts + alerts "
             f"{seconds[2]:.1f} s", "",
             "| true class | incidents | flows | top feature (share of incidents) | 2nd | expected fields | match | "
             "in top 2 |", "|---|---:|---:|---|---|---|---|---|"]
    matched = matched2 = 0
    for cls in sorted(incidents["true_class"].dropna().unique()):
        rows = incidents[incidents["true_class"] == cls]
        firsts = Counter(_top(e, 0) for e in rows["explanation"])
        seconds_ = Counter(_top(e, 1) for e in rows["explanation"])
        top, n = firsts.most_common(1)[0]
        second = seconds_.most_common(1)[0][0]
        expected = EXPECTED.get(str(cls), ())
        ok, ok2 = top in expected, top in expected or second in expected
        matched += ok and bool(expected)
        matched2 += ok2 and bool(expected)
        lines.append(f"| {cls} | {len(rows)} | {int(rows['flows'].sum()):,} | {top} ({n / len(rows):.0%}) | {second} "
                     f"| {', '.join(expected) or '(benign: false positives)'} | "
                     f"{'yes' if ok else ('-' if not expected else 'no')} | "
                     f"{'yes' if ok2 else ('-' if not expected else 'no')} |")
    attacks = sum(1 for c in incidents["true_class"].dropna().unique() if str(c) in EXPECTED)
    lines += ["", f"top feature matches the attack's fields for {matched} of {attacks} attack kinds; "
                  f"one of the top two for {matched2} of {attacks}"]
    return "\n".join(lines)


def _top(explanation: str | None, k: int) -> str:
    if not explanation:
        return "(none)"
    top = json.loads(explanation)["top"]
    return top[k]["feature"] if len(top) > k else "(none)"


if __name__ == "__main__":
    raise SystemExit(main())
