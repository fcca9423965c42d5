"""Training with real MindSpore on small synthetic flows: loss falls, threshold, early stopping, fine-tuning,
save/load, scoring aligned to the input index."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from flowhawk.model.config import TrainConfig
from flowhawk.model.labels import encode_labels
from flowhawk.model.train import (
    class_weights,
    fit_network,
    learning_rates,
    prepare,
    train_model,
    weighted_cross_entropy,
)

SMALL = {"conv_channels": 8, "hidden": 8, "dropout": 0.0}


def synthetic_flows(n: int = 900, seed: int = 0) -> pd.DataFrame:
    """Benign web clients and two attackers (SYN flood, UDP flood) whose flows differ in size, port, flags."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(["Benign", "synflood", "udpflood"], size=n, p=[0.5, 0.3, 0.2])
    src = np.where(kind == "Benign", rng.choice(["10.0.0.1", "10.0.0.2", "10.0.0.3"], n),
                   np.where(kind == "synflood", "10.0.0.66", "10.0.0.77"))
    return pd.DataFrame({
        "IPV4_SRC_ADDR": src, "IPV4_DST_ADDR": "10.0.0.10",
        "L4_SRC_PORT": rng.integers(1024, 65535, n),
        "L4_DST_PORT": np.where(kind == "udpflood", 53, np.where(kind == "Benign", 443, 80)),
        "PROTOCOL": np.where(kind == "udpflood", 17, 6),
        "L7_PROTO": np.where(kind == "Benign", 91.0, 0.0),
        "IN_BYTES": np.where(kind == "Benign", rng.integers(500, 50_000, n), rng.integers(40, 120, n)),
        "OUT_BYTES": np.where(kind == "Benign", rng.integers(1000, 90_000, n), 0),
        "IN_PKTS": np.where(kind == "Benign", rng.integers(5, 60, n), 1),
        "OUT_PKTS": np.where(kind == "Benign", rng.integers(5, 60, n), 0),
        "TCP_FLAGS": np.where(kind == "synflood", 2, np.where(kind == "Benign", 27, 0)),
        "FLOW_DURATION_MILLISECONDS": np.where(kind == "Benign", rng.integers(10, 3000, n), 0),
        "FLOW_START_MILLISECONDS": np.arange(n) * 10 + 1_700_000_000_000,
        "Label": (kind != "Benign").astype(int), "Attack": kind,
    })


CONFIG = TrainConfig(epochs=4, batch_size=64, lr=0.01, window=4, split="stratified", patience=5, model=SMALL)


pytestmark = pytest.mark.slow  # real MindSpore graph compiles: ~10-25 s per trained network on 2 cores


@pytest.fixture(scope="module")
def trained():
    return train_model(synthetic_flows(), CONFIG)


def test_loss_falls_threshold_valid_and_detector_learns(trained):
    losses = [h["loss"] for h in trained.history]
    assert losses[-1] < losses[0]
    assert 0.0 <= trained.threshold <= 1.0
    assert trained.class_names == ["Benign", "Attack"]
    test = trained.metrics["test"]
    assert test["n"] == 90 and test["f1"] > 0.9 and test["benign_recall"] > 0.8
    assert sum(h["best"] for h in trained.history) == 1


def test_early_stopping_restores_the_best_weights():
    import mindspore as ms

    from flowhawk.model.network import build_network
    from flowhawk.model.scoring import predict_proba
    from flowhawk.model.splits import capped_subsample
    from flowhawk.model.train import build_model_config

    config = TrainConfig(epochs=6, batch_size=64, lr=0.01, window=4, split="stratified", patience=1, model=SMALL)
    ms.set_seed(0)
    prep = prepare(synthetic_flows(seed=1), config)
    network = build_network(build_model_config(config, prep.features.shape[1], 2))

    def sabotage(entry):  # after epoch 2's snapshot: wreck the weights, so epoch 3 cannot be the best
        if entry["epoch"] == 2:
            rng = np.random.default_rng(0)
            for p in network.get_parameters():
                ms.ops.assign(p, ms.Tensor(rng.normal(0, 5, p.shape).astype(np.float32)))

    history = fit_network(network, prep, config, on_epoch=sabotage)
    assert len(history) == 3 and not history[-1]["best"]  # stopped after one epoch without improvement
    best = min(history, key=lambda h: h["val_loss"])
    monitor = capped_subsample(prep.split.val, prep.y[prep.split.val], config.max_monitor_rows, config.seed)
    probs = predict_proba(network, prep.features, prep.index, monitor)
    weights = class_weights(prep.y[prep.train_rows], 2, True)
    assert weighted_cross_entropy(probs, prep.y[monitor], weights) == pytest.approx(best["val_loss"], rel=1e-4)
    assert history[-1]["val_loss"] > best["val_loss"]
    saved = {p.name: p.asnumpy() for p in network.get_parameters()}  # what a checkpoint would hold ...
    rebuilt = build_network(build_model_config(config, prep.features.shape[1], 2))
    ms.load_param_into_net(rebuilt, {k: ms.Parameter(ms.Tensor(v), name=k) for k, v in saved.items()})
    again = predict_proba(rebuilt, prep.features, prep.index, monitor)  # ... scores exactly as evaluated
    np.testing.assert_allclose(again, probs, atol=1e-5)


