"""Score calibration against a baseline's own score distribution: tail probabilities and a false-alert budget.

``TailCalibration.fit(reference_scores, budget, tail_fraction)`` takes the scores of held-out baseline flows
(benign-like by construction). A score's tail probability is the share of baseline flows expected to score at
least as high:

- in the body (below the ``1 - tail_fraction`` quantile of the reference) the empirical survival function;
- beyond it, peaks over threshold with an exponential tail on log-scores (a Pareto tail on the scores, which
  decays slower than a normal or exponential one, so it is the cautious choice): ``p(s) = tail_fraction *
  exp(-(log s - u) / beta)`` with ``u`` the log of that quantile and ``beta`` the mean excess of log-scores over
  ``u``. This extrapolates beyond the largest reference score, so a 1-per-1,000 budget is meaningful with a few
  hundred reference flows.
- where the tail starts is checked, not assumed: ``tail_fraction`` is the largest share tried. A tail that
  expects more than ln 20 (about 3) reference scores above the largest one (seeing none then has probability
  < 5 %) is refuted by the reference itself; the share is then halved while ``MIN_EXCESSES`` scores remain above
  it. The check is one-sided: it acts only on a tail that predicts more extremes than the reference holds. A start
  too low in the body makes beta measure the body's spread, not the tail's decay: on a reference mixing a quiet
  host with a noisy one (IoT-23), the top 10 % is the noisy host's body and the threshold landed 3-4x above the
  largest reference score (benchmarks/results/novelty.md).

The alert threshold is the score whose tail probability equals ``budget``: with benign-like traffic,
``budget`` alerts per flow are expected. ``to_dict``/``from_dict`` give plain JSON (the body is kept as at most
``MAX_QUANTILES`` reference quantiles).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

EPS = 1e-9
MAX_QUANTILES = 1001
MIN_EXCESSES = 20
MAX_EXPECTED_ABOVE = float(np.log(20.0))  # the tail may expect this many reference scores above the largest (5 %)


def _tail(logs: np.ndarray, fraction: float) -> tuple[float, float]:
    """(u, beta) of the exponential tail on sorted log-scores from their top ``fraction``."""
    u = float(np.quantile(logs, 1.0 - fraction))
    excess = logs[logs > u] - u
    return u, max(float(excess.mean()) if len(excess) else 0.0, 1e-3)


def expected_above_max(logs: np.ndarray, fraction: float) -> float:
    """How many of the sorted log-scores the tail fitted from the top ``fraction`` expects above the largest."""
    u, beta = _tail(logs, fraction)
    return len(logs) * fraction * float(np.exp(-max(float(logs[-1]) - u, 0.0) / beta))


def tail_start(logs: np.ndarray, tail_fraction: float) -> float:
    """The largest share of tail_fraction, /2, /4, ... (>= MIN_EXCESSES scores above it) whose fitted tail is
    consistent with the largest score (expects at most MAX_EXPECTED_ABOVE above it); the smallest tried if none."""
    fraction = tail_fraction
    while expected_above_max(logs, fraction) > MAX_EXPECTED_ABOVE and len(logs) * fraction / 2 >= MIN_EXCESSES:
        fraction /= 2
    return fraction


@dataclass(frozen=True)
class TailCalibration:
    quantiles: tuple[float, ...]  # log-scores of the reference at evenly spaced probabilities 0..1
    u: float  # log-score where the tail starts
    beta: float  # mean excess of the reference's log-scores above u
    tail_fraction: float
    budget: float
    n_reference: int

    def __post_init__(self) -> None:
        if len(self.quantiles) < 2 or not np.all(np.diff(self.quantiles) >= 0):
            raise ValueError("TailCalibration.quantiles: need >= 2 non-decreasing values")
        if not (0.0 < self.tail_fraction < 1.0 and 0.0 < self.budget < 1.0 and self.beta > 0.0):
            raise ValueError(f"TailCalibration: tail_fraction, budget in (0, 1) and beta > 0, got "
                             f"{self.tail_fraction}, {self.budget}, {self.beta}")

    @classmethod
    def fit(cls, scores: np.ndarray, budget: float, tail_fraction: float = 0.1, min_reference: int = 20,
            test_tail: bool = True) -> TailCalibration:
        """Fit on reference scores; ``test_tail=False`` keeps the tail start at ``tail_fraction`` untested (the
        behaviour before the test, for comparisons)."""
        scores = np.asarray(scores, dtype=np.float64)
        scores = scores[np.isfinite(scores)]
        if len(scores) < min_reference:
            raise ValueError(f"TailCalibration.fit: {len(scores)} reference scores, need >= {min_reference}")
        logs = np.sort(np.log(np.maximum(scores, 0.0) + EPS))
        tail_fraction = tail_start(logs, tail_fraction) if test_tail else tail_fraction
        u, beta = _tail(logs, tail_fraction)
        quantiles = np.quantile(logs, np.linspace(0.0, 1.0, min(MAX_QUANTILES, len(logs))))
        return cls(tuple(float(q) for q in quantiles), u, beta, float(tail_fraction), float(budget), len(logs))

    def tail_probability(self, scores: np.ndarray) -> np.ndarray:
        """Per score, in [0, 1]: the share of baseline flows expected to score at least as high."""
        logs = np.log(np.maximum(np.asarray(scores, dtype=np.float64), 0.0) + EPS)
        q = np.asarray(self.quantiles)
        body = 1.0 - np.searchsorted(q, logs, side="left") / len(q)
        body = np.maximum(body, self.tail_fraction)
        tail = self.tail_fraction * np.exp(-np.maximum(logs - self.u, 0.0) / self.beta)
        return np.clip(np.where(logs > self.u, tail, body), 0.0, 1.0)

    @property
    def threshold(self) -> float:
        """The score whose tail probability is ``budget`` (flows scoring at or above it are alerts)."""
        if self.budget >= self.tail_fraction:
            log_t = float(np.quantile(np.asarray(self.quantiles), 1.0 - self.budget))
        else:
            log_t = self.u + self.beta * float(np.log(self.tail_fraction / self.budget))
        return float(np.exp(log_t) - EPS)

    def with_budget(self, budget: float) -> TailCalibration:
        return TailCalibration(self.quantiles, self.u, self.beta, self.tail_fraction, float(budget),
                               self.n_reference)

    def to_dict(self) -> dict[str, Any]:
        return {"method": "pot-log-exponential", "quantiles": list(self.quantiles), "u": self.u, "beta": self.beta,
                "tail_fraction": self.tail_fraction, "budget": self.budget, "n_reference": self.n_reference,
                "threshold": self.threshold}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TailCalibration:
        try:
            return cls(tuple(float(q) for q in data["quantiles"]), float(data["u"]), float(data["beta"]),
                       float(data["tail_fraction"]), float(data["budget"]), int(data["n_reference"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"TailCalibration.from_dict: not a calibration document ({exc})") from None
