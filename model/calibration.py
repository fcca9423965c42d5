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
- where the tail starts is checked, not assumed: ``tail_fraction`` is the largest share tried. While an
  Anderson-Darling test rejects the exponential for the log-excesses at 5 % (Stephens' table, mean estimated),
  the share is halved, as long as ``MIN_EXCESSES`` remain; if every share is rejected, the smallest is used.
  A start too low in the body makes beta measure the body's spread, not the tail's decay: on a reference mixing
  a quiet host with a noisy one (IoT-23), the top 10 % is the noisy host's body and the extrapolated threshold
  lands 4x above the largest reference score (benchmarks/results/novelty.md).

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
AD_CRITICAL_5 = 1.341  # modified A^2 = A^2 (1 + 0.6 / n), exponential with estimated mean (Stephens 1974)


def exponential_ad(excess: np.ndarray) -> float:
    """Modified Anderson-Darling statistic of ``excess`` (>= 0) against the exponential with its own mean."""
    x = np.sort(np.asarray(excess, dtype=np.float64))
    n, mean = len(x), float(x.mean()) if len(x) else 0.0
    if n < 2 or mean <= 1e-12:
        return 0.0
    z = np.clip(-np.expm1(-x / mean), 1e-12, 1.0 - 1e-12)
    i = np.arange(1, n + 1)
    a2 = -n - float(np.mean((2 * i - 1) * (np.log(z) + np.log1p(-z[::-1]))))
    return a2 * (1.0 + 0.6 / n)


def tail_start(logs: np.ndarray, tail_fraction: float) -> float:
    """The largest share in tail_fraction, /2, /4, ... (>= MIN_EXCESSES flows above it) whose log-excesses the
    exponential fits at 5 %; the smallest tried when none does."""
    fraction = tail_fraction
    while True:
        u = float(np.quantile(logs, 1.0 - fraction))
        if exponential_ad(logs[logs > u] - u) <= AD_CRITICAL_5 or len(logs) * fraction / 2 < MIN_EXCESSES:
            return fraction
        fraction /= 2


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
        u = float(np.quantile(logs, 1.0 - tail_fraction))
        excess = logs[logs > u] - u
        beta = float(excess.mean()) if len(excess) else 0.0
        beta = max(beta, 1e-3)
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
