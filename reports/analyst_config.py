"""Settings of the analyst's view (incidents, host evidence, alerts): one frozen, validated dataclass.

Only cli/ and flows/ build it from user input; the library takes it as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass

# What an occluded column is replaced by when explaining (reports.explain): the benign mean in feature space, or
# real benign flows' values (averaged over explain_samples draws; ~3x the cost; benchmarks/results/analyst.md)
EXPLAIN_REFERENCES = ("mean", "sampled")
EXPLAIN_SCOPES = ("flow", "window")  # occlude the scored flow's column only, or that column in its whole window

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class AnalystConfig:
    """How anomalous flows become incidents, hosts accumulate evidence, and alerts are emitted.

    - ``incident_gap_s``: two anomalous flows of one source and behaviour belong to one incident when the later
      starts at most this long after the earlier ones ended.
    - ``evidence_window_s``: host evidence is counted per window of this length (an hour by default).
    - ``window_points_cap``: at most this many evidence points per host and window (a flood is one loud
      window, not a million points). Above ``alert_level``, so a window that reaches the cap alerts by itself:
      a flood flags its host in the hour it happens (at the defaults, until 7.7 h of lake time after the
      window ends); below the cap, evidence has to add up across windows.
    - ``half_life_h``: evidence halves every ``half_life_h`` hours of lake time (the end of the newest flow).
    - ``alert_level``: a host whose evidence reaches this level is flagged ``alert``.
    - ``severity_scores``: the supervised model's attack probability at or above each value adds one severity
      step (1 low ... 4 critical); without the per-model scores, the flow score.
    - ``severity_tail``: the novelty model's tail probability (1 - ``novelty_score``) at or below each value adds
      one step; a baseline rule's hit (inbound flood, volume excess) adds them all. Every novelty alert already
      has a tail probability at most its budget (0.001), so the supervised scale would rate each one high.
    - ``severity_fanout``: an incident with at least this many flows, peers or ports adds one step.
    - ``alerts_per``: ``incident`` (one alert per incident) or ``flow`` (one per anomalous flow).
    - ``explain_max_flows``: cap on anomalous flows explained by occlusion per batch (highest scores first);
      the others carry their incident's reason.
    - ``explain_reference`` / ``explain_samples``: what an occluded column is replaced by (``EXPLAIN_REFERENCES``)
      and, for ``sampled``, how many benign draws are averaged.
    - ``explain_scope``: where a column is occluded (``EXPLAIN_SCOPES``): in the scored flow only (``flow``: which
      of the flow's own fields drove its alert) or in every flow of its window.
    """

    incident_gap_s: float = 300.0
    evidence_window_s: float = 3600.0
    window_points_cap: float = 50.0
    half_life_h: float = 24.0
    alert_level: float = 40.0
    severity_scores: tuple[float, ...] = (0.9, 0.99)
    severity_tail: tuple[float, ...] = (1e-4, 1e-6)
    severity_fanout: int = 100
    alerts_per: str = "incident"
    explain_max_flows: int = 20_000
    top_hosts: int = 25
    explain_reference: str = "mean"
    explain_samples: int = 4
    explain_scope: str = "flow"

    def __post_init__(self) -> None:
        for name, low, high in (("incident_gap_s", 0.0, 86_400.0 * 30), ("evidence_window_s", 1.0, 86_400.0 * 30),
                                ("window_points_cap", 0.001, 1e9), ("half_life_h", 0.001, 24.0 * 3650),
                                ("alert_level", 0.001, 1e12)):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not low <= float(value) <= high:
                raise ValueError(f"AnalystConfig.{name} must be a number in [{low}, {high}], got {value!r}")
        for name, descending in (("severity_scores", False), ("severity_tail", True)):
            steps = getattr(self, name)
            if (not isinstance(steps, tuple) or len(steps) > 3
                    or not all(isinstance(s, (int, float)) and 0.0 <= s <= 1.0 for s in steps)
                    or list(steps) != sorted(steps, reverse=descending)):
                raise ValueError(f"AnalystConfig.{name} must be a tuple of at most 3 numbers in [0, 1], sorted "
                                 f"{'descending' if descending else 'ascending'}, got {steps!r}")
        for name, low, high in (("severity_fanout", 1, 10**9), ("explain_max_flows", 0, 10**8),
                                ("top_hosts", 1, 10_000)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"AnalystConfig.{name} must be an integer in [{low}, {high}], got {value!r}")
        if self.explain_reference not in EXPLAIN_REFERENCES:
            raise ValueError(f"AnalystConfig.explain_reference must be one of {EXPLAIN_REFERENCES}, "
                             f"got {self.explain_reference!r}")
        if self.explain_scope not in EXPLAIN_SCOPES:
            raise ValueError(f"AnalystConfig.explain_scope must be one of {EXPLAIN_SCOPES}, got {self.explain_scope!r}")
        if not isinstance(self.explain_samples, int) or not 1 <= self.explain_samples <= 64:
            raise ValueError(f"AnalystConfig.explain_samples must be an integer in [1, 64], "
                             f"got {self.explain_samples!r}")
        if self.alerts_per not in ("incident", "flow"):
            raise ValueError(f"AnalystConfig.alerts_per must be 'incident' or 'flow', got {self.alerts_per!r}")

    @property
    def window_ms(self) -> int:
        return round(self.evidence_window_s * 1000)


def fields_markdown(fields: tuple[tuple[str, object, str], ...]) -> str:
    """A (name, type, meaning) field list as the README's Markdown table."""
    rows = ["| column | type | meaning |", "|---|---|---|"]
    return "\n".join(rows + [f"| `{n}` | {t} | {d} |" for n, t, d in fields])
