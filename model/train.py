"""Training configuration and the training loop of the flow detector.

``TrainConfig`` is the frozen, validated description of one training run; ``train_model(frame, config)``
turns a labelled flow frame into a ``TrainedModel``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TASKS = ("binary", "multiclass")
GROUP_BY = ("source", "global")
FEATURE_SETS = ("nf-v1", "full")
SPLITS = ("auto", "time", "stratified")


def _check(ok: bool, name: str, valid: str, value: object) -> None:
    if not ok:
        raise ValueError(f"TrainConfig.{name}: must be {valid}, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Every field is validated at construction (errors name the field and its range).

    ``model`` holds overrides for the network's ``ModelConfig`` (e.g. hidden sizes), ``arch`` its name.
    ``split`` is ``auto`` (by time when FLOW_START_MILLISECONDS exists, stratified otherwise), ``time`` or
    ``stratified``. ``max_train_rows`` caps the training split (stratified subsample, seeded).
    """

    task: str = "binary"
    arch: str = "cnn_bilstm"
    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    patience: int = 5
    seed: int = 0
    window: int = 16
    group_by: str = "source"
    class_weighted: bool = True
    oversample: bool = False
    feature_set: str = "nf-v1"
    max_train_rows: int | None = None
    split: str = "auto"
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    model: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(self.task in TASKS, "task", f"one of {TASKS}", self.task)
        _check(isinstance(self.arch, str) and bool(self.arch), "arch", "a non-empty network name", self.arch)
        for name, lo, hi in (("epochs", 1, 10_000), ("batch_size", 1, 1 << 20), ("patience", 1, 10_000),
                             ("window", 1, 4096)):
            value = getattr(self, name)
            _check(isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi,
                   name, f"an integer in [{lo}, {hi}]", value)
        _check(isinstance(self.seed, int) and self.seed >= 0, "seed", "an integer >= 0", self.seed)
        _check(isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and 0 < self.lr <= 1.0,
               "lr", "a number in (0, 1]", self.lr)
        _check(self.group_by in GROUP_BY, "group_by", f"one of {GROUP_BY}", self.group_by)
        _check(self.feature_set in FEATURE_SETS, "feature_set", f"one of {FEATURE_SETS}", self.feature_set)
        _check(self.split in SPLITS, "split", f"one of {SPLITS}", self.split)
        _check(isinstance(self.class_weighted, bool), "class_weighted", "a bool", self.class_weighted)
        _check(isinstance(self.oversample, bool), "oversample", "a bool", self.oversample)
        _check(self.max_train_rows is None or (isinstance(self.max_train_rows, int) and self.max_train_rows >= 10),
               "max_train_rows", "None or an integer >= 10", self.max_train_rows)
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            _check(isinstance(value, (int, float)) and 0 < value < 0.5, name, "a number in (0, 0.5)", value)
        _check(isinstance(self.model, Mapping), "model", "a mapping of ModelConfig overrides", self.model)
        object.__setattr__(self, "model", dict(self.model))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``from_dict`` inverts it)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from a dict; unknown keys are rejected (naming them)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"TrainConfig: unknown key(s) {unknown}; valid keys: {sorted(known)}")
        return cls(**dict(data))
