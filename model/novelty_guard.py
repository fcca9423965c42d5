"""Poisoning guard for novelty baselines: leave out the flows and hosts a first model finds anomalous, retrain.

A baseline that already holds attacks teaches the model that they are normal. ``train_guarded`` trains once on
the whole baseline, scores the baseline with that model, leaves out every flow whose log-error lies more than
``z`` robust standard deviations (1.4826 * MAD) above the median, and every flow of a source host with at least
``host_share`` of its flows left out, and trains the final model on what remains (``rounds`` times). Median and
MAD, not the calibration: attacks in the baseline also sit in its calibration holdout and lift the tail fitted
there. The report says what was left out. Labels are never read.

Limit (measured, benchmarks/results/novelty.md): contamination the network learns to reconstruct (a regular
synthesised port scan making up 5 % of a baseline was reconstructed *better* than the benign flows) scores low and
stays in; the guard removes what the first model finds odd, not what it has learned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from flowhawk.model.calibration import EPS
from flowhawk.model.novelty import score_novelty, train_novelty
from flowhawk.model.novelty_config import NoveltyConfig, check_range
from flowhawk.model.novelty_store import TrainedNovelty
from flowhawk.model.windows import SOURCE_COLUMN


@dataclass(frozen=True)
class GuardConfig:
    """Leave out flows ``z`` robust SDs out, hosts with ``host_share`` left out; stop below ``min_kept_share``."""

    z: float = 4.0
    host_share: float = 0.5
    rounds: int = 1
    min_kept_share: float = 0.3

    def __post_init__(self) -> None:
        for name, lo, hi in (("z", 1.0, 100.0), ("host_share", 0.01, 1.0), ("min_kept_share", 0.0, 1.0)):
            check_range("GuardConfig", name, getattr(self, name), lo, hi)
        check_range("GuardConfig", "rounds", self.rounds, 1, 5, integer=True)


def suspicious(frame: pd.DataFrame, errors: np.ndarray, guard: GuardConfig) -> tuple[np.ndarray, list[str]]:
    """(rows to leave out as a bool mask, hosts left out whole) from the flows' novelty errors."""
    logs = np.log(np.maximum(np.asarray(errors, dtype=np.float64), 0.0) + EPS)
    median = np.median(logs)
    spread = max(1.4826 * float(np.median(np.abs(logs - median))), 1e-6)
    flagged = (logs - median) / spread > guard.z
    if SOURCE_COLUMN not in frame.columns:
        return flagged, []
    hosts = frame[SOURCE_COLUMN].astype("string").fillna("")
    share = pd.Series(flagged, index=frame.index).groupby(hosts.to_numpy()).mean()
    bad = sorted(str(h) for h in share[share >= guard.host_share].index if h)
    return flagged | hosts.isin(bad).to_numpy(), bad


def train_guarded(frame: pd.DataFrame, config: NoveltyConfig | None = None, guard: GuardConfig | None = None
                  ) -> tuple[TrainedNovelty, dict[str, Any], np.ndarray]:
    """Train on ``frame`` with the poisoning guard: the model, what each round left out, and the kept rows (bool
    per row of ``frame``)."""
    config, guard = config or NoveltyConfig(), guard or GuardConfig()
    trained = train_novelty(frame, config)
    keep = np.ones(len(frame), dtype=bool)
    rounds = []
    for _ in range(guard.rounds):
        errors = score_novelty(trained, frame, explain="none")["novelty_error"].to_numpy()
        drop, hosts = suspicious(frame, errors, guard)
        kept = keep & ~drop
        entry = {"left_out_flows": int((keep & drop).sum()), "hosts": hosts}
        if kept.sum() == keep.sum():
            break
        if kept.mean() < guard.min_kept_share:
            rounds.append({**entry, "stopped": f"fewer than {guard.min_kept_share:.0%} of the flows would remain"})
            break
        rounds.append(entry)
        keep = kept
        trained = train_novelty(frame[keep], config)
    report = {"rows": len(frame), "kept": int(keep.sum()), "rounds": rounds}
    trained.metrics["guard"] = report
    return trained, report, keep
