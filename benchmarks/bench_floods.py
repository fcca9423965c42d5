"""Floods from spoofed sources, and other networks' ordinary traffic, against a quiet-day novelty baseline.

A flood whose packets carry random source addresses gives one short flow per source: per-source windows see a host
that sent one ordinary-looking flow, and only the destination's side shows it (the network alone flagged 0-30 %:
benchmarks/results/novelty.md, "Spoofed-source floods"; now the model's inbound-flood rule,
``model.novelty_inbound``, counts each destination's sources). This trains the novelty model on the lab's
quiet day (``lab/baseline/capture.pcap``, as ``bench_novelty.py lab``) and scores, each capture alone (no
context: other networks):

- the DDoS captures of ``pcaps/stopddos`` (their README: one-way, at least 99 % attack traffic, so the flagged share
  is the recall) and ``pcaps/zeek-traces/dhcp_flood.pcap`` (a DHCP starvation flood: one spoofed MAC/IP per flow);
- as a control, every capture of ``pcaps/nfstream/pcaps``: other networks' unlabelled, mostly ordinary traffic. A
  baseline from one small lab says nothing reliable about them; the share flagged shows whether "foreign" alone
  is enough to alert (it would make the flood figures meaningless).

Usage (repo root): ``python benchmarks/bench_floods.py [--epochs 40] [--seeds 2] [--cache /tmp]
[--out benchmarks/results/novelty.md]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_novelty import DATA, load_pcap

from common import emit

FLOODS = [*sorted((DATA / "pcaps/stopddos").glob("*.pcap*")), DATA / "pcaps/zeek-traces/dhcp_flood.pcap"]
CONTROLS = sorted((DATA / "pcaps/nfstream/pcaps").glob("*.pcap*"))


def flows_of(path: Path) -> pd.DataFrame | None:
    """The capture's flows (nfstream, NF settings), or None when it holds none (or is unreadable)."""
    from flowhawk.extractors.base import BadInputError, ExtractNotes
    from flowhawk.extractors.pcap_to_flows import PcapExtractor

    try:
        frames = list(PcapExtractor().frames(path, ExtractNotes()))
    except BadInputError:
        return None
    frame = pd.concat(frames, ignore_index=True) if frames else None
    return frame if frame is not None and len(frame) else None


