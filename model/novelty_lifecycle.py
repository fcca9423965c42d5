"""The label-free lifecycle: the first batches build a baseline, then the novelty model is trained and scores.

- Novelty models live in their own registry, ``<models>/novelty/`` (same guarantees as the supervised one:
  versions by rename, checked manifests, an atomically switched ``current``, promote / rollback), so a
  supervised and a novelty model can both be current.
- ``ensure_baseline``: while no novelty model is current, every ingested flow counts towards the baseline; once
  the lake holds ``min_flows`` flows (all batches, labels never read) the model is trained on them with the
  poisoning guard (``model.novelty_guard``) and made current. Until then the caller reports "baselining".
- ``train_baseline``: the same on chosen batches (``flowhawk baseline``).
- ``refresh_baseline``: keeps the baseline current on new unlabelled batches: a bounded replay of the old
  baseline, flows and hosts the current model flags left out (poisoning guard), and promotion only when the
  candidate raises no more false alerts on held-out old baseline flows (``flowhawk baseline --refresh``).
- ``batch_context``: the earlier flows a batch's windows reach back to (``score_novelty(context=...)``): each of
  its hosts' last flows from the lake batches before it, so a host's first flows of a batch are scored as in one
  continuous stream, as the calibration scored the baseline's held-out flows; less the connections the batch
  continues (``continued_in``), whose fragments in the batch stand for them.
- ``drift``: how far a batch departs from the baseline, from its flows' tail probabilities. For traffic like the
  baseline the tail probability of a flow is close to uniform on [0, 1]; the Kolmogorov-Smirnov distance between
  the batch's tail probabilities and the uniform law is the drift (0 = like the baseline, 1 = nothing alike).
  Above ``DRIFT_REFRESH`` (0.25) a refresh of the baseline is recommended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flowhawk.common.files import exclusive_lock
from flowhawk.lake.store import Lake, batch_order
from flowhawk.model.features import column_floats
from flowhawk.model.host_features import SYN
from flowhawk.model.novelty import Teaching, context_depth, score_novelty, train_novelty
from flowhawk.model.novelty_config import NoveltyConfig
from flowhawk.model.novelty_guard import GuardConfig, train_guarded
from flowhawk.model.novelty_store import TrainedNovelty
from flowhawk.model.registry import Registry, data_manifest
from flowhawk.model.verdict_source import flows_with_verdicts
from flowhawk.model.windows import SOURCE_COLUMN, time_key

NOVELTY_FOLDER = "novelty"
BASELINE_LOCK = ".baseline.lock"
DEFAULT_BASELINE_FLOWS = 1000
DRIFT_REFRESH = 0.25
TCP = 6  # IP protocol number


def novelty_registry(models: Path | str) -> Registry:
    """The registry of novelty models, inside the models folder."""
    return Registry(Path(models) / NOVELTY_FOLDER)


@dataclass
class BaselineOutcome:
    """A baseline's state: the batches and flows it holds; ``version`` once a model was trained on them."""

    batches: list[str]
    flows: int
    version: str | None = None
    trained: TrainedNovelty | None = None
    guard: dict[str, Any] = field(default_factory=dict)


def lake_flows(lake: Lake, batches: list[str]) -> int:
    """Flows in ``batches`` (from the manifests, no data read)."""
    return sum(int(lake.batch_manifest(b).get("rows") or 0) for b in batches)


def train_baseline(lake: Lake, registry: Registry, config: NoveltyConfig, guard: GuardConfig,
                   batches: list[str] | None = None, promote: bool = True) -> BaselineOutcome:
    """Train a novelty model on ``batches`` (default: all) with the poisoning guard; save it, promote it."""
    batches = list(batches) if batches else lake.batches()
    if not batches:
        raise ValueError(f"{lake.location}: no batches to learn a baseline from (ingest captures first)")
    frame = lake.read_flows(batches)
    trained, report, _ = train_guarded(frame, config, guard)
    reason = (f"baseline of {len(batches)} batch(es), {len(frame)} flows; guard left out "
              f"{report['rows'] - report['kept']} flows")
    version = registry.save(trained, data=data_manifest(lake, batches, guard=report),
                            status="promoted" if promote else "candidate", reason=reason)
    if promote:
        registry.promote(version, reason="baseline")
    return BaselineOutcome(batches, len(frame), version, trained, report)


