"""The novelty model's one-sided baseline rules, applied to a scored batch: inbound floods
(``model.novelty_inbound``) and volume (``model.novelty_volume``).

A reconstruction error is two-sided and averaged over every feature; each rule tests one thing the baseline
bounds from one side. Where a rule hits, the flow is anomalous, its tail probability at most the rule's bound, and
its explanation is led by the rule's entry (observed vs the baseline's maximum); a network entry naming the same
feature is then dropped, so no feature is listed twice. Models saved before a rule existed have None for it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from flowhawk.model.novelty_inbound import inbound_entry
from flowhawk.model.novelty_store import TrainedNovelty

log = logging.getLogger(__name__)


@dataclass
class RuleHits:
    """Per flow: the tail probability bounded where a rule hits, each rule's hits, and per hit row the JSON entries
    (joined) that lead its explanation."""

    p: np.ndarray
    inbound: np.ndarray
    volume: np.ndarray
    leads: dict[int, str]

    @property
    def any(self) -> np.ndarray:
        return self.inbound | self.volume


def apply_rules(trained: TrainedNovelty, frame: pd.DataFrame, p: np.ndarray) -> RuleHits:
    """The model's rules on ``frame`` (in its row order), ``p`` its flows' tail probabilities."""
    n = len(frame)
    hits = RuleHits(p=p, inbound=np.zeros(n, dtype=bool), volume=np.zeros(n, dtype=bool), leads={})
    if trained.inbound is not None:
        hits.inbound, sources = trained.inbound.hits(frame)
        hits.p = np.where(hits.inbound, np.minimum(hits.p, trained.inbound.tail_bound), hits.p)
        hits.leads = {at: inbound_entry(int(sources[at]), trained.inbound)
                      for at in np.flatnonzero(hits.inbound).tolist()}
        if hits.inbound.any():
            log.info("novelty: %d flows to destinations hearing > %d sources per %gs bin (inbound-flood rule)",
                     int(hits.inbound.sum()), trained.inbound.limit, trained.inbound.bin_s)
    if trained.volume is not None:
        hits.volume, entries = trained.volume.hits(frame)
        hits.p = np.where(hits.volume, np.minimum(hits.p, trained.volume.tail_bound), hits.p)
        for at in np.flatnonzero(hits.volume).tolist():
            hits.leads[at] = hits.leads[at] + ", " + entries[at] if at in hits.leads else entries[at]
        if hits.volume.any():
            log.info("novelty: %d flows past %g x their protocol's largest baseline flow (volume rule)",
                     int(hits.volume.sum()), trained.volume.factor)
    return hits


def lead_explanations(explanations: np.ndarray, hits: RuleHits, wanted: np.ndarray) -> None:
    """Put each explained hit's rule entries first in ``explanations`` (JSON text per row, edited in place)."""
    for at in [at for at in hits.leads if wanted[at]]:  # string edits: ~1 ms per 1,000 hits
        lead, rest = hits.leads[at], explanations[at][1:-1]
        if hits.volume[at] and rest:  # a volume entry names a flow field the network may list too
            named = {e["feature"] for e in json.loads("[" + lead + "]")}
            rest = ", ".join(json.dumps(e) for e in json.loads(explanations[at]) if e["feature"] not in named)
        explanations[at] = "[" + lead + (", " + rest if rest else "") + "]"
