"""Incremental refresh: the promotion guard both ways, on a real lake and real MindSpore fine-tuning."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from flowhawk.model.refresh import RefreshConfig, RefreshError, refresh_model, row_roles
from flowhawk.model.registry import Registry, data_manifest
from tests.helpers import ingest_frame, make_flows

FAST = {"replay_rows": 150, "epochs": 1, "block_rows": 32, "holdout_fraction": 0.25}


@pytest.fixture
def setup(tmp_path: Path, tiny_lake: Path, tiny_model):
    """A copy of the shared lake (batch b1) and a registry whose current model was trained on b1."""
    from flowhawk.lake.store import Lake

    lake = Lake(shutil.copytree(tiny_lake, tmp_path / "lake"))
    reg = Registry(tmp_path / "models")
    base = reg.save(tiny_model, data=data_manifest(lake, ["b1"]), export=False)
    reg.promote(base)
    return lake, reg, base


@pytest.mark.slow  # fine-tunes the session's tiny model
def test_good_refresh_is_promoted(setup):
    lake, reg, base = setup
    ingest_frame(lake.root, make_flows(300, seed=7, t0=1_700_001_000_000), "b2")
    result = refresh_model(reg, lake, config=RefreshConfig(**FAST))
    assert result.promoted, result.reason
    assert result.reason.startswith("promoted:") and result.parent == base and result.new_batches == ["b2"]
    assert reg.current() == result.version != base
    shown = reg.show(result.version)
    assert [b["batch_id"] for b in shown["data"]["batches"]] == ["b1", "b2"]
    assert shown["manifest"]["parent"] == base
    sizes = result.sizes
    assert 0 < sizes["replay_train"] <= FAST["replay_rows"] + FAST["block_rows"]
    assert sizes["old_rows_sampled"] < sizes["old_rows_read"] == 500
    assert sizes["new_train"] > 0 and sizes["held_out"] > 0
    assert reg.rollback() == base  # the refreshed model can be undone
    with pytest.raises(RefreshError, match="already in"):
        refresh_model(reg, lake, new_batches=["b1"], config=RefreshConfig(**FAST))


@pytest.mark.slow  # fine-tunes the session's tiny model
def test_mislabelled_refresh_is_kept_as_candidate_not_promoted(setup):
    lake, reg, base = setup
    wrong = make_flows(600, seed=8, t0=1_700_001_000_000)
    wrong["Label"] = 1 - wrong["Label"]
    wrong["Attack"] = np.where(wrong["Label"] == 1, "scan", "Benign")
    ingest_frame(lake.root, wrong, "b2")
    result = refresh_model(reg, lake, config=RefreshConfig(**{**FAST, "lr_scale": 2.0}))
    assert not result.promoted
    assert result.reason.startswith("rejected:"), result.reason
    assert reg.current() == base
    rows = {r["version"]: r for r in reg.list()}
    assert rows[result.version]["status"] == "candidate"
    assert rows[result.version]["reason"] == result.reason
    old_cur = result.comparison["current"]["old"]["f1"]
    old_cand = result.comparison["candidate"]["old"]["f1"]
    assert old_cand < old_cur - 0.01, result.comparison


@pytest.mark.slow  # fine-tunes the session's tiny model
def test_refresh_refuses_without_new_data_and_validates_config(setup):
    lake, reg, _ = setup
    with pytest.raises(RefreshError, match="no new batches"):
        refresh_model(reg, lake, config=RefreshConfig(**FAST))
    with pytest.raises(RefreshError, match=r"no such batch\(es\) \['nope'\]"):
        refresh_model(reg, lake, new_batches=["nope"], config=RefreshConfig(**FAST))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['replay'\]"):
        RefreshConfig.from_dict({"replay": 10})
    with pytest.raises(ValueError, match=r"RefreshConfig\.holdout_fraction"):
        RefreshConfig(holdout_fraction=0.7)
    with pytest.raises(ValueError, match=r"RefreshConfig\.replay_rows"):
        RefreshConfig(replay_rows=-1)
    with pytest.raises(ValueError, match=r"RefreshConfig\.metric"):
        RefreshConfig(metric="accuracy")


def test_row_roles_are_stable_and_proportional():
    frame = make_flows(4000, seed=3)
    frame["source_sha256"] = "ab" * 32
    frame["flow_index"] = np.arange(len(frame))
    config = RefreshConfig(holdout_fraction=0.2, val_fraction=0.1)
    roles = row_roles(frame, config)
    np.testing.assert_array_equal(roles, row_roles(frame.iloc[::-1], config)[::-1])  # identity, not position
    shares = np.bincount(roles, minlength=3) / len(roles)
    assert abs(shares[2] - 0.2) < 0.03 and abs(shares[1] - 0.1) < 0.03
    assert not np.array_equal(roles, row_roles(frame, RefreshConfig(salt=1)))


@pytest.mark.slow  # trains two models and refreshes one
def test_cli_train_evaluate_refresh(tmp_path, capsys, tiny_lake):
    from flowhawk.cli.main import main

    lake = str(shutil.copytree(tiny_lake, tmp_path / "lake"))
    models = str(tmp_path / "models")
    tiny = ["--epochs", "2", "--window", "4", "--hidden", "8", "--batch-size", "64", "--lr", "0.005"]
    assert main(["train", "--lake", lake, "--models", models, *tiny, "--baselines", "majority"]) == 0
    out = capsys.readouterr().out
    assert "flowhawk" in out and "majority" in out and "saved v0001" in out and "now current" in out
    ingest_frame(Path(lake), make_flows(300, seed=7, t0=1_700_001_000_000), "b2")
    assert main(["evaluate", "--lake", lake, "--models", models, "--batches", "b2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("v0001 (binary, cnn_bilstm") and "\nb2 " in out and "\nall " in out
    assert main(["refresh", "--lake", lake, "--models", models, "--epochs", "1", "--replay-rows", "150"]) == 0
    out = capsys.readouterr().out
    assert "refresh of v0001 on b2" in out and "candidate all" in out.replace("  ", " ")
    assert main(["evaluate", "v0042", "--lake", lake, "--models", models]) == 1
    assert capsys.readouterr().err.strip().endswith("v0042: no such model version")
    tuned = ["--flow-skip", "4", "--lr-schedule", "cosine", "--monitor", "loss", "--threshold-metric", "mcc"]
    assert main(["train", "--lake", lake, "--models", models, *tiny, *tuned, "--baselines", "none",
                 "--no-promote"]) == 0
    assert "saved v0003" in (out := capsys.readouterr().out) and "(candidate; current is" in out
    assert main(["models", "show", "v0003", "--models", models, "--json"]) == 0
    shown = capsys.readouterr().out
    for text in ('"flow_skip": 4', '"lr_schedule": "cosine"', '"monitor": "loss"', '"threshold_metric": "mcc"'):
        assert text in shown


def test_guard_thresholds_and_metric_choice():
    from flowhawk.model.refresh import decide_promotion

    def comparison(cur_all, cand_all, cur_old, cand_old, macro=(0.93, 0.91)):
        part = lambda f1, m: {"f1": f1, "macro_f1": m, "n": 100}  # noqa: E731
        return {"current": {"all": part(cur_all, macro[0]), "old": part(cur_old, macro[0])},
                "candidate": {"all": part(cand_all, macro[1]), "old": part(cand_old, macro[1])}}

    config = RefreshConfig()
    assert decide_promotion(comparison(0.9500, 0.9481, 0.95, 0.95), "binary", config)[0]  # within 0.002
    ok, reason = decide_promotion(comparison(0.9500, 0.9479, 0.95, 0.95), "binary", config)
    assert not ok and "worse by more than 0.002" in reason
    ok, reason = decide_promotion(comparison(0.95, 0.96, 0.95, 0.9399), "binary", config)
    assert not ok and "old data drop over 0.01" in reason  # better overall, but forgets old data
    assert decide_promotion(comparison(0.95, 0.96, 0.95, 0.9401), "binary", config)[0]
    # attack F1 barely sees a benign regression on attack-heavy data; macro-F1 does
    assert decide_promotion(comparison(0.9997, 0.9996, 0.9999, 0.9998), "binary", config)[0]
    ok, reason = decide_promotion(comparison(0.9997, 0.9996, 0.9999, 0.9998), "binary",
                                  RefreshConfig(metric="macro_f1"))
    assert not ok and reason.startswith("rejected: held-out macro_f1 0.9100 vs current 0.9300")
    assert not decide_promotion(comparison(0.9, 0.9, 0.9, 0.9), "multiclass", config)[0]  # auto -> macro-F1