def ensure_baseline(lake: Lake, registry: Registry, config: NoveltyConfig, guard: GuardConfig,
                    min_flows: int = DEFAULT_BASELINE_FLOWS) -> BaselineOutcome | None:
    """None when a novelty model is current; else the baseline so far, trained (``version`` set) once it holds
    ``min_flows`` flows. Decided under a lock in the novelty registry, so concurrent runs train once."""
    if min_flows < 1:
        raise ValueError(f"min_flows: must be >= 1, got {min_flows}")
    with exclusive_lock(registry.root / BASELINE_LOCK):
        if registry.current() is not None:
            return None
        batches = lake.batches()
        flows = lake_flows(lake, batches)
        if flows < min_flows:
            return BaselineOutcome(batches, flows)
        return train_baseline(lake, registry, config, guard, batches)


def batch_context(lake: Lake, batches: list[str], frame: pd.DataFrame, window: int, max_batches: int = 4
                  ) -> pd.DataFrame | None:
    """Flows of ``frame``'s source hosts from other lake batches (``history_batches``, most recent first), read
    until every host has ``context_depth(window)`` of them or ``max_batches`` were read; None when there are
    none. The scorers keep each host's last flows of them that start before its first flow of ``frame``. A
    connection that ``frame`` continues (``continued_in``) is left out: its fragment in ``frame`` stands for it."""
    if max_batches < 0:
        raise ValueError(f"batch_context: max_batches must be >= 0, got {max_batches}")
    if SOURCE_COLUMN not in frame.columns:
        return None
    hosts = set(frame[SOURCE_COLUMN].dropna().astype(str))
    counts = dict.fromkeys(hosts, 0)
    parts: list[pd.DataFrame] = []
    for batch in history_batches(lake, batches, frame)[:max_batches]:
        if min(counts.values(), default=context_depth(window)) >= context_depth(window):
            break
        flows = lake.read_flows([batch])
        flows = flows[flows[SOURCE_COLUMN].astype(str).isin(hosts).to_numpy() & ~continued_in(flows, frame)]
        for host, n in flows[SOURCE_COLUMN].astype(str).value_counts().items():
            counts[host] += int(n)
        parts.insert(0, flows)
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else None


def continued_in(flows: pd.DataFrame, frame: pd.DataFrame) -> np.ndarray:
    """Bool per row of ``flows``: a TCP connection that ``frame`` continues, i.e. ``frame`` holds a TCP flow
    without a SYN and with the same Community ID (the capture was cut mid-connection, as a rotated capture is).
    As history of ``frame`` such a flow counts its connection twice in the host's window, and its early start
    stretches the window's time span: on the lab capture cut in two, the slowloris host's rate read 0.75 flows/s
    instead of 15,000 in its first 15 windows of the second half, and most of those flows were missed
    (benchmarks/results/analyst.md)."""
    if "community_id" not in flows.columns or "community_id" not in frame.columns:
        return np.zeros(len(flows), dtype=bool)
    flags = column_floats(frame, "TCP_FLAGS")
    bits = np.where(np.isfinite(flags), flags, SYN).astype(np.int64)  # no flags: never a fragment
    fragment = (column_floats(frame, "PROTOCOL") == TCP) & ((bits & SYN) == 0)
    ids = set(frame.loc[fragment, "community_id"].dropna().astype(str))
    tcp = column_floats(flows, "PROTOCOL") == TCP
    return tcp & flows["community_id"].astype("string").isin(ids).fillna(False).to_numpy(dtype=bool)


def history_batches(lake: Lake, batches: list[str], frame: pd.DataFrame) -> list[str]:
    """The lake batches that may hold earlier flows of ``frame`` (the flows of ``batches``), most recent first.

    By flow times when the lake's manifests have them (``flow_start_ms``, written at ingest) for every other
    batch and ``frame`` has times: the batches whose first flow starts no later than ``frame``'s last, ordered by
    their last flow, newest first. Ingest order then does not matter (parallel ingests, as in ``backfill``,
    commit in any order; a capture ingested late may still be history). Otherwise (lakes written before, flows
    without times) the batches before the first of ``batches`` in lake order, newest first."""
    manifests = lake.manifests()
    order = batch_order(manifests)
    known = [order.index(b) for b in batches if b in order]
    if not known:
        return []
    own = set(batches)
    ranges = {b: manifests[b].get("flow_start_ms") for b in order if b not in own}
    times = time_key(frame)
    if times is None or not all(ranges.values()):
        return order[:min(known)][::-1]
    end = float(np.max(times))
    usable = [b for b, r in ranges.items() if r[0] <= end]
    return sorted(usable, key=lambda b: (ranges[b][1], b), reverse=True)


