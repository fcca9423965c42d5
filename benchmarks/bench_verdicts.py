"""Do verdicts teach the model? Score batch A (no attacks) with the current model, mark each of its incidents a
false positive, refresh on the verdict labels (``VerdictLabelledLake`` + ``refresh_model``, usual promotion
guard, ``RefreshConfig.verdict_weight``), then compare the old model and the refresh's candidate (promoted or
not) on batch B (false alerts: flows and incidents) and on a labelled attack batch (flow recall, attack flows
missed by kind, attackers with at least one alert, benign flows flagged), and each model's recall on the attack
batch at the false-alert counts both models raise there (the alert level set from the labels: the two models'
rankings compared at one operating point, apart from where each one's own threshold lands), and the attack
batch's recall split at the batch boundary: each attacker's first ``window - 1`` flows of the batch, whose windows
reach back into the batch before, and the rest.

    python benchmarks/bench_verdicts.py --lake L --models M --fp-batch baseA --next-batch baseB --attack-batch lab \
        [--verdict-weight W] [--contrast-rows K] [--salt S] [--no-history] [--out benchmarks/results/analyst.md]

``--kind novelty``: the same with the current label-free model (``<models>/novelty``) and its refresh
(``model.novelty_lifecycle.refresh_baseline`` on the verdict view: flows marked false positive kept and taught,
confirmed ones left out). ``--mark labelled``: the analyst triages a batch that holds attacks too: an incident
whose flows are all labelled benign is marked false positive, any other confirmed (labels stand in for the
analyst's judgement; the default ``all`` marks every incident false positive, for a batch without attacks;
``none`` marks nothing: the same refresh without verdicts, as a control).

The lake and model it needs, and how the quiet day is split: benchmarks/results/analyst.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("--lake", "--models"):
        parser.add_argument(name, type=Path, required=True)
    for name in ("--fp-batch", "--next-batch", "--attack-batch"):
        parser.add_argument(name, required=True)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--verdict-weight", type=int, help="RefreshConfig.verdict_weight (default: the config's)")
    parser.add_argument("--contrast-rows", type=int, help="RefreshConfig.contrast_rows (default: the config's)")
    parser.add_argument("--salt", type=int, default=0, help="RefreshConfig.salt: another hash split of the rows")
    parser.add_argument("--kind", choices=("supervised", "novelty"), default="supervised")
    parser.add_argument("--push", type=float, default=1.0,
                        help="novelty: confirmed flows pushed above this many times the current threshold (0: off; "
                             "refresh_baseline's default 1)")
    parser.add_argument("--mark", choices=("all", "labelled", "none"), default="all",
                        help="which incidents of --fp-batch are marked false positive (see above)")
    parser.add_argument("--no-history", action="store_true",
                        help="score each batch alone (before: no host history from earlier lake batches)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    from flowhawk.lake.store import Lake
    from flowhawk.model.novelty_lifecycle import novelty_registry
    from flowhawk.model.registry import Registry
    from flowhawk.reports.analyst import analyse_batch
    from flowhawk.reports.scored import ScoreMeta, write_scored_report
    from flowhawk.reports.verdicts import VerdictStore

    registry, lake = Registry(args.models), Lake(args.lake)
    if args.kind == "novelty":
        registry = novelty_registry(args.models)
    before = registry.require_current()
    history = not args.no_history
    incidents, labelled = _score(registry, lake, before, args.fp_batch, history, analyse_batch, write_scored_report,
                                 ScoreMeta)
    _mark(VerdictStore(args.lake), incidents, labelled, args.mark)
    result, settings = _refresh(args, registry, before)
    after = result.version
    rows = [_measure(registry, lake, v, args.next_batch, args.attack_batch, history) for v in (before, after)]
    ks = sorted({r["attack_fp"] for r in rows})
    how = "with their hosts' earlier lake flows as context" if history else "alone"
    fp = incidents[~incidents["incident_id"].isin(labelled)] if args.mark == "labelled" else incidents
    fp = fp.iloc[:0] if args.mark == "none" else fp
    confirmed = int(incidents["incident_id"].isin(labelled).sum()) if args.mark == "labelled" else 0
    lines = [f"False positives marked: {len(fp)} incidents of batch {args.fp_batch} "
             f"({int(fp['flows'].sum())} flows); confirmed: {confirmed} incidents. Refresh "
             f"({settings}): {after} "
             f"{'promoted' if result.promoted else 'not promoted'} ({result.reason}). Batches scored {how}.", "",
             f"| model | {args.next_batch}: false alerts (benign flows) | {args.next_batch}: incidents | "
             f"{args.attack_batch}: recall | {args.attack_batch}: attack flows missed | {args.attack_batch}: attackers "
             f"alerted | {args.attack_batch}: benign flows flagged | "
             + " | ".join(f"{args.attack_batch}: recall at {k} false alerts" for k in ks)
             + f" | {args.attack_batch}: recall, attackers' first flows (window into the batch before) / rest |",
             "|---|---:|---:|---:|---|---:|---:|" + "---:|" * len(ks) + "---|"]
    status = ("current before", "promoted" if result.promoted else "candidate, rejected")
    lines += [f"| {v} ({s}) | {r['fp_flows']} of {r['flows']} | {r['incidents']} | {r['recall']:.4f} | "
              f"{r['missed']} | {r['attackers']} | {r['attack_fp']} of {r['attack_benign']} | "
              + " | ".join(f"{_recall_at(r['scores'], r['is_attack'], k):.4f}" for k in ks) + f" | {r['edge']} |"
              for v, s, r in zip((before, after), status, rows, strict=True)]
    emit("\n".join(lines), args.out)
    return 0


def _refresh(args: argparse.Namespace, registry, before: str):
    """The refresh on the verdict view of the lake: the novelty model's or the supervised one's."""
    from flowhawk.model.novelty_lifecycle import refresh_baseline
    from flowhawk.model.refresh import RefreshConfig, refresh_model
    from flowhawk.reports.verdict_lake import VerdictLabelledLake

    view = VerdictLabelledLake(args.lake)
    if args.kind == "novelty":
        config = registry.load(before).config
        weight = 20 if args.verdict_weight is None else args.verdict_weight
        result = refresh_baseline(view, registry, config, [args.fp_batch], seed=args.salt, verdict_weight=weight,
                                  push=args.push)
        return result, (f"novelty refresh, verdict_weight {weight}, push {args.push:g}, seed {args.salt}, "
                        f"{config.epochs} epochs")
    options = {} if args.verdict_weight is None else {"verdict_weight": args.verdict_weight}
    if args.contrast_rows is not None:
        options["contrast_rows"] = args.contrast_rows
    config = RefreshConfig(epochs=args.epochs, salt=args.salt, **options)
    result = refresh_model(registry, view, [args.fp_batch], config)
    return result, (f"verdict_weight {config.verdict_weight}, contrast_rows {config.contrast_rows}, "
                    f"salt {config.salt}, {config.epochs} epochs")


def _scored(trained, lake, batch, history):
    """(flows, scores) of ``batch``, with the hosts' earlier lake flows as context when ``history`` (as
    ``process_inbox`` scores a batch); a novelty model's scores go through ``combine_scores`` as in a report."""
    from flowhawk.model.novelty import score_novelty
    from flowhawk.model.novelty_lifecycle import batch_context
    from flowhawk.model.novelty_store import TrainedNovelty
    from flowhawk.model.scoring import score_frame
    from flowhawk.reports.combine import combine_scores

    flows = lake.read_flows([batch])
    novelty = isinstance(trained, TrainedNovelty)
    context = batch_context(lake, [batch], flows, _window(trained)) if history else None
    if novelty:
        return flows, combine_scores(len(flows), None, score_novelty(trained, flows, context=context))
    return flows, score_frame(trained, flows, context=context)


