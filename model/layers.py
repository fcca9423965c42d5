"""Building blocks for the detector networks (MindSpore Cells), tuned for CPU.

* ``TemporalConv``: 1-D convolution over time written as im2col + one matmul ("same" padding);
  mindspore.nn.Conv1d is ~10x slower on CPU. ``ConvReluPool``: conv -> ReLU -> mask -> max pool, one
  C++ kernel (model/kernels/convpool.cc) when the kernels build, else MindSpore ops.
* ``BiLSTM``: the ONE place that touches ``mindspore.nn.LSTM`` (its call signature changes between
  MindSpore versions); by default it runs a fused C++ kernel (model/kernels/bilstm.cc) or an unrolled
  matmul recurrence, both honouring the padding mask exactly (state carried over at padded steps).
* ``masked_max_pool`` / ``MaskedAttentionPool``: pooling that padded positions cannot influence.

C++ kernels are MindSpore ``ops.Custom`` "aot" ops with a ``bprop`` that calls the backward kernel;
each is checked against the plain-op path (loss and all gradients) in tests/test_network.py.

Shapes: B = batch, T = time steps, C/F = channels, H = LSTM hidden size. Masks are float32 (B, T),
1 = real flow, 0 = (left) padding.
"""

from __future__ import annotations

import math

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Uniform, initializer

from flowhawk.model.kernels import kernel_library

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