def drift(novelty_p: np.ndarray) -> dict[str, Any]:
    """KS distance of a batch's tail probabilities from the uniform law (see the module doc)."""
    p = np.sort(np.asarray(novelty_p, dtype=np.float64)[np.isfinite(novelty_p)])
    if not len(p):
        return {"ks": None, "flows": 0, "refresh_recommended": False}
    n = len(p)
    upper = np.arange(1, n + 1) / n - p
    lower = p - np.arange(0, n) / n
    ks = float(max(upper.max(), lower.max(), 0.0))
    return {"ks": round(ks, 4), "flows": n, "refresh_recommended": ks > DRIFT_REFRESH,
            "rule": f"KS distance of tail probabilities from uniform; refresh recommended above {DRIFT_REFRESH}"}


@dataclass
class BaselineRefresh:
    """A refresh of the novelty model on new unlabelled batches: the candidate, the decision and its figures.

    ``verdicts`` (when analysts' verdicts cover new flows): how many flows are marked false positive / confirmed,
    and how many of each the current model and the candidate flag."""

    version: str
    parent: str
    promoted: bool
    reason: str
    new_batches: list[str]
    sizes: dict[str, int]
    false_alerts: dict[str, float]
    verdicts: dict[str, int] = field(default_factory=dict)


def refresh_baseline(lake: Lake, registry: Registry, config: NoveltyConfig, new_batches: list[str] | None = None,
                     replay_rows: int = 20_000, holdout: float = 0.2, seed: int = 0, verdict_weight: int = 20,
                     push: float = 1.0) -> BaselineRefresh:
    """Keep the baseline current: train a candidate on the new batches plus a bounded replay of the old
    baseline, and promote it only if it raises no more false alerts on held-out old baseline flows.

    Poisoning guard: new flows the current model flags, and every flow of a host with half or more of its new
    flows flagged, are left out. Replay: at most ``replay_rows`` old baseline flows (seeded); ``holdout`` of the
    old flows are never trained on and judge both models, each flow scored in its place among the old flows
    (``_held_out_rate``). Promotion: the candidate's false-alert rate there must
    not exceed the current model's by more than the budget (``config.budget``).

    Verdicts (``lake`` a ``model.verdict_source.VerdictSource``, e.g. ``reports.verdict_lake.VerdictLabelledLake``):
    a flow marked false positive is normal by the analyst's word, so it is kept whatever the guard says, drawn
    ``verdict_weight`` times per epoch (within ``model.novelty.VERDICT_SHARE``) and never calibrated on; a flow
    marked confirmed is never learnt as normal: it stays only as its host's window context, and (``push`` > 0) the
    candidate is trained to give it an error above ``push`` times the current model's threshold
    (``model.novelty.Teaching``; 1: the alert level the analyst saw it at). The candidate must then flag no more
    of the false positives and no fewer of the confirmed flows than the current model."""
    current = registry.require_current()
    model = registry.load(current)
    old_batches = [b["batch_id"] for b in registry.show(current)["data"].get("batches", [])]
    new_batches = list(new_batches) if new_batches else [b for b in lake.batches() if b not in set(old_batches)]
    if not new_batches:
        raise ValueError(f"{lake.location}: no batches new to the baseline {current}")
    new = lake.read_flows(new_batches)
    flagged = score_novelty(model, new, explain="none")["is_anomaly"].to_numpy(dtype=bool)
    false_positive, confirmed = _verdict_marks(lake, new)
    keep = (_guarded(new, flagged & ~false_positive) | false_positive) & ~confirmed
    old = lake.read_flows([b for b in old_batches if b not in set(new_batches)])
    rng = np.random.default_rng(seed)
    held = rng.random(len(old)) < holdout
    replay = _replay(old[~held], replay_rows, rng)
    learnt = keep | confirmed  # confirmed flows stay as their hosts' context, never learnt as normal
    none = np.zeros(len(replay), bool)
    teach = Teaching(np.concatenate([none, false_positive[learnt]]), np.concatenate([none, confirmed[learnt]]),
                     verdict_weight, push * model.calibration.threshold)
    candidate = train_novelty(pd.concat([replay, new[learnt]], ignore_index=True), config, teach)
    rates = {name: _held_out_rate(m, old, held) for name, m in (("current", model), ("candidate", candidate))}
    promote = rates["candidate"] <= rates["current"] + config.budget
    reason = (f"false alerts on {int(held.sum())} held-out old baseline flows: candidate {rates['candidate']:.4f}, "
              f"current {rates['current']:.4f} (allowed +{config.budget:g})")
    verdicts: dict[str, int] = {}
    if false_positive.any() or confirmed.any():
        verdicts, ok, why = _verdict_check(candidate, new, flagged, false_positive, confirmed)
        promote, reason = promote and ok, f"{reason}; {why}"
    sizes = {"new": len(new), "new_left_out": int((~keep).sum()), "replay": len(replay), "held_out": int(held.sum()),
             "taught": int(teach.false_positive.sum()), "confirmed": int(teach.confirmed.sum())}
    version = registry.save(candidate, data=data_manifest(lake, old_batches + new_batches, refresh=sizes,
                                                          verdicts=verdicts),
                            status="promoted" if promote else "candidate", reason=reason, parent=current)
    if promote:
        registry.promote(version, reason="baseline refresh")
    return BaselineRefresh(version, current, promote, reason, new_batches, sizes, rates, verdicts)