def _score(registry, lake, version, batch, history, analyse_batch, write_scored_report, score_meta):
    """Score and report ``batch``; its incidents, and the ids of those holding a flow labelled attack."""
    trained = registry.load(version)
    flows, scores = _scored(trained, lake, batch, history)
    analyst = analyse_batch(lake.root, batch, flows, scores, version)
    write_scored_report(lake.reports_dir, batch, flows, scores,
                        score_meta(model_version=version, threshold=trained.threshold), analyst=analyst)
    ids = analyst.columns["incident_id"].to_numpy()
    attack = flows["Label"].fillna(0).to_numpy() == 1
    return analyst.incidents, {i for i in ids[attack] if isinstance(i, str)}


def _mark(store, incidents, labelled: set, how: str) -> None:
    """Verdicts on every incident: false positive, or confirmed for those with attack flows (``--mark labelled``)."""
    for incident_id in incidents["incident_id"] if how != "none" else []:
        if how == "labelled" and incident_id in labelled:
            store.add_verdict("incident", incident_id, "confirmed", "bench_verdicts", note="labelled attack")
        else:
            store.add_verdict("incident", incident_id, "false_positive", "bench_verdicts", note="labelled benign")


def _measure(registry, lake, version, next_batch, attack_batch, history) -> dict:
    from flowhawk.reports.analyst_config import AnalystConfig
    from flowhawk.reports.incidents import assign_incidents

    trained = registry.load(version)
    nxt, s = _scored(trained, lake, next_batch, history)
    frame = nxt.assign(**{c: s[c].to_numpy() for c in s.columns})
    attack, a = _scored(trained, lake, attack_batch, history)
    is_attack = attack["Label"].to_numpy() == 1
    flagged = a["is_anomaly"].to_numpy()
    benign = nxt["Label"].fillna(0).to_numpy() != 1  # a batch ingested without labels: every flow
    return {"flows": int(benign.sum()), "fp_flows": int(s["is_anomaly"].to_numpy()[benign].sum()),
            "incidents": int(assign_incidents(frame, next_batch, AnalystConfig()).dropna().nunique()),
            "recall": float(flagged[is_attack].mean()), "attack_fp": int(flagged[~is_attack].sum()),
            "missed": _missed(attack.loc[is_attack & ~flagged, "Attack"]),
            "attackers": _attackers(attack[is_attack], flagged[is_attack]),
            "attack_benign": int((~is_attack).sum()), "scores": a["score"].to_numpy(dtype=float),
            "is_attack": is_attack, "edge": _edge_recall(attack, is_attack, flagged, _window(trained))}