def _convpool_op(lib: str) -> ops.Custom:
    """Fused conv + ReLU + mask + max-pool Custom op (model/kernels/convpool.cc) with its backward."""
    f32 = ms.float32
    bwd = ops.Custom(f"{lib}:ConvPoolBwd", out_shape=lambda dy, x, mask, w, y, arg, ptok: (x, w, [w[0]]),
                     out_dtype=lambda *a: (f32, f32, f32), func_type="aot")

    def bprop(x: Tensor, mask: Tensor, w: Tensor, bias: Tensor, ptok: Tensor, out: tuple, dout: tuple) -> tuple:
        dx, dw, db = bwd(dout[0], x, mask, w, out[0], out[1], ptok)
        return dx, ops.zeros_like(mask), dw, db, ops.zeros_like(ptok)

    def shape(x: list, mask: list, w: list, bias: list, ptok: list) -> tuple:
        y = [x[0], x[1] // ptok[0], w[0]]  # (B, T // pool, C)
        return y, y

    return ops.Custom(f"{lib}:ConvPoolFwd", out_shape=shape, out_dtype=lambda *a: (f32, f32),
                      func_type="aot", bprop=bprop)


class ConvReluPool(TemporalConv):
    """TemporalConv -> ReLU -> zero padded steps -> masked_max_pool, as one C++ kernel when
    ``fused`` (model/kernels/convpool.cc), else MindSpore ops. Same parameters either way.
    (B, T, C_in), (B, T) -> (B, T // pool, C_out), (B, T // pool)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, pool: int,
                 fused: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size)
        self.pool = pool
        lib = kernel_library() if fused else None
        self.fused = lib is not None
        if self.fused:
            self.op = _convpool_op(str(lib))
            self.ptok = Tensor(np.zeros(pool, np.float32))

    def construct(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        # x: (B, T, C_in), mask: (B, T)
        if self.fused:
            b, t = mask.shape
            tp = t // self.pool
            pmask = mask[:, t - tp * self.pool:].reshape(b, tp, self.pool).max(axis=2)  # (B, T')
            return self.op(x, mask, self.proj.weight, self.proj.bias, self.ptok)[0], pmask  # (B, T', C_out)
        m3 = mask.expand_dims(-1)  # (B, T, 1)
        y = ops.relu(super().construct(x * m3)) * m3  # (B, T, C_out) >= 0, zero at padding
        return masked_max_pool(y, mask, self.pool)  # (B, T', C_out), (B, T')


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

    def _layer(self, x: Tensor, keep: Tensor, layer: int) -> list:
        """One layer, both directions advanced together as a batch of 2.

        x: (T, B, I) time-major, keep: (T, 2, B, H) bool (True = real step, direction 1 time-reversed)
        -> T states (2, B, H); state s holds forward time s and backward time T-1-s.
        """
        w_ih_f, w_hh_f, b_ih_f, b_hh_f = self._by_dir[2 * layer]
        w_ih_b, w_hh_b, b_ih_b, b_hh_b = self._by_dir[2 * layer + 1]
        t, b, i = x.shape
        hsz = self.hidden
        w_ih = ops.concat([w_ih_f, w_ih_b], axis=0)  # (8H, I)
        bias = ops.concat([b_ih_f + b_hh_f, b_ih_b + b_hh_b], axis=0)  # (8H,)
        xw = (ops.matmul(x.reshape(t * b, i), w_ih.T) + bias).reshape(t, b, 8 * hsz)  # (T, B, 8H)
        xw_f, xw_b = ops.split(xw, 4 * hsz, axis=-1)  # (T, B, 4H) each
        xs = ops.unstack(ops.stack([xw_f, ops.flip(xw_b, (0,))], axis=1), axis=0)  # T x (2, B, 4H)
        keeps = ops.unstack(keep, axis=0)  # T x (2, B, H)
        w_hh = ops.stack([w_hh_f.T, w_hh_b.T], axis=0)  # (2, H, 4H)
        h = ops.zeros((2, b, hsz), x.dtype)  # (2, B, H)
        c = ops.zeros((2, b, hsz), x.dtype)  # (2, B, H)
        states = []
        for s in range(t):
            gates = xs[s] + ops.bmm(h, w_hh)  # (2, B, 4H)
            i_p, f_p, g_p, o_p = ops.split(gates, hsz, axis=-1)  # (2, B, H) each
            c_new = ops.sigmoid(f_p) * c + ops.sigmoid(i_p) * ops.tanh(g_p)  # (2, B, H)
            h_new = ops.sigmoid(o_p) * ops.tanh(c_new)  # (2, B, H)
            c = ops.select(keeps[s], c_new, c)  # (2, B, H): state carried over at padded steps
            h = ops.select(keeps[s], h_new, h)  # (2, B, H)
            states.append(h)
        return states

    def _keep(self, mask: Tensor) -> Tensor:
        # mask: (B, T) -> (T, 2, B, H) bool, direction 1 reversed in time
        m = mask.T > 0.5  # (T, B)
        m2 = ops.stack([m, ops.flip(m, (0,))], axis=1).expand_dims(-1)  # (T, 2, B, 1)
        return ops.broadcast_to(m2, (m2.shape[0], 2, m2.shape[2], self.hidden))  # (T, 2, B, H)

    def _run(self, x: Tensor, mask: Tensor) -> list:
        # x: (B, T, I), mask: (B, T) -> last layer's T states (2, B, H)
        keep = self._keep(mask)  # (T, 2, B, H)
        xt = x.transpose(1, 0, 2)  # (T, B, I)
        states = self._layer(xt, keep, 0)
        for layer in range(1, self.num_layers):
            xt = self._sequence(states)  # (T, B, 2H)
            states = self._layer(xt, keep, layer)
        return states

    @staticmethod
    def _sequence(states: list) -> Tensor:
        # T x (2, B, H) -> (T, B, 2H) in time order for both directions
        st = ops.stack(states, axis=0)  # (T, 2, B, H)
        return ops.concat([st[:, 0], ops.flip(st[:, 1], (0,))], axis=-1)  # (T, B, 2H)

    def construct(self, x: Tensor, mask: Tensor) -> Tensor:
        # x: (B, T, I), mask: (B, T)
        return self._sequence(self._run(x, mask)).transpose(1, 0, 2)  # (B, T, 2H)

    def last(self, x: Tensor, mask: Tensor) -> Tensor:
        """(B, 2H): forward state after the last step | backward state after the first step."""
        final = self._run(x, mask)[-1]  # (2, B, H)
        return ops.concat([final[0], final[1]], axis=-1)  # (B, 2H)


def _fused_ops(lib: str) -> ops.Custom:
    """The fused BiLSTM forward Custom op; its bprop is the fused backward op (model/kernels/bilstm.cc).

    Inputs x, mask, then (w_ih, w_hh, b_ih, b_hh) forward and reverse; outputs out (B, T, 2H),
    final (B, 2H), and two tensors kept for the backward pass."""
    f32 = ms.float32

    def fwd_shape(x: list, mask: list, w_ih: list, w_hh: list, *rest: list) -> tuple:
        out = [x[0], x[1], 2 * w_hh[1]]  # (B, T, 2H)
        return out, [x[0], 2 * w_hh[1]], out, [2, x[0], x[1], w_hh[0]]

    def bwd_shape(dout: list, dfinal: list, x: list, mask: list, wif: list, whf: list, *rest: list) -> tuple:
        return x, wif, whf, [whf[0]], wif, whf, [whf[0]]

    bwd = ops.Custom(f"{lib}:BiLstmBwd", out_shape=bwd_shape, out_dtype=lambda *a: (f32,) * 7, func_type="aot")

    def bprop(x: Tensor, mask: Tensor, wif: Tensor, whf: Tensor, bif: Tensor, bhf: Tensor, wib: Tensor,
              whb: Tensor, bib: Tensor, bhb: Tensor, out: tuple, dout: tuple) -> tuple:
        dx, dwif, dwhf, dbf, dwib, dwhb, dbb = bwd(dout[0], dout[1], x, mask, wif, whf, wib, whb,
                                                   out[0], out[2], out[3])
        return dx, ops.zeros_like(mask), dwif, dwhf, dbf, dbf, dwib, dwhb, dbb, dbb

    return ops.Custom(f"{lib}:BiLstmFwd", out_shape=fwd_shape, out_dtype=lambda *a: (f32,) * 4,
                      func_type="aot", bprop=bprop)


class _FusedLSTMCore(_UnrolledLSTMCore):
    """Same parameters and semantics as _UnrolledLSTMCore; each layer (both directions, forward and
    backward pass, input projection included) is one C++ kernel call (model/kernels/bilstm.cc)."""

    def __init__(self, input_size: int, hidden: int, num_layers: int, lib: str) -> None:
        super().__init__(input_size, hidden, num_layers)
        self.fused = _fused_ops(lib)

    def _layers(self, x: Tensor, mask: Tensor) -> tuple:
        # x: (B, T, I), mask: (B, T) -> (out (B, T, 2H), final (B, 2H)) of the last layer
        res = (x, x)  # res[0] feeds the next layer
        for layer in range(self.num_layers):
            res = self.fused(res[0], mask, *self._by_dir[2 * layer], *self._by_dir[2 * layer + 1])
        return res[0], res[1]

    def construct(self, x: Tensor, mask: Tensor) -> Tensor:
        # x: (B, T, I), mask: (B, T)
        return self._layers(x, mask)[0]  # (B, T, 2H)

    def last(self, x: Tensor, mask: Tensor) -> Tensor:
        return self._layers(x, mask)[1]  # (B, 2H): forward final | backward final


class BiLSTM(nn.Cell):
    """Bidirectional LSTM over (B, T, I) with mask (B, T) -> (B, T, 2H) (forward | backward halves).

    impl: "fused" (C++ kernel), "unrolled" (jit matmul recurrence), "auto" (fused if it builds, else
    unrolled) — these carry the state across padded steps — or "native" (mindspore.nn.LSTM). Parameter
    names are identical (``<prefix>.lstm.weight_ih_l0`` ...) so a checkpoint loads into any of them.
    """

    def __init__(self, input_size: int, hidden: int, num_layers: int = 1, impl: str = "auto") -> None:
        super().__init__()
        lib = kernel_library() if impl in ("auto", "fused") else None
        if impl == "fused" and lib is None:
            raise RuntimeError("impl='fused' but the fused BiLSTM kernel cannot be built here (see log)")
        if lib is not None:
            self.lstm = _FusedLSTMCore(input_size, hidden, num_layers, str(lib))
        elif impl in ("unrolled", "auto"):
            self.lstm = _UnrolledLSTMCore(input_size, hidden, num_layers)
        elif impl == "native":
            self.lstm = nn.LSTM(input_size, hidden, num_layers, has_bias=True, batch_first=True,
                                bidirectional=True)
        else:
            raise ValueError(f"BiLSTM impl must be one of auto/fused/unrolled/native, got {impl!r}")
        self.native = impl == "native"
        self.hidden = hidden

    def construct(self, x: Tensor, mask: Tensor) -> Tensor:
        # x: (B, T, I), mask: (B, T)
        if self.native:
            # nn.LSTM(x) -> (output, (h_n, c_n)) in 2.x; 2.9+ announces (input, h_0, c_0) inputs, so
            # we pass only the input, valid in both. The mask only zeroes x: padding advances the state.
            return self.lstm(x * mask.expand_dims(-1))[0]  # (B, T, 2H)
        return self.lstm(x, mask)  # (B, T, 2H)

    def last(self, x: Tensor, mask: Tensor) -> Tensor:
        """(B, T, I), (B, T) -> (B, 2H): forward output at the last step | backward output at the first.

        With left padding these are the final states of both directions (the unrolled core returns
        them without materialising the sequence).
        """
        if self.native:
            out = self.construct(x, mask)  # (B, T, 2H)
            return ops.concat([out[:, -1, :self.hidden], out[:, 0, self.hidden:]], axis=-1)  # (B, 2H)
        return self.lstm.last(x, mask)  # (B, 2H)