def _held_out_rate(model: TrainedNovelty, old: pd.DataFrame, held: np.ndarray) -> float:
    """Share of the ``held`` old baseline flows ``model`` flags, each scored in its place in the old baseline (its
    window the host's flows around it, as a deployment saw them): scored on their own, a random fifth of the
    flows made windows five times sparser than any the models learnt, and the guard compared the models on traffic
    neither was calibrated for (benchmarks/results/analyst.md)."""
    if not held.any():
        return 0.0
    return float(score_novelty(model, old, explain="none")["is_anomaly"].to_numpy()[held].mean())


def _replay(old: pd.DataFrame, rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """At most ``rows`` of the old baseline flows, a sorted random subset (time order kept)."""
    return old if len(old) <= rows else old.iloc[np.sort(rng.choice(len(old), rows, replace=False))]


def _guarded(new: pd.DataFrame, flagged: np.ndarray) -> np.ndarray:
    """The poisoning guard: bool per row of ``new``, False for flagged flows and for every flow of a host with
    half or more of its flows flagged."""
    hosts = new[SOURCE_COLUMN].astype("string").fillna("")
    share = pd.Series(flagged).groupby(hosts.to_numpy()).mean()
    return ~flagged & ~hosts.isin(set(share[share >= 0.5].index)).to_numpy()


def _verdict_marks(lake: Lake, new: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Bool per row of ``new``: marked false positive by a verdict; marked confirmed."""
    marked = flows_with_verdicts(lake, new)
    if marked is None or not marked.any():
        return np.zeros(len(new), bool), np.zeros(len(new), bool)
    label = pd.to_numeric(new["Label"], errors="coerce").fillna(0).to_numpy()
    return marked & (label == 0), marked & (label != 0)


def _verdict_check(candidate: TrainedNovelty, new: pd.DataFrame, flagged: np.ndarray, false_positive: np.ndarray,
                   confirmed: np.ndarray) -> tuple[dict[str, int], bool, str]:
    """The verdict term of the promotion: the candidate flags no more of the flows marked false positive and no
    fewer of those marked confirmed than the current model (``flagged``), new flows scored alike."""
    again = score_novelty(candidate, new, explain="none")["is_anomaly"].to_numpy(dtype=bool)
    counts = {"false_positive": int(false_positive.sum()), "confirmed": int(confirmed.sum()),
              "false_positive_flagged_current": int((flagged & false_positive).sum()),
              "false_positive_flagged_candidate": int((again & false_positive).sum()),
              "confirmed_flagged_current": int((flagged & confirmed).sum()),
              "confirmed_flagged_candidate": int((again & confirmed).sum())}
    ok = (counts["false_positive_flagged_candidate"] <= counts["false_positive_flagged_current"]
          and counts["confirmed_flagged_candidate"] >= counts["confirmed_flagged_current"])
    why = (f"flows marked false positive still flagged: candidate {counts['false_positive_flagged_candidate']}, "
           f"current {counts['false_positive_flagged_current']} of {counts['false_positive']}; confirmed flagged: "
           f"candidate {counts['confirmed_flagged_candidate']}, current {counts['confirmed_flagged_current']} of "
           f"{counts['confirmed']}")
    return counts, ok, why


def maybe_refresh_baseline(lake: Lake, registry: Registry, config: NoveltyConfig, after_batches: int,
                           drifted: bool = False) -> BaselineRefresh | None:
    """The inbox's rule: refresh the current novelty model once ``after_batches`` lake batches are new to it (and
    to the candidates already tried from it, so a rejected candidate is not retried on the same batches), or as
    soon as one is when a batch ``drifted`` (``drift``: refresh recommended). None when it is not time, or when
    there is no novelty model or ``after_batches`` is 0 (automatic refresh off)."""
    if after_batches < 1 or registry.current() is None:
        return None
    new = registry.batches_new_to_current(lake.batches())
    if not new or (len(new) < after_batches and not drifted):
        return None
    return refresh_baseline(lake, registry, config, new)
