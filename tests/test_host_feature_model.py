"""The supervised detector with host features (``TrainConfig.host_features``): a real MindSpore network learns an
attack that no flow field shows, only what its host does (its rate), names that host feature in its explanation,
scores a batch with its history like one continuous capture, and survives the registry."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from flowhawk.model.config import TrainConfig
from flowhawk.model.host_features import HOST_FEATURES, with_host_features
from flowhawk.model.refresh import RefreshConfig, prepare_refresh, refresh_frames
from flowhawk.model.registry import Registry
from flowhawk.model.scoring import score_frame
from flowhawk.model.train import train_model
from flowhawk.reports.explain import explain_supervised

pytestmark = pytest.mark.slow  # trains a small network (~15 s on 2 cores)

BENIGN = ("10.0.0.1", "10.0.0.2", "10.0.0.3")


def rate_only_flows(n: int = 1200, seed: int = 0) -> pd.DataFrame:
    """Benign clients one flow per ~2 s each, an attacker one flow every 2 ms; every flow field has the same
    distribution for both (only the start times, which no flow feature reads, tell them apart)."""
    rng = np.random.default_rng(seed)
    attack = rng.random(n) < 0.4
    source = np.where(attack, "10.0.0.66", rng.choice(BENIGN, n))
    gap = np.where(attack, 2, rng.integers(1000, 3000, n))
    start = pd.Series(gap).groupby(source).cumsum().to_numpy() + 1_700_000_000_000
    return pd.DataFrame({
        "IPV4_SRC_ADDR": source, "IPV4_DST_ADDR": "10.0.0.10", "L4_SRC_PORT": rng.integers(1024, 65535, n),
        "L4_DST_PORT": 80, "PROTOCOL": 6, "IN_BYTES": rng.integers(200, 5000, n),
        "OUT_BYTES": rng.integers(200, 5000, n), "IN_PKTS": rng.integers(3, 30, n),
        "OUT_PKTS": rng.integers(3, 30, n), "TCP_FLAGS": 27, "FLOW_DURATION_MILLISECONDS": rng.integers(10, 3000, n),
        "FLOW_START_MILLISECONDS": start,
        "Label": attack.astype(int), "Attack": np.where(attack, "httpflood", "Benign"),
    }).sort_values("FLOW_START_MILLISECONDS", kind="stable", ignore_index=True)


def small_config(host_features: bool) -> TrainConfig:
    return TrainConfig(epochs=6, batch_size=64, lr=0.01, window=4, split="stratified", patience=6,
                       host_features=host_features, model={"conv_channels": 8, "hidden": 8, "dropout": 0.0})


@pytest.fixture(scope="module")
def trained():
    return train_model(rate_only_flows(), small_config(True))


def test_host_features_learn_and_explain_what_no_flow_field_shows(trained):
    assert {"HOST_RATE", "HOST_SIZE_SPREAD"} <= {s["name"] for s in trained.pipeline.specs}  # constants dropped
    flows = rate_only_flows(seed=1)
    scores = score_frame(trained, flows)
    attack = flows["Label"].to_numpy() == 1
    flagged = scores["is_anomaly"].to_numpy()
    assert flagged[attack].mean() > 0.9 and flagged[~attack].mean() < 0.1, (flagged[attack].mean(),
                                                                          flagged[~attack].mean())
    explained = explain_supervised(trained, flows, scores)
    tops = [json.loads(e)["top"][0] for e in explained["explanation"][flagged & attack]]
    assert np.mean([t["feature"] == "HOST_RATE" for t in tops]) > 0.9
    hit = next(t for t in tops if t["feature"] == "HOST_RATE")
    assert hit["observed"] > 100 * hit["expected"]  # hundreds of flows/s against the clients' ~0.5


def test_without_host_features_the_same_attack_is_invisible():
    """The control: the same data without host features gives the network nothing to learn from."""
    plain = train_model(rate_only_flows(), small_config(False))
    assert not {s["name"] for s in plain.pipeline.specs} & set(HOST_FEATURES)
    flows = rate_only_flows(seed=1)
    flagged = score_frame(plain, flows)["is_anomaly"].to_numpy()
    attack = flows["Label"].to_numpy() == 1
    assert flagged[attack].mean() - flagged[~attack].mean() < 0.5


def test_a_batch_with_its_history_scores_like_the_whole_with_host_features(trained):
    """Context flows carry host features of their own windows: the history reaches 2 (T - 1) flows back per host,
    so the second half of a capture scored with the first as context gets the whole capture's scores."""
    flows = rate_only_flows(seed=2)
    whole = score_frame(trained, flows)
    first, second = flows.iloc[:600], flows.iloc[600:]
    joined = score_frame(trained, second, context=first)
    np.testing.assert_allclose(joined["score"], whole["score"].iloc[600:], rtol=1e-5, atol=1e-6)


def test_the_registry_saves_and_loads_a_host_feature_model(trained, tmp_path):
    registry = Registry(tmp_path / "models")
    version = registry.save(trained, status="promoted", reason="test")
    loaded = registry.load(version)
    assert loaded.train_config.host_features
    flows = rate_only_flows(seed=3)
    np.testing.assert_allclose(score_frame(loaded, flows)["score"], score_frame(trained, flows)["score"],
                               rtol=1e-5, atol=1e-6)


def test_a_refresh_keeps_host_features_and_their_windows(trained):
    """Replayed old flows bring 2 (T - 1) flows of context each, so their host features see full windows; the
    candidate keeps the pipeline (host features included) and still detects the rate-only attack."""
    old, new = rate_only_flows(seed=4).assign(row=lambda f: np.arange(len(f))), rate_only_flows(n=600, seed=5)
    new["FLOW_START_MILLISECONDS"] += 10**9  # the new batch comes after the old ones
    config = RefreshConfig(replay_rows=150, epochs=1, block_rows=32, holdout_fraction=0.25)
    frame, prep, origin, _ = prepare_refresh(trained, old, new, config)
    whole = trained.pipeline.transform(with_host_features(old, trained.train_config.window)[0])
    replayed = prep.split.train[origin[prep.split.train] == 0]  # old rows trained on (not context-only)
    assert len(replayed) >= 150
    seen = np.unique(prep.index.index_matrix(replayed))  # every flow in their windows, context included
    seen = seen[seen >= 0]
    assert (origin[seen] == 0).all() and len(seen) > len(replayed)
    np.testing.assert_allclose(prep.features[seen], whole[frame["row"].to_numpy()[seen].astype(int)],
                               rtol=1e-5, atol=1e-5)
    refreshed = refresh_frames(trained, old, new, config)
    assert refreshed.candidate.pipeline.feature_names == trained.pipeline.feature_names
    flows = rate_only_flows(seed=6)
    flagged = score_frame(refreshed.candidate, flows)["is_anomaly"].to_numpy()
    attack = flows["Label"].to_numpy() == 1
    assert flagged[attack].mean() > 0.9 and flagged[~attack].mean() < 0.1


def test_host_features_need_per_host_windows():
    with pytest.raises(ValueError, match=r"TrainConfig\.host_features"):
        TrainConfig(host_features=True, group_by="global")
    with pytest.raises(ValueError, match=r"TrainConfig\.host_features"):
        TrainConfig(host_features=1)
