"""Occlusion explanations with a real MindSpore network: when attacks differ from benign flows in one field only,
that field is the explanation's top feature, observed vs expected."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from flowhawk.model.scoring import score_frame
from flowhawk.model.train import TrainConfig, train_model
from flowhawk.reports.explain import explain_supervised, make_explanation, reason_text

pytestmark = pytest.mark.slow  # trains a small network (~20 s on 2 cores)


def one_field_flows(n: int = 900, seed: int = 0) -> pd.DataFrame:
    """Benign clients and one attacker whose flows share every distribution except TCP_FLAGS (2 vs 27)."""
    rng = np.random.default_rng(seed)
    attack = rng.random(n) < 0.4
    return pd.DataFrame({
        "IPV4_SRC_ADDR": np.where(attack, "10.0.0.66", rng.choice(["10.0.0.1", "10.0.0.2", "10.0.0.3"], n)),
        "IPV4_DST_ADDR": "10.0.0.10", "L4_SRC_PORT": rng.integers(1024, 65535, n), "L4_DST_PORT": 80,
        "PROTOCOL": 6, "IN_BYTES": rng.integers(200, 5000, n), "OUT_BYTES": rng.integers(200, 5000, n),
        "IN_PKTS": rng.integers(3, 30, n), "OUT_PKTS": rng.integers(3, 30, n),
        "TCP_FLAGS": np.where(attack, 2, 27), "FLOW_DURATION_MILLISECONDS": rng.integers(10, 3000, n),
        "FLOW_START_MILLISECONDS": np.arange(n) * 10 + 1_700_000_000_000,
        "Label": attack.astype(int), "Attack": np.where(attack, "synflood", "Benign"),
    })


@pytest.fixture(scope="module")
def trained():
    config = TrainConfig(epochs=4, batch_size=64, lr=0.01, window=4, split="stratified", patience=5,
                         model={"conv_channels": 8, "hidden": 8, "dropout": 0.0})
    return train_model(one_field_flows(), config)


@pytest.mark.parametrize(("reference", "scope"), [("sampled", "flow"), ("mean", "flow"), ("mean", "window")])
def test_top_feature_is_the_only_field_that_differs(trained, reference, scope):
    flows = one_field_flows(seed=1)
    scores = score_frame(trained, flows)
    explained = explain_supervised(trained, flows, scores, reference=reference, scope=scope)
    anomalous = scores["is_anomaly"].to_numpy()
    assert anomalous.sum() > 200
    assert explained["reason"][~anomalous].isna().all() and explained["reason"][anomalous].notna().all()
    tops = [json.loads(e)["top"][0] for e in explained["explanation"][anomalous]]
    share = np.mean([t["feature"] == "TCP_FLAGS" for t in tops])
    assert share > 0.9, share
    hit = next(t for t in tops if t["feature"] == "TCP_FLAGS")
    assert hit["observed"] == 2 and hit["expected"] == 27 and hit["weight"] > 0
    assert "TCP_FLAGS 2 (normal 27)" in explained["reason"][anomalous].iloc[0]


def test_sampled_reference_is_seeded_and_validated(trained):
    flows = one_field_flows(seed=3)
    scores = score_frame(trained, flows)
    sampled = {"reference": "sampled", "samples": 2}
    once = explain_supervised(trained, flows, scores, seed=5, **sampled)
    assert once.equals(explain_supervised(trained, flows, scores, seed=5, **sampled))
    other = explain_supervised(trained, flows, scores, seed=6, **sampled)["explanation"].dropna().map(json.loads)
    weights = [t["weight"] for e in once["explanation"].dropna().map(json.loads) for t in e["top"]]
    assert weights != [t["weight"] for e in other for t in e["top"]]  # other benign draws, other weights
    with pytest.raises(ValueError, match="reference must be one of"):
        explain_supervised(trained, flows, scores, reference="zero")
    with pytest.raises(ValueError, match=r"samples must be an integer in \[1, 64\]"):
        explain_supervised(trained, flows, scores, samples=0)


def test_flow_task_takes_the_reference_from_the_analyst_config(trained):
    from flowhawk.flows.tasks import explain_flows
    from flowhawk.reports.analyst_config import AnalystConfig

    flows = one_field_flows(seed=4)
    scores = score_frame(trained, flows)
    config = AnalystConfig(explain_reference="sampled", explain_samples=2)
    got = explain_flows.fn(trained, flows, scores, config)["explanation"]
    want = explain_supervised(trained, flows, scores, reference="sampled", samples=2)["explanation"]
    assert got.equals(want) and not got.equals(explain_flows.fn(trained, flows, scores, AnalystConfig())["explanation"])
    window = explain_flows.fn(trained, flows, scores, AnalystConfig(explain_scope="window"))["explanation"]
    assert window.equals(explain_supervised(trained, flows, scores, scope="window")["explanation"])
    assert not window.equals(explain_flows.fn(trained, flows, scores, AnalystConfig())["explanation"])
    with pytest.raises(ValueError, match="scope must be one of"):
        explain_supervised(trained, flows, scores, scope="host")
    for bad in ({"explain_reference": "zero"}, {"explain_samples": 0}, {"explain_scope": "host"}):
        with pytest.raises(ValueError, match=r"AnalystConfig\.explain_"):
            AnalystConfig(**bad)


def test_cap_explains_every_source_first(trained):
    flows = one_field_flows(seed=2)
    scores = score_frame(trained, flows)
    explained = explain_supervised(trained, flows, scores, max_flows=1)
    assert explained["reason"].notna().sum() == 1
    assert explained["reason"].notna().idxmax() == scores["score"].idxmax()


def test_explanation_json_shape():
    text = make_explanation("novelty", "zscore", None, None, 0.7,
                            [{"feature": "IN_BYTES", "observed": np.int64(40), "expected": 1500.0,
                              "weight": np.float32(5.5)}])
    data = json.loads(text)
    assert data == {"version": 1, "model": "novelty", "method": "zscore", "predicted_class": None,
                    "probability": None, "score": 0.7,
                    "top": [{"feature": "IN_BYTES", "observed": 40, "expected": 1500, "weight": 5.5}]}
    assert reason_text(None, None, data["top"]) == "anomaly: IN_BYTES 40 (normal 1500)"
    rates = [{"feature": "HOST_RATE", "observed": 15000.0, "expected": 2.088458},
             {"feature": "FLOW_DURATION_MILLISECONDS", "observed": 5037.4, "expected": 0.156976},
             {"feature": "HOST_PORT_SPREAD", "observed": 19.364917, "expected": float("nan")}]
    assert reason_text("novel", None, rates) == ("novel: HOST_RATE 15000 (normal 2.09), FLOW_DURATION_MILLISECONDS "
                                                 "5037 (normal 0.157), HOST_PORT_SPREAD 19.4 (normal n/a)")


def test_a_split_batch_scored_with_its_history_scores_like_the_whole(trained):
    """The second half of a capture, scored with the first half as context (as process_inbox scores a batch with
    the hosts' earlier lake flows), gets the whole capture's scores; without it each host's first flows of the
    batch have short windows. The explanations use the same windows: their probability is the score."""
    flows = one_field_flows(seed=4)
    whole = score_frame(trained, flows)
    first, second = flows.iloc[:450], flows.iloc[450:]
    fresh = score_frame(trained, second)
    joined = score_frame(trained, second, context=first)
    np.testing.assert_allclose(joined["score"], whole["score"].iloc[450:], rtol=1e-5, atol=1e-6)
    assert list(joined.index) == list(second.index)
    assert not np.allclose(fresh["score"], whole["score"].iloc[450:], rtol=1e-5, atol=1e-6)
    later = flows.assign(FLOW_START_MILLISECONDS=flows["FLOW_START_MILLISECONDS"] + 10**9)
    np.testing.assert_allclose(score_frame(trained, second, context=later)["score"], fresh["score"])  # not earlier
    explained = explain_supervised(trained, second, joined, context=first)
    anomalous = joined["is_anomaly"].to_numpy()
    probability = np.array([json.loads(e)["probability"] for e in explained["explanation"][anomalous]])
    np.testing.assert_allclose(probability, joined["score"][anomalous], rtol=1e-4)


def test_combined_reason_names_the_inbound_flood_rule():
    """A flow only the novelty model's inbound-flood rule flags is classed and explained as such; the others as
    before (the supervised class when it flags, 'novel' when only the network does)."""
    from flowhawk.reports.combine import combine_scores

    entry = '{"feature": "DST_SOURCES", "observed": 9697.0, "expected": 7.0, "share": null}'
    novelty = pd.DataFrame({"novelty_score": [0.9999, 0.9999, 0.2], "is_anomaly": [True, True, False],
                            "inbound_flood": [True, False, False],
                            "explanation": [f"[{entry}]", '[{"feature": "IN_PKTS", "observed": 5000.0, '
                                            '"expected": 35.0, "share": 0.9}]', None]})
    out = combine_scores(3, None, novelty)
    assert out["predicted_class"].tolist() == ["inbound-flood", "novel", "Benign"]
    assert out["reason"][0] == "inbound-flood: DST_SOURCES 9697 (normal 7)"
    assert json.loads(out["explanation"][0])["predicted_class"] == "inbound-flood"
    assert out["reason"][1].startswith("novel: IN_PKTS 5000") and out["reason"][2] is None