def leader(explanation: object) -> str:
    """The first feature an explanation names."""
    entries = json.loads(explanation) if isinstance(explanation, str) else explanation
    return str(entries[0]["feature"]) if entries else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path("/tmp"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    from flowhawk.model.novelty import score_novelty, train_novelty
    from flowhawk.model.novelty_config import NoveltyConfig

    if not (DATA / "lab/baseline/capture.pcap").exists():
        print(f"skipped: {DATA} is absent")
        return 0
    started = time.monotonic()
    baseline = load_pcap(DATA / "lab/baseline/capture.pcap", DATA / "lab/baseline/labels.csv", args.cache,
                         "lab_baseline").drop(columns=["Label", "Attack"])
    floods = {p.name: f for p in FLOODS if (f := flows_of(p)) is not None}
    controls = {p.name: f for p in CONTROLS if (f := flows_of(p)) is not None}
    models = [train_novelty(baseline, NoveltyConfig(epochs=args.epochs, seed=seed)) for seed in range(args.seeds)]
    lines = [f"### Spoofed-source floods and other networks' traffic against the quiet day "
             f"(`python benchmarks/bench_floods.py --epochs {args.epochs} --seeds {args.seeds}`)", "",
             f"Novelty model (reconstruct, pool {models[0].config.pool}) trained on the quiet day's "
             f"{len(baseline):,} flows, seeds 0-{args.seeds - 1}; thresholds "
             + " / ".join(f"{m.calibration.threshold:.3g}" for m in models) + "; each capture scored alone.", "",
             "| capture | flows | sources | destinations | flagged (per seed) | leading feature of flagged flows |",
             "|---|---:|---:|---:|---|---|"]
    for name, frame in floods.items():
        scored = [score_novelty(m, frame) for m in models]
        flagged = " / ".join(f"{s['is_anomaly'].mean():.1%}" for s in scored)
        leaders = scored[0].loc[scored[0]["is_anomaly"], "explanation"].map(leader).value_counts()
        lead = ", ".join(f"{k} ({v / leaders.sum():.0%})" for k, v in leaders.head(2).items()) or "-"
        lines.append(f"| {name} | {len(frame):,} | {frame['IPV4_SRC_ADDR'].nunique():,} | "
                     f"{frame['IPV4_DST_ADDR'].nunique():,} | {flagged} | {lead} |")
    lab = load_pcap(DATA / "lab/capture.pcap", DATA / "lab/labels.csv", args.cache, "lab")
    rule = models[0].inbound
    lab_hits = int(rule.hits(lab)[0].sum()) if rule else 0
    control_hits = sum(int(rule.hits(f)[0].sum()) for f in controls.values()) if rule else 0
    lines += ["", _controls(controls, models, score_novelty), "",
              (f"Inbound-flood rule (seed 0): baseline maximum {rule.max_sources} sources at one destination per "
               f"{rule.bin_s:g} s, hits above {rule.limit}; it fires on {control_hits:,} of the control's flows and "
               f"{lab_hits:,} of the lab attack day's {len(lab):,} (fixed-source attacks)." if rule else
               "No inbound-flood rule (a model saved before it)."), "", _volume(models[0], floods, controls, lab), "",
              f"Total {time.monotonic() - started:.0f} s."]
    emit("\n".join(lines), args.out)
    return 0


def _volume(model, floods: dict[str, pd.DataFrame], controls: dict[str, pd.DataFrame], lab: pd.DataFrame) -> str:
    """One line: where the volume rule (``model.novelty_volume``, seed 0's) fires: floods, control, lab by class."""
    rule = model.volume
    if rule is None:
        return "No volume rule (a model saved before it)."
    flood_hits = sum(int(rule.hits(f)[0].sum()) for f in floods.values())
    control = [int(rule.hits(f)[0].sum()) for f in controls.values()]
    lab_hits = rule.hits(lab)[0]
    by_class = lab.loc[lab_hits, "Attack"].astype(str).value_counts().to_dict() if "Attack" in lab else {}
    return (f"Volume rule (seed 0): limits {rule.factor:g} x each protocol's largest baseline flow, at least "
            f"{rule.packet_floor} packets / {rule.byte_floor:,} bytes (baseline maxima per protocol: "
            + "; ".join(f"{k}: {', '.join(f'{v:,.0f}' for v in m)}" for k, m in sorted(rule.maxima.items()))
            + f", as IN/OUT packets, IN/OUT bytes); it fires on {flood_hits:,} of the floods' flows, "
            f"{sum(control):,} of the control's {sum(len(f) for f in controls.values()):,} (in "
            f"{sum(c > 0 for c in control)} of {len(control)} captures) and {int(lab_hits.sum()):,} of the lab attack "
            f"day's {len(lab):,} ({', '.join(f'{k} {v}' for k, v in by_class.items()) or 'none'}).")


def _controls(controls: dict[str, pd.DataFrame], models: list, score_novelty) -> str:
    """One line: the control captures' flows flagged, overall and per capture (median, 90th percentile)."""
    shares = np.array([[score_novelty(m, f, explain="none")["is_anomaly"].mean() for f in controls.values()]
                       for m in models])  # (seeds, captures)
    flows = np.array([len(f) for f in controls.values()])
    overall = " / ".join(f"{(s * flows).sum() / flows.sum():.1%}" for s in shares)
    median = " / ".join(f"{np.median(s):.0%}" for s in shares)
    p90 = " / ".join(f"{np.percentile(s, 90):.0%}" for s in shares)
    return (f"Control, the {len(controls)} captures of `pcaps/nfstream/pcaps` holding IP flows ({flows.sum():,} "
            f"flows; other networks, unlabelled): flagged {overall} of all flows (per seed); per capture median "
            f"{median}, 90th percentile {p90}.")


if __name__ == "__main__":
    sys.exit(main())
