"""MindSpore detector networks: shapes, mask invariance, a real (jit) training signal, config rules."""

from __future__ import annotations

import json

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")
from mindspore import Tensor, nn  # noqa: E402

from flowhawk.model.config import ModelConfig  # noqa: E402
from flowhawk.model.network import build_network, make_predict, make_train_step  # noqa: E402

SMALL = {"n_features": 6, "window": 8, "conv_channels": 8, "hidden": 8}


def _batch(cfg: ModelConfig, b: int, pad: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(b, cfg.window, cfg.n_features)).astype(np.float32)
    mask = np.ones((b, cfg.window), np.float32)
    mask[:, :pad] = 0.0
    return x, mask


@pytest.mark.parametrize(("arch", "n_classes", "skip"), [("cnn_bilstm", 2, 0), ("cnn_bilstm", 5, 0),
                                                       ("multiscale", 5, 0), ("cnn_bilstm", 2, 4),
                                                       ("multiscale", 5, 4)])
def test_output_shape(arch: str, n_classes: int, skip: int) -> None:
    cfg = ModelConfig(arch=arch, n_classes=n_classes, flow_skip=skip, **SMALL)
    x, mask = _batch(cfg, 3, 2)
    logits = make_predict(build_network(cfg))(Tensor(x), Tensor(mask)).asnumpy()
    assert logits.shape == (3, n_classes)
    assert np.isfinite(logits).all()


@pytest.mark.parametrize(("arch", "skip"), [("cnn_bilstm", 0), ("multiscale", 0), ("cnn_bilstm", 4)])
def test_padded_values_do_not_change_logits(arch: str, skip: int) -> None:
    cfg = ModelConfig(arch=arch, flow_skip=skip, **SMALL)
    predict = make_predict(build_network(cfg))
    x, mask = _batch(cfg, 4, 3)
    x2 = x.copy()
    x2[:, :3, :] = np.random.default_rng(1).normal(scale=100.0, size=(4, 3, cfg.n_features))
    a = predict(Tensor(x), Tensor(mask)).asnumpy()
    b = predict(Tensor(x2), Tensor(mask)).asnumpy()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # and the real steps do matter
    x3 = x.copy()
    x3[:, -1, :] += 5.0
    assert not np.allclose(a, predict(Tensor(x3), Tensor(mask)).asnumpy(), atol=1e-4)


@pytest.mark.parametrize(("arch", "impl"), [("cnn_bilstm", "auto"),
                                           pytest.param("multiscale", "auto", marks=pytest.mark.slow)])  # ~4 s
def test_padding_equals_shorter_sequence(arch: str, impl: str) -> None:
    """Left padding is invisible (state carried over): padded window == the same flows un-padded."""
    cfg_long = ModelConfig(arch=arch, impl=impl, **{**SMALL, "window": 8, "pool": 2})
    cfg_short = ModelConfig(arch=arch, impl=impl, **{**SMALL, "window": 4, "pool": 2})
    net = build_network(cfg_long)
    x, mask = _batch(cfg_long, 2, 4)
    long = make_predict(net)(Tensor(x), Tensor(mask)).asnumpy()
    short = make_predict(net)(Tensor(x[:, 4:]), Tensor(mask[:, 4:])).asnumpy()
    np.testing.assert_allclose(long, short, rtol=1e-4, atol=1e-5)
    assert cfg_short.window == 4


@pytest.mark.slow  # two graph compiles of the 4-step recurrence: ~6 s on an idle 2-core machine
def test_unrolled_lstm_matches_native() -> None:
    """Same parameters, no padding: the unrolled recurrence reproduces mindspore.nn.LSTM."""
    cfg_u = ModelConfig(**{**SMALL, "window": 4}, dropout=0.0, impl="unrolled")
    cfg_n = ModelConfig(**{**SMALL, "window": 4}, dropout=0.0, impl="native")
    net_u, net_n = build_network(cfg_u), build_network(cfg_n)
    ms.load_param_into_net(net_n, {p.name: p for p in net_u.get_parameters()}, strict_load=True)
    x, mask = _batch(cfg_u, 3, 0)
    a = make_predict(net_u)(Tensor(x), Tensor(mask)).asnumpy()
    b = make_predict(net_n)(Tensor(x), Tensor(mask)).asnumpy()
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.usefixtures("fused_kernels")  # compiled (or loaded) when the first of these runs; skipped without g++
@pytest.mark.parametrize(("arch", "window", "pool", "kernel", "layers", "batch"), [
    ("cnn_bilstm", 8, 2, 3, 1, 6), ("cnn_bilstm", 10, 3, 4, 1, 6),
    pytest.param("multiscale", 8, 2, 3, 2, 6, marks=pytest.mark.slow),  # 2 layers, 3 convs: ~3.5 s of compiles
    ("cnn_bilstm", 2, 1, 1, 1, 1)])
