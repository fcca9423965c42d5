"""Building blocks for the detector networks (MindSpore Cells), tuned for CPU.

* ``TemporalConv``: 1-D convolution over time written as im2col + one matmul ("same" padding);
  mindspore.nn.Conv1d is ~10x slower on CPU.
* ``BiLSTM``: the ONE place that touches ``mindspore.nn.LSTM`` (its call signature changes between
  MindSpore versions), plus an unrolled matmul recurrence that honours the padding mask exactly.
* ``masked_max_pool`` / ``MaskedAttentionPool``: pooling that padded positions cannot influence.

Shapes: B = batch, T = time steps, C/F = channels, H = LSTM hidden size. Masks are float32 (B, T),
1 = real flow, 0 = (left) padding.
"""

from __future__ import annotations

import math

import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Uniform, initializer

NEG_INF = -1e9


class TemporalConv(nn.Cell):
    """Conv1d over time with "same" padding as im2col + Dense: (B, T, C_in) -> (B, T, C_out)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.k = kernel_size
        self.left = (kernel_size - 1) // 2
        self.right = kernel_size // 2
        self.proj = nn.Dense(in_channels * kernel_size, out_channels)

    def construct(self, x: Tensor) -> Tensor:
        # x: (B, T, C_in)
        if self.k == 1:
            return self.proj(x)  # (B, T, C_out)
        t = x.shape[1]
        xp = ops.pad(x, (0, 0, self.left, self.right))  # (B, T + k - 1, C_in)
        cols = ops.concat([xp[:, j:j + t, :] for j in range(self.k)], axis=-1)  # (B, T, k * C_in)
        return self.proj(cols)  # (B, T, C_out)


def masked_max_pool(x: Tensor, mask: Tensor, pool: int) -> tuple[Tensor, Tensor]:
    """Non-overlapping max pooling over time for NON-NEGATIVE x already zeroed at padded steps.

    x (B, T, C), mask (B, T) -> (B, T // pool, C), (B, T // pool). The oldest T % pool steps are
    dropped (with left padding those are padding first). A pooled step is real if any input step is.
    """
    if pool == 1:
        return x, mask
    b, t, c = x.shape
    tp = t // pool
    x = x[:, t - tp * pool:, :]  # (B, tp * pool, C)
    mask = mask[:, t - tp * pool:]  # (B, tp * pool)
    pooled = x.reshape(b, tp, pool, c).max(axis=2)  # (B, tp, C)
    pmask = mask.reshape(b, tp, pool).max(axis=2)  # (B, tp)
    return pooled, pmask


class MaskedAttentionPool(nn.Cell):
    """Learned additive attention over time; padded steps get zero weight. (B, T, D) -> (B, D)."""

    def __init__(self, dim: int, attn_dim: int) -> None:
        super().__init__()
        self.score_hidden = nn.Dense(dim, attn_dim, activation="tanh")
        self.score = nn.Dense(attn_dim, 1, has_bias=False)

    def construct(self, z: Tensor, mask: Tensor) -> Tensor:
        # z: (B, T, D), mask: (B, T)
        s = self.score(self.score_hidden(z)).squeeze(-1)  # (B, T)
        s = s + (1.0 - mask) * NEG_INF  # (B, T): padded steps -> -inf
        a = ops.softmax(s, axis=-1)  # (B, T)
        return (z * a.expand_dims(-1)).sum(axis=1)  # (B, D)


def _uniform(shape: tuple[int, ...], bound: float) -> Tensor:
    return initializer(Uniform(bound), shape)


class _UnrolledLSTMCore(nn.Cell):
    """Bidirectional LSTM as an unrolled matmul recurrence (static T), parameters in nn.LSTM layout.

    Gate order (i, f, g, o) and parameter names/shapes match mindspore.nn.LSTM and torch.nn.LSTM.
    At padded steps the state is carried over unchanged, so the output equals that of the unpadded
    sequence: forward state stays zero through the left padding, backward state stops at the
    first real step.
    """

    def __init__(self, input_size: int, hidden: int, num_layers: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.num_layers = num_layers
        bound = 1.0 / math.sqrt(hidden)
        for layer in range(num_layers):
            in_size = input_size if layer == 0 else 2 * hidden
            for sfx in ("", "_reverse"):
                name = f"l{layer}{sfx}"
                setattr(self, f"weight_ih_{name}",
                        Parameter(_uniform((4 * hidden, in_size), bound), name=f"weight_ih_{name}"))
                setattr(self, f"weight_hh_{name}",
                        Parameter(_uniform((4 * hidden, hidden), bound), name=f"weight_hh_{name}"))
                setattr(self, f"bias_ih_{name}", Parameter(_uniform((4 * hidden,), bound), name=f"bias_ih_{name}"))
                setattr(self, f"bias_hh_{name}", Parameter(_uniform((4 * hidden,), bound), name=f"bias_hh_{name}"))
        # static (layer, direction) -> parameters lookup usable inside compiled graphs
        self._by_dir = tuple(
            tuple(getattr(self, f"{kind}_l{layer}{sfx}") for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            for layer in range(num_layers) for sfx in ("", "_reverse"))

    def _direction(self, x: Tensor, mask: Tensor, layer: int, reverse: bool) -> list:
        # x: (B, T, I), mask: (B, T) -> list of T tensors (B, H) in time order
        w_ih, w_hh, b_ih, b_hh = self._by_dir[2 * layer + int(reverse)]
        b, t = x.shape[0], x.shape[1]
        hsz = self.hidden
        xw = ops.matmul(x, w_ih.T) + (b_ih + b_hh)  # (B, T, 4H)
        xs = ops.unstack(xw, axis=1)  # T x (B, 4H); unstack/split backprop as stack/concat (cheap)
        ms_ = ops.unstack(mask.expand_dims(-1), axis=1)  # T x (B, 1)
        w_hh_t = w_hh.T  # (H, 4H)
        h = ops.zeros((b, hsz), x.dtype)  # (B, H)
        c = ops.zeros((b, hsz), x.dtype)  # (B, H)
        outs = [None] * t
        steps = range(t - 1, -1, -1) if reverse else range(t)
        for s in steps:
            gates = xs[s] + ops.matmul(h, w_hh_t)  # (B, 4H)
            i_p, f_p, g_p, o_p = ops.split(gates, hsz, axis=1)  # (B, H) each
            c_new = ops.sigmoid(f_p) * c + ops.sigmoid(i_p) * ops.tanh(g_p)  # (B, H)
            h_new = ops.sigmoid(o_p) * ops.tanh(c_new)  # (B, H)
            m = ms_[s]  # (B, 1)
            c = c + m * (c_new - c)  # (B, H): carried over at padded steps
            h = h + m * (h_new - h)  # (B, H)
            outs[s] = h
        return outs

    def construct(self, x: Tensor, mask: Tensor) -> Tensor:
        # x: (B, T, I), mask: (B, T)
        for layer in range(self.num_layers):
            fwd = self._direction(x, mask, layer, False)  # T x (B, H)
            bwd = self._direction(x, mask, layer, True)  # T x (B, H)
            x = ops.concat([ops.stack(fwd, axis=1), ops.stack(bwd, axis=1)], axis=-1)  # (B, T, 2H)
        return x  # (B, T, 2H)


class BiLSTM(nn.Cell):
    """Bidirectional LSTM over (B, T, I) with mask (B, T) -> (B, T, 2H) (forward | backward halves).

    impl "unrolled" (default, fast on CPU, exact masking) or "native" (mindspore.nn.LSTM). Parameter
    names are identical (``<prefix>.lstm.weight_ih_l0`` ...) so a checkpoint loads into either.
    """

    def __init__(self, input_size: int, hidden: int, num_layers: int = 1, impl: str = "unrolled") -> None:
        super().__init__()
        if impl == "unrolled":
            self.lstm = _UnrolledLSTMCore(input_size, hidden, num_layers)
        elif impl == "native":
            self.lstm = nn.LSTM(input_size, hidden, num_layers, has_bias=True, batch_first=True,
                                bidirectional=True)
        else:
            raise ValueError(f"BiLSTM impl must be 'unrolled' or 'native', got {impl!r}")
        self.native = impl == "native"
        self.hidden = hidden

    def construct(self, x: Tensor, mask: Tensor) -> Tensor:
        # x: (B, T, I), mask: (B, T)
        if self.native:
            # nn.LSTM(x) -> (output, (h_n, c_n)) in 2.x; 2.9+ announces (input, h_0, c_0) inputs, so
            # we pass only the input, valid in both. The mask only zeroes x: padding advances the state.
            return self.lstm(x * mask.expand_dims(-1))[0]  # (B, T, 2H)
        return self.lstm(x, mask)  # (B, T, 2H)

    def summary(self, out: Tensor) -> Tensor:
        """(B, T, 2H) -> (B, 2H): forward state at the last step | backward state at the first step."""
        return ops.concat([out[:, -1, :self.hidden], out[:, 0, self.hidden:]], axis=-1)


def numpy_param_count(cell: nn.Cell) -> int:
    """Number of trainable scalars in a Cell."""
    return int(sum(np.prod(p.shape) for p in cell.trainable_params()))
