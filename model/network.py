"""Detector networks (MindSpore) and their compiled train / predict step functions.

Input: x (B, T, F) float32 windows of flow features, mask (B, T) float32 (1 = real flow,
0 = left padding). Output: logits (B, n_classes). Padded positions cannot influence the logits:
inputs are zeroed there, pooling and attention ignore them, and the BiLSTM (fused kernel or unrolled
recurrence; not impl="native") carries its state across them, so a left-padded window scores exactly
like the same flows unpadded.

Compiled functions specialise on input shapes: every new (B, T) compiles once (~1-3 s), so callers
should keep batch sizes few (e.g. pad the last batch). Threads: see set_threads.

    net = build_network(ModelConfig(arch="cnn_bilstm", n_features=24))
    step = make_train_step(net, nn.CrossEntropyLoss(), nn.Adam(net.trainable_params(), 1e-3))
    loss = step(x, mask, y)            # y int32 (B,)
    logits = make_predict(net)(x, mask)
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator

import mindspore as ms
from mindspore import Tensor, nn, ops

from flowhawk.model.config import ARCHS, ModelConfig
from flowhawk.model.kernels import set_kernel_threads
from flowhawk.model.layers import BiLSTM, ConvReluPool, MaskedAttentionPool

log = logging.getLogger(__name__)
_THREADS_SET: list[int] = []
_MODE_LOCK = threading.RLock()


def set_threads(n: int | None = None, runtime_threads: int = 1) -> int:
    """CPU thread budget: ``n`` threads for the fused kernels (default: cores, at most 2; the two LSTM
    directions then run in parallel on big batches) and ``runtime_threads`` for MindSpore's own kernels.

    MindSpore's runtime threads busy-wait: on the shared 2-core machine 2 runtime threads cost ~3.5x
    the CPU per train step (see benchmarks/results/net.md), so the runtime default is 1. The runtime
    setting takes effect once per process (later different requests are logged and ignored); the
    kernel thread count can be changed at any time. Returns the kernel thread count.
    """
    want = n if n is not None else max(1, min(2, os.cpu_count() or 1))
    if want < 1 or runtime_threads < 1:
        raise ValueError(f"set_threads: n and runtime_threads must be >= 1, got {want}, {runtime_threads}")
    set_kernel_threads(want)
    if not _THREADS_SET:
        ms.set_device("CPU")
        ms.runtime.dispatch_threads_num(runtime_threads)
        ms.set_context(runtime_num_threads=runtime_threads, inter_op_parallel_num=1)
        _THREADS_SET.append(runtime_threads)
    elif _THREADS_SET[0] != runtime_threads:
        log.warning("MindSpore runtime threads already %d; ignoring request for %d", _THREADS_SET[0],
                    runtime_threads)
    return want


def ensure_threads() -> None:
    """``set_threads()`` with its defaults unless a thread budget was already set (call before building any Cell:
    MindSpore's device cannot be chosen once its runtime has started)."""
    if not _THREADS_SET:
        set_threads()


class FlowSkip(nn.Cell):
    """The scored flow's own features, beside the sequence summary: (B, T, F) -> (B, S), ReLU(Dense)."""

    def __init__(self, n_features: int, width: int) -> None:
        super().__init__()
        self.dense = nn.Dense(n_features, width, activation="relu")

    def construct(self, x: Tensor) -> Tensor:
        return self.dense(x[:, -1, :])  # (B, F) -> (B, S): windows end at the scored flow


class CnnBiLstm(nn.Cell):
    """MindFlow CNN-BiLSTM: Conv1D(+ReLU) -> max pool -> dropout -> BiLSTM -> dense (+ optional FlowSkip)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        fused = cfg.impl in ("auto", "fused")
        self.conv = ConvReluPool(cfg.n_features, cfg.conv_channels, cfg.kernel_size, cfg.pool, fused)
        self.drop = nn.Dropout(p=cfg.dropout)
        self.bilstm = BiLSTM(cfg.conv_channels, cfg.hidden, cfg.lstm_layers, cfg.impl)
        self.use_skip = cfg.flow_skip > 0
        self.skip = FlowSkip(cfg.n_features, cfg.flow_skip) if self.use_skip else None
        self.head = nn.Dense(2 * cfg.hidden + cfg.flow_skip, cfg.n_classes)

    def construct(self, x: Tensor, mask: Tensor) -> Tensor:
        # x: (B, T, F), mask: (B, T)
        mask = ops.stop_gradient(mask)  # (B, T): no gradient work for the mask
        # conv -> ReLU -> padded steps zeroed -> max pool (one fused kernel when available)
        y, pmask = self.conv(x, mask)  # (B, T', C), (B, T') with T' = T // pool
        y = self.drop(y)  # (B, T', C)
        feat = self.bilstm.last(y, pmask)  # (B, 2H): final states of both directions
        if self.use_skip:
            feat = ops.concat((feat, self.skip(x)), axis=-1)  # (B, 2H + S)
        return self.head(feat)  # (B, n_classes)


class MultiScale(nn.Cell):
    """Parallel temporal convs (kernels e.g. 3/5/7) beside a BiLSTM, fused by masked attention over time."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        fused = cfg.impl in ("auto", "fused")  # conv + ReLU + mask as one kernel (pool 1)
        self.convs = nn.CellList([ConvReluPool(cfg.n_features, cfg.conv_channels, k, 1, fused)
                                  for k in cfg.multiscale_kernels])
        self.bilstm = BiLSTM(cfg.n_features, cfg.hidden, cfg.lstm_layers, cfg.impl)
        dim = len(cfg.multiscale_kernels) * cfg.conv_channels + 2 * cfg.hidden
        self.attn = MaskedAttentionPool(dim, cfg.hidden)
        self.drop = nn.Dropout(p=cfg.dropout)
        self.use_skip = cfg.flow_skip > 0
        self.skip = FlowSkip(cfg.n_features, cfg.flow_skip) if self.use_skip else None
        self.head = nn.Dense(dim + cfg.flow_skip, cfg.n_classes)

    def construct(self, x: Tensor, mask: Tensor) -> Tensor:
        # x: (B, T, F), mask: (B, T)
        mask = ops.stop_gradient(mask)  # (B, T): no gradient work for the mask
        m3 = mask.expand_dims(-1)  # (B, T, 1)
        x = x * m3  # (B, T, F): padded steps zeroed
        branches = [conv(x, mask)[0] for conv in self.convs]  # K x (B, T, C): ReLU(conv), 0 at padding
        branches.append(self.bilstm(x, mask))  # + (B, T, 2H)
        z = ops.concat(branches, axis=-1)  # (B, T, D) with D = K*C + 2H
        z = self.drop(z)  # (B, T, D)
        ctx = self.attn(z, mask)  # (B, D): attention weights are 0 at padded steps
        if self.use_skip:
            ctx = ops.concat((ctx, self.skip(x)), axis=-1)  # (B, D + S)
        return self.head(ctx)  # (B, n_classes)


_BUILDERS: dict[str, Callable[[ModelConfig], nn.Cell]] = {"cnn_bilstm": CnnBiLstm, "multiscale": MultiScale}
assert tuple(_BUILDERS) == ARCHS


def build_network(config: ModelConfig) -> nn.Cell:
    """The network named by config.arch (float32 parameters, training mode off)."""
    if not isinstance(config, ModelConfig):
        raise TypeError(f"build_network needs a ModelConfig, got {type(config).__name__}")
    if config.arch not in _BUILDERS:
        raise ValueError(f"unknown arch {config.arch!r}; valid: {sorted(_BUILDERS)}")
    ensure_threads()
    net = _BUILDERS[config.arch](config)
    net.set_train(False)
    return net


@contextlib.contextmanager
def _graph_mode() -> Iterator[None]:
    """Run compiled Cells through MindSpore's graph executor, restoring the caller's mode after.

    A train step under GRAPH_MODE costs ~40 ms CPU vs ~75 ms for the same step as an @ms.jit
    function called from PyNative (whose per-call grad_jit bookkeeping and extra queue thread
    dominate small networks); see benchmarks/results/net.md.
    """
    with _MODE_LOCK:  # the mode is process-global: one compiled call at a time switches it
        prev = ms.get_context("mode")
        if prev == ms.GRAPH_MODE:
            yield
            return
        ms.set_context(mode=ms.GRAPH_MODE)
        try:
            yield
        finally:
            ms.set_context(mode=prev)


class _WithLoss(nn.Cell):
    """(x, mask, y) -> loss_fn(net(x, mask), y); keeps the network's parameter names unchanged."""

    def __init__(self, net: nn.Cell, loss_fn: nn.Cell | Callable) -> None:
        super().__init__(auto_prefix=False)
        self.net = net
        self.loss_fn = loss_fn

    def construct(self, x: Tensor, mask: Tensor, y: Tensor) -> Tensor:
        return self.loss_fn(self.net(x, mask), y)  # scalar


class _Predict(nn.Cell):
    """Eval-mode wrapper compiled on its own, so predict and train graphs are cached separately."""

    def __init__(self, net: nn.Cell) -> None:
        super().__init__(auto_prefix=False)
        self.net = net

    def construct(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.net(x, mask)  # (B, n_classes)


def make_train_step(net: nn.Cell, loss_fn: nn.Cell | Callable,
                    optimizer: nn.Optimizer) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """A compiled step: step(x, mask, y) -> scalar loss Tensor; updates the weights.

    loss_fn(logits, y) -> scalar, e.g. nn.CrossEntropyLoss() with y int32 (B,); it must be a Cell or
    a function MindSpore can compile. Runs as a graph (GRAPH_MODE only for the call) with the
    network in training mode (dropout on); may be interleaved with make_predict's function.
    """
    train_cell = nn.TrainOneStepCell(_WithLoss(net, loss_fn), optimizer)

    def step(x: Tensor, mask: Tensor, y: Tensor) -> Tensor:
        if not net.training:
            train_cell.set_train(True)
        with _graph_mode():
            return train_cell(x, mask, y)

    return step


def make_predict(net: nn.Cell) -> Callable[[Tensor, Tensor], Tensor]:
    """A compiled predict(x, mask) -> logits (B, n_classes), eval mode (no dropout), run as a graph."""
    predict_cell = _Predict(net)

    def predict(x: Tensor, mask: Tensor) -> Tensor:
        if net.training:
            net.set_train(False)
        with _graph_mode():
            return predict_cell(x, mask)

    return predict
