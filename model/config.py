"""The frozen, validated configs of a detector: ``ModelConfig`` (the network) and ``TrainConfig`` (one run).

Everything that decides the network's shape lives in ModelConfig, so a saved model is rebuilt exactly from
``ModelConfig.from_dict(json.load(...))``; a checkpoint carries both. Unknown keys are rejected, never ignored.
Importing this module loads neither MindSpore's optimiser nor scikit-learn.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flowhawk.common.config import config_from_mapping
from flowhawk.model.features import FEATURE_SETS, FeaturePipeline
from flowhawk.model.windows import GROUP_BY

ARCHS: tuple[str, ...] = ("cnn_bilstm", "multiscale")
IMPLS: tuple[str, ...] = ("auto", "fused", "unrolled", "native")
THRESHOLD_METRICS: tuple[str, ...] = ("f1", "mcc")
BASELINES: tuple[str, ...] = ("majority", "extra_trees", "random_forest", "knn", "linear_svm")  # per-flow models


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"ModelConfig.{name} must be an int in [{lo}, {hi}], got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Network hyper-parameters. Input windows are (B, window, n_features); output logits (B, n_classes).

    impl picks the kernels: "fused" (C++ Custom ops in model/kernels/: BiLSTM layer, and for
    cnn_bilstm the conv+ReLU+pool block; fastest on CPU), "unrolled" (LSTM recurrence unrolled into the
    jit graph, conv as im2col + Dense), "auto" (fused when the kernels build here, else unrolled) or
    "native" (mindspore.nn.LSTM; padding is only zeroed, it still advances the state). All use the same
    parameters (PyTorch names/layout), so weights load into any of them.

    flow_skip > 0 adds a per-flow branch: the scored (last) flow's features -> Dense(flow_skip) + ReLU,
    concatenated with the sequence summary before the head. Conv + pooling otherwise blend the scored flow
    with its neighbours; 0 (the default) is the paper's network unchanged.
    """

    arch: str = "cnn_bilstm"
    n_features: int = 24
    n_classes: int = 2
    window: int = 16
    conv_channels: int = 64
    kernel_size: int = 3
    pool: int = 2
    dropout: float = 0.3
    hidden: int = 64
    lstm_layers: int = 1
    multiscale_kernels: tuple[int, ...] = field(default=(3, 5, 7))
    impl: str = "auto"
    flow_skip: int = 0

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"ModelConfig.arch must be one of {list(ARCHS)}, got {self.arch!r}")
        if self.impl not in IMPLS:
            raise ValueError(f"ModelConfig.impl must be one of {list(IMPLS)}, got {self.impl!r}")
        _check_int("n_features", self.n_features, 1, 4096)
        _check_int("n_classes", self.n_classes, 2, 1024)
        _check_int("window", self.window, 1, 4096)
        _check_int("conv_channels", self.conv_channels, 1, 4096)
        _check_int("kernel_size", self.kernel_size, 1, 63)
        _check_int("pool", self.pool, 1, self.window)
        _check_int("hidden", self.hidden, 1, 4096)
        _check_int("lstm_layers", self.lstm_layers, 1, 8)
        _check_int("flow_skip", self.flow_skip, 0, 4096)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) \
                or not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"ModelConfig.dropout must be a float in [0, 1), got {self.dropout!r}")
        object.__setattr__(self, "dropout", float(self.dropout))
        kernels = self.multiscale_kernels
        if not isinstance(kernels, (tuple, list)) or not 1 <= len(kernels) <= 8:
            raise ValueError(f"ModelConfig.multiscale_kernels must be 1..8 ints in [1, 63], got {kernels!r}")
        for k in kernels:
            _check_int("multiscale_kernels[]", k, 1, 63)
        object.__setattr__(self, "multiscale_kernels", tuple(kernels))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["multiscale_kernels"] = list(self.multiscale_kernels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Inverse of to_dict; rejects unknown keys (naming them and the valid ones)."""
        if not isinstance(d, dict):
            raise ValueError(f"ModelConfig.from_dict needs a dict, got {type(d).__name__}")
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - valid)
        if unknown:
            raise ValueError(f"ModelConfig: unknown key(s) {unknown}; valid keys are {sorted(valid)}")
        kwargs = dict(d)
        if "multiscale_kernels" in kwargs and isinstance(kwargs["multiscale_kernels"], list):
            kwargs["multiscale_kernels"] = tuple(kwargs["multiscale_kernels"])
        return cls(**kwargs)


TASKS = ("binary", "multiclass")
SPLITS = ("auto", "time", "stratified")
LR_SCHEDULES = ("constant", "cosine")
MONITORS = ("weighted_loss", "loss")
FEATURE_OPTIONS = ("top_categories", "top_ports", "top_values", "clip_quantile", "min_fraction")


def _check(ok: bool, name: str, valid: str, value: object) -> None:
    if not ok:
        raise ValueError(f"TrainConfig.{name}: must be {valid}, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Every field is validated at construction (errors name the field and its range).

    ``model`` holds overrides for the network's ``ModelConfig`` (e.g. hidden sizes), ``arch`` its name.
    ``split`` is ``auto`` (by time when FLOW_START_MILLISECONDS exists, stratified otherwise), ``time`` or
    ``stratified``. ``max_train_rows`` caps the training split (seeded; rare classes kept whole).
``class_weight_power`` softens the balanced class weights (1 = inverse frequency, 0.5 = its square root).
``max_monitor_rows`` caps the validation rows scored after every epoch (loss, F1, early stopping; rare
classes kept whole); the threshold is tuned on all validation rows for ``threshold_metric`` (f1 or mcc).
``monitor`` is the validation loss early stopping and best-weight restoring follow: ``weighted_loss`` (the
class-weighted training loss) or ``loss`` (plain cross-entropy: with 99.5 % attacks the weighted one rests on
~100 benign flows of weight ~100 and rises as soon as one of them is confidently wrong).
``lr_schedule`` ``cosine`` decays the learning rate from ``lr`` to 1 % of it over ``epochs`` (per step).
``feature_options`` holds ``FeaturePipeline`` overrides (``FEATURE_OPTIONS``, e.g. ``top_values``).
``host_features`` adds to every flow the ``model.host_features`` statistics of its window (fan-out, RST and
unanswered shares, rate, ...) as numeric features, so the network and its explanations can use and name what the
source host did, not only the flow's own fields (needs ``group_by`` source; off by default, the paper's inputs).
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
    class_weight_power: float = 1.0
    oversample: bool = False
    feature_set: str = "nf-v1"
    max_train_rows: int | None = 200_000
    split: str = "auto"
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    max_monitor_rows: int = 10_000
    threshold_metric: str = "f1"
    lr_schedule: str = "constant"
    monitor: str = "weighted_loss"
    model: Mapping[str, Any] = field(default_factory=dict)
    feature_options: Mapping[str, Any] = field(default_factory=dict)
    host_features: bool = False

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
        _check(self.monitor in MONITORS, "monitor", f"one of {MONITORS}", self.monitor)
        _check(self.lr_schedule in LR_SCHEDULES, "lr_schedule", f"one of {LR_SCHEDULES}", self.lr_schedule)
        _check(self.threshold_metric in THRESHOLD_METRICS, "threshold_metric", f"one of {THRESHOLD_METRICS}",
               self.threshold_metric)
        _check(isinstance(self.class_weighted, bool), "class_weighted", "a bool", self.class_weighted)
        _check(isinstance(self.oversample, bool), "oversample", "a bool", self.oversample)
        _check(isinstance(self.host_features, bool), "host_features", "a bool", self.host_features)
        _check(not self.host_features or self.group_by == "source", "host_features",
               "False when group_by is not 'source' (host statistics need per-host windows)", self.host_features)
        _check(isinstance(self.class_weight_power, (int, float)) and 0 < self.class_weight_power <= 1,
               "class_weight_power", "a number in (0, 1]", self.class_weight_power)
        _check(isinstance(self.max_monitor_rows, int) and self.max_monitor_rows >= 10, "max_monitor_rows",
               "an integer >= 10", self.max_monitor_rows)
        _check(self.max_train_rows is None or (isinstance(self.max_train_rows, int) and self.max_train_rows >= 10),
               "max_train_rows", "None or an integer >= 10", self.max_train_rows)
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            _check(isinstance(value, (int, float)) and 0 < value < 0.5, name, "a number in (0, 0.5)", value)
        _check(isinstance(self.model, Mapping), "model", "a mapping of ModelConfig overrides", self.model)
        reserved = sorted(set(self.model) & {"arch", "n_features", "n_classes", "window"})
        _check(not reserved, "model", "ModelConfig overrides without arch/n_features/n_classes/window "
               "(set from the config and the data)", dict(self.model))
        object.__setattr__(self, "model", dict(self.model))
        _check(isinstance(self.feature_options, Mapping) and set(self.feature_options) <= set(FEATURE_OPTIONS),
               "feature_options", f"a mapping with keys among {FEATURE_OPTIONS}", self.feature_options)
        FeaturePipeline(self.feature_set, **self.feature_options)  # its errors name the option and its range
        object.__setattr__(self, "feature_options", dict(self.feature_options))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``from_dict`` inverts it)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from a dict; unknown keys are rejected (naming them)."""
        return config_from_mapping(cls, data)  # type: ignore[return-value]
