"""The label-free lifecycle: the first batches build a baseline, then the novelty model is trained and scores.

- Novelty models live in their own registry, ``<models>/novelty/`` (same guarantees as the supervised one:
  versions by rename, checked manifests, an atomically switched ``current``, promote / rollback), so a
  supervised and a novelty model can both be current.
- ``ensure_baseline``: while no novelty model is current, every ingested flow counts towards the baseline; once
  the lake holds ``min_flows`` flows (all batches, labels never read) the model is trained on them with the
  poisoning guard (``model.novelty_guard``) and made current. Until then the caller reports "baselining".
- ``train_baseline``: the same on chosen batches (``flowhawk baseline``).
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

from flowhawk.common.files import exclusive_lock
from flowhawk.lake.store import Lake
from flowhawk.model.novelty_config import NoveltyConfig
from flowhawk.model.novelty_guard import GuardConfig, train_guarded
from flowhawk.model.novelty_store import TrainedNovelty
from flowhawk.model.registry import Registry, data_manifest

NOVELTY_FOLDER = "novelty"
BASELINE_LOCK = ".baseline.lock"
DEFAULT_BASELINE_FLOWS = 1000
DRIFT_REFRESH = 0.25


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
        raise ValueError(f"{lake.root}: no batches to learn a baseline from (ingest captures first)")
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