def test_fused_kernels_match_unrolled(arch: str, window: int, pool: int, kernel: int, layers: int,
                                      batch: int) -> None:
    """The C++ kernels (conv+pool, BiLSTM) give the same loss and gradients as plain MindSpore ops."""
    base = {**SMALL, "window": window, "pool": pool, "kernel_size": kernel, "dropout": 0.0, "n_classes": 3,
            "lstm_layers": layers}
    net_u = build_network(ModelConfig(arch=arch, impl="unrolled", **base))
    net_f = build_network(ModelConfig(arch=arch, impl="fused", **base))
    ms.load_param_into_net(net_f, {p.name: p for p in net_u.get_parameters()}, strict_load=True)
    x, mask = _batch(net_u_cfg := ModelConfig(arch=arch, **base), batch, 0)
    if batch >= 6:
        mask[:3, : window // 2] = 0.0
        mask[4, : window - 1] = 0.0
    y = Tensor(np.arange(batch, dtype=np.int32) % 3)
    loss_fn = nn.CrossEntropyLoss()
    results = []
    for net in (net_u, net_f):
        grad = ms.value_and_grad(lambda a, m, t, n=net: loss_fn(n(a, m), t), 0, net.trainable_params())
        loss, (dx, dparams) = grad(Tensor(x), Tensor(mask), y)
        results.append((loss.asnumpy(), dx.asnumpy(), [g.asnumpy() for g in dparams]))
    (lu, dxu, gu), (lf, dxf, gf) = results
    assert net_u_cfg.window == window
    np.testing.assert_allclose(lf, lu, rtol=1e-5)
    np.testing.assert_allclose(dxf, dxu, atol=1e-6)
    for a, b in zip(gf, gu, strict=True):
        np.testing.assert_allclose(a, b, atol=2e-6)


@pytest.mark.slow  # trains
@pytest.mark.parametrize("arch", ["cnn_bilstm", "multiscale"])
def test_loss_falls_with_jit_train_steps(arch: str) -> None:
    ms.set_seed(0)
    cfg = ModelConfig(arch=arch, n_classes=3, dropout=0.1, **SMALL)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=48).astype(np.int32)
    x = rng.normal(scale=0.3, size=(48, cfg.window, cfg.n_features)).astype(np.float32)
    x[:, :, 0] += 2.0 * y[:, None]  # class is readable from feature 0
    mask = np.ones((48, cfg.window), np.float32)
    mask[::2, :3] = 0.0
    net = build_network(cfg)
    step = make_train_step(net, nn.CrossEntropyLoss(), nn.Adam(net.trainable_params(), learning_rate=0.02))
    args = (Tensor(x), Tensor(mask), Tensor(y))
    losses = [float(step(*args).asnumpy()) for _ in range(25)]
    assert losses[-1] < 0.5 * losses[0], losses
    acc = (make_predict(net)(Tensor(x), Tensor(mask)).asnumpy().argmax(1) == y).mean()
    assert acc > 0.9


