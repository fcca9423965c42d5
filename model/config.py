"""ModelConfig: the frozen, validated description of a detector network (nanoGPT style).

Everything that decides the network's shape lives here, so a saved model is rebuilt exactly from
``ModelConfig.from_dict(json.load(...))``. Unknown keys are rejected, never ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

ARCHS: tuple[str, ...] = ("cnn_bilstm", "multiscale")
IMPLS: tuple[str, ...] = ("auto", "fused", "unrolled", "native")


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
