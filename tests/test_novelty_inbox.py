"""The label-free lifecycle through Prefect: an empty inbox and unlabelled captures. The first batches build the
baseline (their reports say "baselining" and still list flows and hosts), then the novelty model is trained and
later batches are scored with reasons; a supervised model is not needed. Real nfstream, MindSpore and Prefect."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from flowhawk.extractors.synth import SynthConfig, synthesize
from flowhawk.flows.inbox_flow import process_inbox
from flowhawk.flows.params import InboxOptions, NoveltyOptions
from flowhawk.lake.store import Lake
from flowhawk.model.novelty import score_novelty
from flowhawk.model.novelty_lifecycle import batch_context, novelty_registry
from flowhawk.model.registry import Registry

pytestmark = pytest.mark.slow


def _drop(inbox: Path, name: str, seed: int, attacks: tuple[str, ...]) -> None:
    """An unlabelled capture (the labels file the synthesiser writes is kept out of the inbox)."""
    inbox.mkdir(parents=True, exist_ok=True)
    tmp = inbox.parent / "staging"
    tmp.mkdir(exist_ok=True)
    synthesize(SynthConfig(seed=seed, packets=8000, duration_s=120.0, attacks=attacks), tmp / f"{name}.pcap",
               tmp / f"{name}.csv")
    os.replace(tmp / f"{name}.pcap", inbox / f"{name}.pcap")


def _summary(lake: Path, batch: str) -> dict:
    return json.loads((lake / "reports" / f"batch={batch}" / "summary.json").read_text())


def test_unlabelled_inbox_baselines_then_scores_with_reasons(prefect_harness, tmp_path):
    inbox, lake, models = tmp_path / "inbox", tmp_path / "lake", tmp_path / "models"
    options = InboxOptions(settle_seconds=0, novelty=NoveltyOptions(baseline_flows=800, epochs=3,
                                                                    refresh_after_batches=2, refresh_on_drift=False))
    _drop(inbox, "quiet1", 1, ())
    first = process_inbox(inbox, lake, models, options)["batches"]
    assert [b["status"] for b in first] == ["baselining"]
    summary = _summary(lake, first[0]["batch_id"])
    assert summary["status"] == "baselining" and summary["model_version"] == "baselining"
    assert summary["flows"] > 300 and summary["anomalies"] == 0
    hosts = pq.read_table(lake / "hosts" / "hosts.parquet").to_pandas()
    assert len(hosts) >= 6 and hosts["flows"].sum() >= summary["flows"]  # the baseline's hosts are listed
    assert summary["baseline"]["flows"] < 800 and summary["baseline"]["novelty_version"] is None
    assert novelty_registry(models).current() is None and Registry(models).current() is None

    _drop(inbox, "quiet2", 2, ())
    second = process_inbox(inbox, lake, models, options)["batches"]
    assert [b["status"] for b in second] == ["baselining"]  # this batch completed the baseline
    version = novelty_registry(models).current()
    assert version is not None and _summary(lake, second[0]["batch_id"])["baseline"]["novelty_version"] == version
    assert novelty_registry(models).list()[0]["kind"] == "novelty"

    _drop(inbox, "scan", 3, ("portscan",))
    third_run = process_inbox(inbox, lake, models, options)
    third = third_run["batches"]
    assert third_run["novelty_refresh"] is None  # one batch new to the novelty model: not yet
    assert [b["status"] for b in third] == ["reported"]
    summary = _summary(lake, third[0]["batch_id"])
    assert summary["status"] == "scored" and summary["models"] == {"novelty": "reconstruct"}
    assert summary["model_version"] == f"novelty {version}" and 0.0 <= summary["drift"]["ks"] <= 1.0
    table = pq.read_table(lake / "reports" / f"batch={third[0]['batch_id']}" / "scored_flows.parquet").to_pandas()
    assert table["attack_score"].isna().all() and table["novelty_score"].between(0, 1).all()
    # scored with the hosts' earlier flows as context (the baseline batches), as the calibration scored its holdout
    lake_obj, batches = Lake(lake), summary["lake_batches"]
    flows = lake_obj.read_flows(batches)
    model = novelty_registry(models).load(version)
    context = batch_context(lake_obj, batches, flows, model.config.window)
    assert context is not None and len(context) > 0
    expected = score_novelty(model, flows, explain="none", context=context)["novelty_score"].to_numpy()
    np.testing.assert_allclose(table["novelty_score"].to_numpy(), expected, rtol=1e-5, atol=1e-6)
    flagged = table[table["is_anomaly"]]
    assert len(flagged) > 0 and (flagged["predicted_class"] == "novel").all()
    assert flagged["reason"].str.startswith("novel").all()
    assert json.loads(flagged["explanation"].iloc[0])["model"] == "novelty"
    rate = table.groupby(table["IPV4_SRC_ADDR"] == "10.200.0.101")["is_anomaly"].mean()  # the scanner vs the rest
    assert rate[True] > 0.5 > rate[False], rate
    assert sorted(p.name for p in (inbox / "done").iterdir()) == sorted(b["batch_id"] for b in first + second + third)

    # a second batch new to the novelty model: the baseline is refreshed; the scan's flagged flows stay out
    _drop(inbox, "quiet3", 4, ())
    refreshed = process_inbox(inbox, lake, models, options)["novelty_refresh"]
    assert refreshed is not None and refreshed["parent"] == version, refreshed
    assert len(refreshed["new_batches"]) == 2 and refreshed["sizes"]["new_left_out"] > 0
    assert refreshed["version"] in novelty_registry(models).versions()
    assert (novelty_registry(models).current() == refreshed["version"]) == refreshed["promoted"]
    assert process_inbox(inbox, lake, models, options)["novelty_refresh"] is None  # nothing new since
