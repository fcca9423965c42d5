"""FeaturePipeline: JSON round trip, hostile values, unseen categories, dropped columns."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from flowhawk.model.features import FeaturePipeline, feature_columns


def _flows(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "IPV4_SRC_ADDR": rng.choice(["10.0.0.1", "10.0.0.2"], n),
        "IPV4_DST_ADDR": "10.0.0.9",
        "L4_SRC_PORT": rng.integers(1024, 65535, n),
        "L4_DST_PORT": rng.choice([80, 443, 53, 8080], n),
        "PROTOCOL": rng.choice([6, 6, 17, 1], n),
        "L7_PROTO": rng.choice([7.0, 91.126, 5.0, np.nan], n),
        "IN_BYTES": rng.integers(40, 100_000, n),
        "OUT_BYTES": rng.integers(0, 1_000_000, n),
        "IN_PKTS": rng.integers(1, 100, n),
        "OUT_PKTS": rng.integers(0, 100, n),
        "TCP_FLAGS": rng.choice([2, 18, 27, 0], n),
        "FLOW_DURATION_MILLISECONDS": rng.integers(0, 5000, n).astype(float),
        "MIN_TTL": pd.array([None] * n, dtype="Int16"),  # entirely null: dropped in "full"
    })


def test_json_round_trip_transforms_identically():
    flows = _flows()
    pipeline = FeaturePipeline("nf-v1").fit(flows)
    x = pipeline.transform(flows)
    assert x.dtype == np.float32 and x.shape == (len(flows), pipeline.n_features)
    text = pipeline.to_json()
    json.loads(text)  # plain JSON
    again = FeaturePipeline.from_json(text)
    assert again.feature_names == pipeline.feature_names
    np.testing.assert_array_equal(again.transform(flows), x)
    assert not any("ADDR" in name for name in pipeline.feature_names)


def test_nan_inf_and_absurd_values_stay_finite_and_bounded():
    train = _flows()
    pipeline = FeaturePipeline("nf-v1").fit(train)
    hostile = _flows(6, seed=1)
    hostile["IN_BYTES"] = [np.nan, np.inf, -np.inf, 8e18, -5, 10**15]
    hostile["L4_DST_PORT"] = [-1, 70000, np.nan, 80, 0, 65535]
    hostile["TCP_FLAGS"] = [np.nan, -3, 2**40, 2, 255, 18]
    hostile["PROTOCOL"] = ["x", np.nan, 6, 250, 17, 1]
    x = pipeline.transform(hostile)
    assert np.isfinite(x).all()
    names = pipeline.feature_names
    col = names.index("IN_BYTES")
    fitted = pipeline.transform(train)[:, col]
    assert x[:, col].max() <= fitted.max() + 1.0 and x[:, col].min() >= fitted.min() - 1.0
    assert x[0, col] == x[0, col]  # NaN became the fitted median, not NaN
    assert x[3, names.index("TCP_FLAGS:bit1")] == 1.0 and x[0, names.index("TCP_FLAGS:bit1")] == 0.0
    assert x[4, [names.index(f"TCP_FLAGS:bit{i}") for i in range(8)]].tolist() == [1.0] * 8
    assert x[3, names.index("L4_DST_PORT=80")] == 1.0
    assert x[1, names.index("L4_DST_PORT:registered")] == 0.0  # 70000 is no port: no bucket
    assert x[:, names.index("L4_DST_PORT:value")].tolist() == pytest.approx([-1, -1, -1, 80 / 65535, 0, 1])


def test_unseen_categories_go_to_other():
    pipeline = FeaturePipeline("nf-v1").fit(_flows())
    new = _flows(3, seed=2)
    new["PROTOCOL"] = [132, 6, 47]
    new["L7_PROTO"] = [999.1, 7.178, 91.0]
    x = pipeline.transform(new)
    names = pipeline.feature_names
    assert x[:, names.index("PROTOCOL=other")].tolist() == [1.0, 0.0, 1.0]
    assert x[1, names.index("L7_PROTO=7")] == 1.0  # master id of 7.178
    assert x[0, names.index("L7_PROTO=other")] == 1.0
    assert x[:, [n.startswith("PROTOCOL=") for n in names]].sum(axis=1).tolist() == [1.0, 1.0, 1.0]


def test_missing_indicator_only_when_training_had_missing_values():
    flows = _flows()
    pipeline = FeaturePipeline("nf-v1").fit(flows)
    assert "IN_BYTES:missing" not in pipeline.feature_names
    flows.loc[::10, "IN_BYTES"] = np.nan
    pipeline = FeaturePipeline("nf-v1").fit(flows)
    x = pipeline.transform(flows)
    assert x[::10, pipeline.feature_names.index("IN_BYTES:missing")].tolist() == [1.0] * 40


def test_full_set_drops_null_and_absent_columns_and_tolerates_absent_at_transform(caplog):
    flows = _flows()
    pipeline = FeaturePipeline("full").fit(flows)
    assert pipeline.dropped["MIN_TTL"] == "entirely null"
    assert pipeline.dropped["SRC_TO_DST_IAT_AVG"] == "absent"
    assert "FLOW_START_MILLISECONDS" not in feature_columns("full")
    x = pipeline.transform(flows.drop(columns=["OUT_BYTES"]))
    assert np.isfinite(x).all()
    assert "absent" in caplog.text


def test_bad_config_and_unfitted_use_are_rejected():
    with pytest.raises(ValueError, match="feature_set"):
        FeaturePipeline("everything")
    with pytest.raises(RuntimeError, match="fit"):
        FeaturePipeline().transform(_flows())
    with pytest.raises(ValueError, match="empty"):
        FeaturePipeline().fit(_flows().iloc[:0])
    with pytest.raises(ValueError, match="from_json"):
        FeaturePipeline.from_json('{"format": "other"}')


def test_port_frequency_marks_a_pinned_source_port_and_old_pipelines_still_load():
    flows = _flows()
    flows.loc[:99, "L4_SRC_PORT"] = 2456  # a scanner that pins its source port (nmap -g, hping3 -s)
    pipeline = FeaturePipeline("nf-v1").fit(flows)
    col = pipeline.feature_names.index("L4_SRC_PORT:log_freq")
    probe = flows.iloc[:3].copy()
    probe["L4_SRC_PORT"] = [2456, 40000, -5]  # pinned / unseen / invalid
    x = pipeline.transform(probe)[:, col]
    assert x[0] == pytest.approx(np.log1p(100) / np.log1p(len(flows)))
    assert x[1] == 0.0 and x[2] == 0.0
    assert FeaturePipeline.from_json(pipeline.to_json()).transform(probe)[:, col].tolist() == x.tolist()
    doc = json.loads(pipeline.to_json())  # as saved before the frequency feature existed
    for spec in doc["specs"]:
        for key in ("freq_rows", "freq_ports", "freq_counts"):
            spec.pop(key, None)
    doc["feature_names"] = [n for n in doc["feature_names"] if not n.endswith(":log_freq")]
    old = FeaturePipeline.from_json(json.dumps(doc))
    assert old.n_features == pipeline.n_features - 2
    assert old.transform(probe).shape == (3, old.n_features)


def test_top_values_one_hot_exact_counter_values_and_old_pipelines_still_load():
    flows = _flows()
    flows.loc[:199, "IN_BYTES"] = 40  # bare SYN/RST packets ...
    flows.loc[200:299, "IN_BYTES"] = 44  # ... and SYNs with an MSS option: 0.06 std apart on the log scale
    pipeline = FeaturePipeline("nf-v1", top_values=2, min_fraction=0.1).fit(flows)
    names = pipeline.feature_names
    assert "IN_BYTES=40" in names and "IN_BYTES=44" in names
    assert not any(n.startswith("MIN_TTL=") or n.startswith("PROTOCOL=4") for n in names)
    probe = flows.iloc[:3].copy()
    probe["IN_BYTES"] = [40, 44, np.nan]
    x = pipeline.transform(probe)
    cols = [names.index("IN_BYTES=40"), names.index("IN_BYTES=44")]
    assert x[:, cols].tolist() == [[1, 0], [0, 1], [0, 0]]
    assert np.array_equal(FeaturePipeline.from_json(pipeline.to_json()).transform(probe), x)
    doc = json.loads(pipeline.to_json())  # as saved before top_values existed
    del doc["params"]["top_values"]
    counters = {s["name"] for s in doc["specs"] if s["kind"] == "numeric"}
    for spec in doc["specs"]:
        if spec["kind"] == "numeric":
            spec.pop("values", None)
    doc["feature_names"] = [n for n in names if n.split("=")[0] not in counters or "=" not in n]
    old = FeaturePipeline.from_json(json.dumps(doc))
    assert old.top_values == 0 and old.transform(probe).shape == (3, old.n_features)
    with pytest.raises(ValueError, match="top_values"):
        FeaturePipeline(top_values=-1)
    flows.loc[:199, "IN_BYTES"], flows.loc[200:, "IN_BYTES"] = 4292873, 4292874  # close large values, distinct names
    assert {"IN_BYTES=4292873", "IN_BYTES=4292874"} <= set(FeaturePipeline(top_values=2).fit(flows).feature_names)