def _window(trained) -> int:
    from flowhawk.model.novelty_store import TrainedNovelty

    return trained.config.window if isinstance(trained, TrainedNovelty) else trained.train_config.window


def _edge_recall(flows, is_attack, flagged, window: int) -> str:
    """Recall on the attack flows among their source host's first ``window - 1`` flows of the batch (time order),
    whose windows reach back into the flows of the batch before (the context), and on the rest: "caught of all"
    for each. Where a refresh loses recall on the lab, this tells whether it is at the batch boundary."""
    from flowhawk.model.windows import build_window_index

    position = build_window_index(flows, window=1).depth  # each flow's place among its host's flows, in time
    edge = is_attack & (position < window - 1)
    rest = is_attack & ~edge
    return f"{int(flagged[edge].sum())} of {int(edge.sum())} / {int(flagged[rest].sum())} of {int(rest.sum())}"


def _recall_at(scores, is_attack, k: int) -> float:
    """Recall on the attack flows when the alert level is set so that ``k`` benign flows alert: the model's
    ranking compared at a false-alert count fixed for both models (from the labels: a measurement, not a
    threshold a deployment could choose). Ties with the (k+1)-th benign score count as missed."""
    benign = np.sort(scores[~is_attack])[::-1]
    level = benign[k] if k < len(benign) else -np.inf
    return float((scores[is_attack] > level).mean())


def _attackers(attack, flagged) -> str:
    """Attackers (source address and attack kind) with at least one alerting flow, of all."""
    alerted = attack.assign(alert=flagged).groupby(["IPV4_SRC_ADDR", "Attack"])["alert"].any()
    return f"{int(alerted.sum())} of {len(alerted)}"


def _missed(kinds) -> str:
    counts = kinds.value_counts()
    return ", ".join(f"{k} {n}" for k, n in counts.items()) + f" ({counts.sum()})" if len(counts) else "0"


if __name__ == "__main__":
    raise SystemExit(main())