def test_multiclass_fine_tune_keeps_pipeline_and_classes(trained):
    frame = synthetic_flows(seed=2)
    base = train_model(frame, TrainConfig(**{**CONFIG.to_dict(), "task": "multiclass", "epochs": 2}))
    assert base.class_names == ["Benign", "synflood", "udpflood"]
    tuned = train_model(synthetic_flows(seed=3), TrainConfig(**{**CONFIG.to_dict(), "task": "multiclass",
                                                                 "epochs": 1}), init_from=base)
    assert tuned.pipeline.to_json() == base.pipeline.to_json()
    assert tuned.class_names == base.class_names and tuned.metrics["fine_tuned"]
    assert tuned.network is not base.network
    with pytest.raises(ValueError, match="binary model"):
        train_model(frame, TrainConfig(**{**CONFIG.to_dict(), "task": "multiclass"}), init_from=trained)


def test_save_load_and_scoring_aligned_to_input_index(trained, tmp_path):
    from flowhawk.model.scoring import score_frame
    from flowhawk.model.trained import TrainedModel

    frame = synthetic_flows(200, seed=4).sample(frac=1.0, random_state=0)
    frame.index = [f"flow-{i}" for i in range(len(frame))]
    scored = score_frame(trained, frame, batch_size=64)
    assert list(scored.index) == list(frame.index)
    assert list(scored.columns) == ["score", "is_anomaly", "predicted_class"]
    assert ((scored["score"] >= trained.threshold) == scored["is_anomaly"]).all()
    assert set(scored["predicted_class"]) <= set(trained.class_names)
    assert (scored["is_anomaly"] == (frame["Label"] == 1)).mean() > 0.9
    loaded = TrainedModel.load(trained.save(tmp_path / "m"))
    assert loaded.threshold == trained.threshold and loaded.history == trained.history
    again = score_frame(loaded, frame, batch_size=64)
    np.testing.assert_allclose(again["score"], scored["score"], atol=1e-6)
    assert score_frame(trained, frame.iloc[:0]).empty


def test_labels_and_config_validation():
    frame = pd.DataFrame({"Attack": ["benign", "DoS", None], "Label": [None, None, None]})
    y, names = encode_labels(frame, "binary")
    assert y.tolist() == [0, 1, -1] and names == ["Benign", "Attack"]
    y, names = encode_labels(frame, "multiclass")
    assert y.tolist() == [0, 1, -1] and names == ["Benign", "DoS"]
    with pytest.raises(ValueError, match="not among"):
        encode_labels(frame, "multiclass", ["Benign", "DDoS"])
    y = np.array([0] * 90 + [1] * 10)
    assert class_weights(y, 2, True).tolist() == pytest.approx([100 / 180, 100 / 20])
    assert class_weights(y, 2, True, power=0.5).tolist() == pytest.approx([(100 / 180) ** 0.5, 5 ** 0.5])
    assert class_weights(np.array([0] * 10_000 + [1]), 2, True).max() == pytest.approx(
        100 * class_weights(np.array([0] * 10_000 + [1]), 2, True).min())  # capped ratio
    assert class_weights(y, 2, False).tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match=r"TrainConfig\.lr"):
        TrainConfig(lr=0)
    with pytest.raises(ValueError, match=r"TrainConfig\.model"):
        TrainConfig(model={"window": 3})
    with pytest.raises(ValueError, match="unknown key"):
        TrainConfig.from_dict({"epochs": 2, "epoch": 3})
    with pytest.raises(ValueError, match=r"TrainConfig\.feature_options"):
        TrainConfig(feature_options={"top_value": 4})
    with pytest.raises(ValueError, match=r"FeaturePipeline\.top_ports"):
        TrainConfig(feature_options={"top_ports": -1})
    config = TrainConfig(feature_options={"top_values": 4})
    assert TrainConfig.from_dict(config.to_dict()).feature_options == {"top_values": 4}


def test_cosine_schedule_decays_per_step_then_holds():
    assert learning_rates(TrainConfig(lr=0.01), 4) == 0.01
    with pytest.raises(ValueError, match=r"TrainConfig\.lr_schedule"):
        TrainConfig(lr_schedule="linear")
    config = TrainConfig(lr=0.01, epochs=3, batch_size=100, lr_schedule="cosine")
    rates = learning_rates(config, 3)  # 3 steps per epoch -> 9 decaying steps
    assert len(rates) == 18 and rates[0] == pytest.approx(0.01)
    assert all(a > b for a, b in itertools.pairwise(rates[:9]))
    assert rates[9:] == [pytest.approx(1e-4)] * 9 and rates[8] > 1e-4


def test_feature_options_reach_the_fitted_pipeline():
    prep = prepare(synthetic_flows(300), TrainConfig(feature_options={"top_values": 3, "top_ports": 2}))
    assert prep.pipeline.top_values == 3 and prep.pipeline.top_ports == 2
    assert any("=" in n and n.split("=")[0] == "IN_BYTES" for n in prep.pipeline.feature_names)
    assert prep.features.shape == (300, prep.pipeline.n_features)
