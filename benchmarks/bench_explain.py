"""Do the explanations name what each attack does? Score a labelled lake batch with the current model, explain
the anomalies, group them into incidents, and tabulate per true attack class the most frequent top feature of its
incidents against the fields that attack changes (decided before running, listed in EXPECTED).

    python benchmarks/bench_explain.py --lake L --models M --batch lab [--kind supervised|novelty] \
        [--table predeclared|blind] [--reference mean|sampled] [--samples K --seed S] \
        [--out benchmarks/results/analyst.md]
    python benchmarks/bench_explain.py --lake L --models M --batch lab --kind fields --quiet-batch quiet

``--kind supervised`` (default): the current supervised model, explained by occlusion. ``--kind novelty``: the
current model of the novelty registry (``<models>/novelty``), the batch's windows reaching back into its hosts'
earlier lake flows (``batch_context``, as ``score_batch`` does), each flagged flow explained by its top deviating
features (observed vs expected). There a feature matches an attack when its field (the name before ``:`` / ``=``:
``PROTOCOL=17`` is a field of PROTOCOL) is one of the attack's EXPECTED fields, or it is a host feature whose
``HOST_FEATURE_SOURCES`` include one of them; the match column names the field that matched. Attack kinds the model
flags no flow of are listed with 0 incidents and count as not matched (N of all 8).

``--kind fields`` uses no model: per attack kind, the share of its flows whose value of each feature an attack-free
batch of the same network never had (``attack_fields.py``), beside its EXPECTED fields.

Also writes the batch's full report (report.html, incidents.parquet, alerts.jsonl) into ``<lake>/reports``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
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

# A second table, written after EXPECTED had been measured, by an annotator blind to every model output: a helper
# that read only benchmarks/expected_blind_brief.md (the lab's tools and benign mix, from the lab's
# make_lab_capture.sh, and the 19 features a label-free explanation can name) and named 1-3 features per attack,
# most distinctive first, with its reasons (benchmarks/results/analyst.md quotes them). Matched by the feature's
# own name or its field's, with no host-feature expansion (``--table blind``).
EXPECTED_BLIND: dict[str, tuple[str, ...]] = {
    "synscan": ("HOST_DST_PORTS", "HOST_PORT_SPREAD", "HOST_RST"),
    "connscan": ("HOST_DST_PORTS", "HOST_PORT_SPREAD", "HOST_RST"),
    "synflood": ("HOST_RATE", "TCP_FLAGS", "HOST_RST"),
    "udpflood": ("HOST_RATE", "HOST_UNANSWERED", "HOST_SIZE_SPREAD"),
    "icmpflood": ("IN_PKTS", "OUT_PKTS", "IN_BYTES"),
    "httpflood": ("HOST_RATE", "HOST_SIZE_SPREAD"),
    "dirscan": ("HOST_RATE", "HOST_SIZE_SPREAD"),
    "slowloris": ("FLOW_DURATION_MILLISECONDS", "HOST_RATE", "HOST_SIZE_SPREAD"),
}
TABLES = {"predeclared": EXPECTED, "blind": EXPECTED_BLIND}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", type=Path, required=True)
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--batch", required=True)
    parser.add_argument("--kind", default="supervised", choices=("supervised", "novelty", "fields"),
                        help="which current model scores and explains: the supervised one (occlusion) or the "
                             "label-free novelty model (top deviating features); 'fields': no model, where each "
                             "attack's features lie against the --quiet-batch")
    parser.add_argument("--table", default="predeclared", choices=tuple(TABLES),
                        help="what each attack is expected to change: EXPECTED (decided before the first run) or "
                             "EXPECTED_BLIND (a blind annotator's, written later)")
    parser.add_argument("--quiet-batch", help="--kind fields: the attack-free batch to compare with")
    parser.add_argument("--reference", default="mean", choices=("mean", "sampled"),
                        help="occlusion reference (reports.explain.explain_supervised; supervised only)")
    parser.add_argument("--samples", type=int, default=4, help="benign draws per column (--reference sampled)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the benign draws (--reference sampled)")
    parser.add_argument("--scope", default="flow", choices=("flow", "window"),
                        help="occlude in every flow of the window or in the scored flow only (supervised only)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.kind == "fields":
        from attack_fields import fields_table

        emit(fields_table(args.lake, args.batch, args.quiet_batch, TABLES[args.table]), args.out)
        return 0
    return novelty(args) if args.kind == "novelty" else supervised(args)


def supervised(args: argparse.Namespace) -> int:
    """The current supervised model: scores, occlusion explanations, incidents, the table."""
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
               (t_score, t_explain, t_analyse), method, TABLES[args.table], args.table == "predeclared"), args.out)
    print(f"report: {paths.html}")
    return 0


def novelty(args: argparse.Namespace) -> int:
    """The current novelty model, as ``score_batch`` runs it for a batch: the hosts' earlier lake flows as context
    (``batch_context``), ``score_novelty`` (flagged flows explained), ``combine_scores``, ``analyse_batch``."""
    from flowhawk.lake.store import Lake
    from flowhawk.model.novelty import score_novelty
    from flowhawk.model.novelty_lifecycle import batch_context, novelty_registry
    from flowhawk.reports.analyst import analyse_batch
    from flowhawk.reports.combine import combine_scores
    from flowhawk.reports.scored import ScoreMeta, write_scored_report

    registry = novelty_registry(args.models)
    version = registry.require_current()
    trained = registry.load(version)
    lake = Lake(args.lake)
    flows = lake.read_flows([args.batch])
    t0 = time.perf_counter()
    context = batch_context(lake, [args.batch], flows, trained.config.window)
    t_context = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = combine_scores(len(flows), None, score_novelty(trained, flows, context=context))
    t_score = time.perf_counter() - t0
    label = f"novelty {version}"
    t0 = time.perf_counter()
    analyst = analyse_batch(args.lake, args.batch, flows, scores, label)
    t_analyse = time.perf_counter() - t0
    meta = ScoreMeta(model_version=label, threshold=1.0 - trained.config.budget)
    paths, _ = write_scored_report(lake.reports_dir, args.batch, flows, scores, meta, analyst=analyst)
    head = (f"novelty model {version} (seed {trained.config.seed}); {len(flows):,} flows "
            f"({0 if context is None else len(context):,} earlier flows of their hosts as context), "
            f"{int(scores['is_anomaly'].sum()):,} anomalous, {len(analyst.incidents):,} incidents; context "
            f"{t_context:.1f} s, scoring + explanations {t_score:.1f} s, incidents + hosts + alerts {t_analyse:.1f} s")
    emit(novelty_table(analyst.incidents, _flagged(flows, scores), head, args.table), args.out)
    print(f"report: {paths.html}")
    return 0


def _flagged(flows, scores) -> dict[str, dict]:
    """Per true class (``Attack``): its flows, how many are flagged, and per rank 0-2 a Counter of the flagged
    flows' features at that rank (every flagged flow is explained, not only the incidents' representatives)."""
    if "Attack" not in flows.columns:
        return {}
    flagged = scores["is_anomaly"].to_numpy(dtype=bool)
    classes = flows["Attack"].astype(str).to_numpy()
    texts = scores["explanation"].to_numpy()
    out = {}
    for cls in sorted(set(classes)):
        rows = [texts[i] for i in (classes == cls).nonzero()[0] if flagged[i]]
        out[cls] = {"flows": int((classes == cls).sum()), "flagged": len(rows),
                    "ranks": [Counter(_top(e, k) for e in rows) for k in range(3)]}
    return out


def table(incidents, anomalies: int, version: str, flows: int, seconds: tuple[float, float, float],
          method: str, table_: dict[str, tuple[str, ...]], via: bool) -> str:
    """Per true class, the modal top features of its incidents against ``table_``, matched as ``feature_match``
    does (host features through their source fields when ``via``: the pre-declared table, as for the novelty
    model; a supervised model names host features only with ``TrainConfig.host_features``)."""
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
        expected = table_.get(str(cls), ())
        ok = bool(feature_match(top, expected, via))
        ok2 = ok or bool(feature_match(second, expected, via))
        matched += ok and bool(expected)
        matched2 += ok2 and bool(expected)
        lines.append(f"| {cls} | {len(rows)} | {int(rows['flows'].sum()):,} | {top} ({n / len(rows):.0%}) | {second} "
                     f"| {', '.join(expected) or '(benign: false positives)'} | "
                     f"{'yes' if ok else ('-' if not expected else 'no')} | "
                     f"{'yes' if ok2 else ('-' if not expected else 'no')} |")
    attacks = sum(1 for c in incidents["true_class"].dropna().unique() if str(c) in table_)
    lines += ["", f"top feature matches the attack's fields for {matched} of {attacks} attack kinds; "
                  f"one of the top two for {matched2} of {attacks}"]
    return "\n".join(lines)


def feature_match(feature: str, expected: tuple[str, ...], via: bool = True) -> str | None:
    """How a novelty feature matches an attack's EXPECTED fields: ``yes`` (the field itself), ``yes (FIELD)`` (a
    feature of that field: one-hot, bit, missing indicator), ``yes (via FIELD)`` (a host feature computed from it,
    ``HOST_FEATURE_SOURCES``; only with ``via``); None when it does not."""
    from flowhawk.model.host_features import HOST_FEATURE_SOURCES

    field = re.split(r"[:=]", feature, maxsplit=1)[0]
    if field in expected:
        return "yes" if field == feature else f"yes ({field})"
    if not via:
        return None
    hits = [s for s in HOST_FEATURE_SOURCES.get(field, ()) if s in expected]
    return f"yes (via {', '.join(hits)})" if hits else None


def novelty_table(incidents, flagged: dict[str, dict], head: str, name: str = "predeclared") -> str:
    """The supervised table's columns for the novelty model, every EXPECTED attack kind listed (0 incidents when
    none of its flows is flagged), then the top features' observed vs expected values per class. ``name``: which
    of TABLES says what each attack changes."""
    table_, via = TABLES[name], name == "predeclared"
    lines = [head, "", "| true class | incidents | flows | top feature (share of incidents) | 2nd | expected fields | "
             "match | in top 2 |", "|---|---:|---:|---|---|---|---|---|"]
    matched = matched2 = 0
    labelled = incidents[incidents["true_class"].notna()]
    for cls in sorted(set(table_) | set(labelled["true_class"].astype(str))):
        rows = labelled[labelled["true_class"].astype(str) == cls]
        expected = table_.get(cls, ())
        fields = ", ".join(expected) or "(benign: false positives)"
        if not len(rows):
            why = "no incident of its own" if flagged.get(cls, {}).get("flagged") else "no flow flagged"
            lines.append(f"| {cls} | 0 | 0 | ({why}) | - | {fields} | no | no |")
            continue
        (top, n), second = _modal(rows, 0), _modal(rows, 1)[0]
        ok = feature_match(top, expected, via)
        ok2 = ok or feature_match(second, expected, via)
        matched, matched2 = matched + bool(ok), matched2 + bool(ok2)
        mark = (lambda m: m or "no") if expected else (lambda m: "-")
        lines.append(f"| {cls} | {len(rows)} | {int(rows['flows'].sum()):,} | {top} ({n / len(rows):.0%}) | {second} "
                     f"| {fields} | {mark(ok)} | {mark(ok2)} |")
    lines += ["", f"top feature matches the attack's fields ({name} table) for {matched} of {len(table_)} attack "
                  f"kinds; one of the top two for {matched2} of {len(table_)}", ""]
    return "\n".join(lines + observed_table(labelled, flagged))


def observed_table(incidents, flagged: dict[str, dict]) -> list[str]:
    """Per class: flagged flows, its incidents' modal 1st-3rd features with the median observed and expected values
    over the incidents that have that feature at that rank, and the share of the class's flagged flows (each
    explained) with that feature at that rank."""
    lines = ["| true class | flagged flows | rank | feature (incidents) | observed (median) | expected (median) | "
             "share of flagged flows |", "|---|---:|---:|---|---:|---:|---:|"]
    for cls in sorted(set(EXPECTED) | set(incidents["true_class"].astype(str)) | set(flagged)):
        rows = incidents[incidents["true_class"].astype(str) == cls]
        got = flagged.get(cls, {"flows": 0, "flagged": 0, "ranks": [Counter()] * 3})
        for k in range(3 if len(rows) else 1):
            feature, n = _modal(rows, k) if len(rows) else ("-", 0)
            obs, exp = _medians(rows, k, feature)
            share = f"{got['ranks'][k][feature] / got['flagged']:.0%}" if got["flagged"] and len(rows) else "-"
            count = f"{got['flagged']:,} / {got['flows']:,}" if k == 0 else ""
            lines.append(f"| {cls if k == 0 else ''} | {count} | {k + 1} | {feature} ({n}) | {obs} | {exp} | {share} |")
    return lines


def _modal(rows, k: int) -> tuple[str, int]:
    """The most frequent k-th top feature of the incidents' explanations, and how many incidents have it."""
    return Counter(_top(e, k) for e in rows["explanation"]).most_common(1)[0]


def _medians(rows, k: int, feature: str) -> tuple[str, str]:
    """Median observed and expected value of ``feature`` at rank k over the incidents that have it there."""
    items = [json.loads(e)["top"][k] for e in rows["explanation"] if e and _top(e, k) == feature]
    out = []
    for key in ("observed", "expected"):
        values = [float(i[key]) for i in items if isinstance(i.get(key), (int, float))]
        out.append(f"{statistics.median(values):.4g}" if values else "-")
    return out[0], out[1]


def _top(explanation: str | None, k: int) -> str:
    if not explanation:
        return "(none)"
    top = json.loads(explanation)["top"]
    return top[k]["feature"] if len(top) > k else "(none)"


if __name__ == "__main__":
    raise SystemExit(main())
