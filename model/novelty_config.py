"""NoveltyConfig: the frozen, validated description of a self-supervised novelty model and its training.

Objectives (``objective``):

- ``reconstruct``: a window autoencoder. The encoder (conv + max pool + BiLSTM, the detector's fused kernels) reads the
  window, squeezes it through a ``latent``-wide bottleneck, and a dense decoder rebuilds every flow of the window.
  In training a random ``mask_rate`` share of the window's flows is hidden from the encoder (denoising); the loss
  covers every real flow. A flow's score is the error of its own (last) position, nothing hidden.
- ``predict``: the window's last flow is hidden; the same network predicts it from the flows before it. A flow's
  score is the prediction error of its features.

Score of a flow: the mean squared error of its own features (``score_top`` = 0, the default), or of its
``score_top`` worst reconstructed features. Measured on the lab (benchmarks/results/novelty.md): ``score_top`` of
1, 3 or 5 flags the icmpflood flow in no seed and 10 in as many as the mean, because the baseline's own largest
errors are concentrated in the same few size features; it stays an option, off by default.

Batches: a batch scored without ``context`` (``score_novelty``) has windows built from that batch alone, so each
host's first flows in it have short windows, as do a new host's first flows in any case. Training therefore
indexes the baseline's training part as ``segments`` consecutive time segments (as if it had arrived in that many
batches), so short windows are learnt too.

Calibration: each source host's first ``1 - holdout`` of baseline flows in time train the network; the last
``holdout`` share of every host is scored, with the training part as context (windows reach back into it, as a
continuous deployment scores flows; scored as a fresh batch instead, each host's first held-out flows had short
windows that set much of the IoT-23 threshold, benchmarks/results/novelty.md), to fit the tail of the baseline's
own score distribution
(``model.calibration``: the tail starts at the top ``tail_fraction`` of those scores, or a tested smaller share);
the alert threshold is the score whose tail probability equals ``budget`` (expected false alerts per
benign-like flow).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from flowhawk.common.config import config_from_mapping

OBJECTIVES: tuple[str, ...] = ("reconstruct", "predict")
IMPLS: tuple[str, ...] = ("auto", "fused", "unrolled")
FEATURE_SETS: tuple[str, ...] = ("nf-v1", "full")
_INTS = {"window": (2, 256), "conv_channels": (1, 1024), "kernel_size": (1, 15), "hidden": (1, 1024),
         "latent": (1, 1024), "epochs": (1, 1000), "batch_size": (1, 65536), "seed": (0, 2**31 - 1),
         "max_train_rows": (100, 10**8), "explain_top": (0, 32), "min_calibration": (10, 10**7), "segments": (1, 1000),
         "score_top": (0, 4096), "pool": (1, 8)}
_FLOATS = {"mask_rate": (0.0, 0.9), "dropout": (0.0, 0.9), "learning_rate": (1e-6, 1.0), "holdout": (0.05, 0.9),
           "budget": (1e-6, 0.5), "tail_fraction": (0.005, 0.5), "clip_margin": (0.0, 100.0)}


def check_range(owner: str, name: str, value: object, lo: float, hi: float, integer: bool = False) -> None:
    """ValueError naming ``owner.name`` and its range unless ``value`` is a number (an int if ``integer``) in it."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not lo <= value <= hi:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{owner}.{name}: must be {kind} in [{lo}, {hi}], got {value!r}")


@dataclass(frozen=True)
class NoveltyConfig:
    """Network shape, objective, training and calibration settings (errors name the parameter and its range)."""

    objective: str = "reconstruct"
    window: int = 16
    conv_channels: int = 32
    kernel_size: int = 3
    pool: int = 2  # max pooling over time before the BiLSTM, as in the detector (models saved without it: 1)
    hidden: int = 32
    latent: int = 16
    dropout: float = 0.1
    mask_rate: float = 0.25
    epochs: int = 40
    batch_size: int = 128
    learning_rate: float = 2e-3
    seed: int = 0
    max_train_rows: int = 200_000
    holdout: float = 0.25
    segments: int = 4
    min_calibration: int = 200
    budget: float = 0.001
    tail_fraction: float = 0.1
    feature_set: str = "nf-v1"
    clip_margin: float = 2.0
    explain_top: int = 3
    score_top: int = 0
    impl: str = "auto"

    def __post_init__(self) -> None:
        for name, choices in (("objective", OBJECTIVES), ("impl", IMPLS), ("feature_set", FEATURE_SETS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"NoveltyConfig.{name}: must be one of {list(choices)}, got {getattr(self, name)!r}")
        for name, (lo, hi) in _INTS.items():
            check_range("NoveltyConfig", name, getattr(self, name), lo, hi, integer=True)
        for name, (lo, hi) in _FLOATS.items():
            check_range("NoveltyConfig", name, getattr(self, name), lo, hi)
            object.__setattr__(self, name, float(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NoveltyConfig:
        """Inverse of ``to_dict``; unknown keys are rejected, naming them and the valid ones."""
        if not isinstance(data, dict):
            raise ValueError(f"NoveltyConfig.from_dict needs a dict, got {type(data).__name__}")
        return config_from_mapping(cls, {"pool": 1, **data})  # type: ignore[return-value]  # saved before pool

    def replace(self, **changes: Any) -> NoveltyConfig:
        return dataclasses.replace(self, **changes)
