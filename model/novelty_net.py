"""The novelty network (MindSpore): the detector's conv + BiLSTM encoder, a bottleneck, and a window decoder.

Input x (B, T, F + 1): the window's flow features with hidden flows zeroed, plus a last channel that is 1 at
hidden flows (the network knows what it was not shown); mask (B, T) as for the detector (1 = real flow, 0 =
left padding). Output (B, T, F): the reconstructed (or predicted) features of every position. The encoder is
``ConvReluPool`` + ``BiLSTM`` from ``model.layers`` (the fused C++ kernels when they build), so training and
scoring reuse ``model.network.make_train_step`` / ``make_predict`` unchanged: the "label" y (B, T, F + 1) holds
the target features and, in its last channel, the weight of each position in the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

from mindspore import Tensor, nn, ops

from flowhawk.model.layers import BiLSTM, ConvReluPool
from flowhawk.model.network import ensure_threads
from flowhawk.model.novelty_config import NoveltyConfig

ARCH = "novelty_cnn_bilstm"


@dataclass(frozen=True)
class NoveltyShape:
    """What the registry needs to export and check a novelty network: input (1, window, n_features)."""

    window: int
    n_features: int  # network input width: flow features + the hide channel
    arch: str = ARCH


class NoveltyNet(nn.Cell):
    """(B, T, F + 1), (B, T) -> (B, T, F): encode the window to ``latent`` numbers, decode every flow."""

    def __init__(self, n_features: int, config: NoveltyConfig) -> None:
        ensure_threads()
        super().__init__()
        fused = config.impl in ("auto", "fused")
        self.t = config.window
        self.f = n_features
        self.conv = ConvReluPool(n_features + 1, config.conv_channels, config.kernel_size, config.pool, fused)
        self.drop = nn.Dropout(p=config.dropout)
        self.bilstm = BiLSTM(config.conv_channels, config.hidden, 1, config.impl)
        self.bottleneck = nn.Dense(2 * config.hidden, config.latent, activation="tanh")
        self.expand = nn.Dense(config.latent, 4 * config.hidden, activation="relu")
        self.decode = nn.Dense(4 * config.hidden, config.window * n_features)

    def construct(self, x: Tensor, mask: Tensor) -> Tensor:
        # x: (B, T, F + 1) hidden flows zeroed + hide channel, mask: (B, T)
        mask = ops.stop_gradient(mask)
        y, pmask = self.conv(x, mask)  # (B, T', C), (B, T'), T' = T // pool: ReLU(conv), zero at padding, max pool
        y = self.drop(y)
        h = self.bilstm.last(y, pmask)  # (B, 2H)
        z = self.bottleneck(h)  # (B, L)
        out = self.decode(self.expand(z))  # (B, T * F)
        return out.reshape(x.shape[0], self.t, self.f)  # (B, T, F)


class ShunningReconstructionLoss(nn.Cell):
    """The weighted reconstruction loss plus a push on confirmed anomalies (outlier exposure):
    loss(out (B, T, F), y (B, T, F + 2)) = sum_w (out - y[..., :F])^2 / (F * sum w)
    + mean over the flows with y[..., F + 1] = 1 of relu(margin - their mean squared error), w = y[..., F]."""

    def __init__(self, margin: float) -> None:
        ensure_threads()  # before any Cell: the device cannot be chosen once the runtime has started
        super().__init__()
        self.margin = margin

    def construct(self, out: Tensor, y: Tensor) -> Tensor:
        f = out.shape[-1]
        squared = (out - y[:, :, :f]) ** 2  # (B, T, F)
        weight = y[:, :, f:f + 1]  # (B, T, 1)
        shun = y[:, :, f + 1:]  # (B, T, 1)
        fit = (squared * weight).sum() / (weight.sum() * f + 1e-6)
        short = ops.relu(self.margin - squared.mean(axis=-1, keep_dims=True)) * shun  # (B, T, 1)
        return fit + short.sum() / (shun.sum() + 1e-6)


class WeightedReconstructionLoss(nn.Cell):
    """loss(out (B, T, F), y (B, T, F + 1)) = sum_w (out - y[..., :F])^2 / (F * sum w), w = y[..., F]."""

    def __init__(self) -> None:
        ensure_threads()  # before any Cell: the device cannot be chosen once the runtime has started
        super().__init__()

    def construct(self, out: Tensor, y: Tensor) -> Tensor:
        f = out.shape[-1]
        target = y[:, :, :f]  # (B, T, F)
        weight = y[:, :, f:]  # (B, T, 1)
        err = ((out - target) ** 2) * weight  # (B, T, F)
        return err.sum() / (weight.sum() * f + 1e-6)