@pytest.mark.slow  # trains
@pytest.mark.parametrize("arch", ["cnn_bilstm", "multiscale"])
def test_flow_skip_reads_the_scored_flow(arch: str) -> None:
    """The class lives only in the last (scored) flow's feature 0; the rest of the window is noise."""
    ms.set_seed(0)
    cfg = ModelConfig(arch=arch, n_classes=2, dropout=0.0, flow_skip=8, **SMALL)
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, size=64).astype(np.int32)
    x = rng.normal(size=(64, cfg.window, cfg.n_features)).astype(np.float32)
    x[:, -1, 0] = np.where(y == 1, 1.5, -1.5) + rng.normal(scale=0.2, size=64)
    mask = np.ones((64, cfg.window), np.float32)
    net = build_network(cfg)
    assert {p.name for p in net.trainable_params()} >= {"skip.dense.weight", "skip.dense.bias"}
    step = make_train_step(net, nn.CrossEntropyLoss(), nn.Adam(net.trainable_params(), learning_rate=0.02))
    losses = [float(step(Tensor(x), Tensor(mask), Tensor(y)).asnumpy()) for _ in range(30)]
    assert losses[-1] < 0.3 * losses[0], losses
    assert (make_predict(net)(Tensor(x), Tensor(mask)).asnumpy().argmax(1) == y).mean() == 1.0


@pytest.mark.slow  # runs train steps
def test_predict_is_deterministic_after_training() -> None:
    cfg = ModelConfig(**SMALL, dropout=0.5)
    net = build_network(cfg)
    step = make_train_step(net, nn.CrossEntropyLoss(), nn.SGD(net.trainable_params(), learning_rate=0.0))
    predict = make_predict(net)
    x, mask = _batch(cfg, 4, 0)
    y = Tensor(np.zeros(4, np.int32))
    a = predict(Tensor(x), Tensor(mask)).asnumpy()
    losses = {float(step(Tensor(x), Tensor(mask), y).asnumpy()) for _ in range(3)}
    b = predict(Tensor(x), Tensor(mask)).asnumpy()
    np.testing.assert_array_equal(a, b)
    assert len(losses) > 1, "dropout should make train-mode losses differ (lr=0, same batch)"
    assert float(step(Tensor(x), Tensor(mask), y).asnumpy()) != float(step(Tensor(x), Tensor(mask), y).asnumpy())


def test_config_roundtrip_json() -> None:
    cfg = ModelConfig(arch="multiscale", n_features=30, n_classes=4, multiscale_kernels=(3, 5))
    d = json.loads(json.dumps(cfg.to_dict()))
    assert ModelConfig.from_dict(d) == cfg


def test_config_rejects_unknown_keys() -> None:
    d = ModelConfig().to_dict() | {"hiddden": 32}
    with pytest.raises(ValueError, match="hiddden"):
        ModelConfig.from_dict(d)


@pytest.mark.parametrize(("field", "value"), [
    ("arch", "transformer"), ("n_classes", 1), ("window", 0), ("dropout", 1.0), ("hidden", -4),
    ("pool", 99), ("kernel_size", 2.5), ("multiscale_kernels", (3, 0)), ("impl", "cudnn"),
])
def test_config_validation_names_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field.split("_kernels")[0]):
        ModelConfig(**{field: value})


def test_build_network_rejects_non_config() -> None:
    with pytest.raises(TypeError, match="ModelConfig"):
        build_network({"arch": "cnn_bilstm"})  # type: ignore[arg-type]


@pytest.mark.usefixtures("fused_kernels")
def test_fused_bilstm_two_threads_same_result() -> None:
    """Running the LSTM directions (and dx rows) on two threads gives the very same values."""
    from flowhawk.model.kernels import set_kernel_threads
    from flowhawk.model.layers import BiLSTM

    layer = BiLSTM(8, 64, 1, "fused")  # B*T*H = 128*8*64 reaches the two-thread threshold
    rng = np.random.default_rng(3)
    x = Tensor(rng.normal(size=(128, 8, 8)).astype(np.float32))
    mask_np = np.ones((128, 8), np.float32)
    mask_np[:50, :3] = 0.0
    mask = Tensor(mask_np)
    grad = ms.value_and_grad(lambda a, m: (layer(a, m) ** 2).sum() + layer.last(a, m).sum(), 0,
                             layer.trainable_params())
    results = []
    try:
        for threads in (1, 2):
            set_kernel_threads(threads)
            loss, (dx, dparams) = grad(x, mask)
            results.append([loss.asnumpy(), dx.asnumpy(), *(g.asnumpy() for g in dparams)])
    finally:
        set_kernel_threads(2)
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)
