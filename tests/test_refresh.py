"""Incremental refresh: the promotion guard both ways, on a real lake and real MindSpore fine-tuning."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from flowhawk.model.refresh import (
    TEST,
    TRAIN,
    VAL,
    RefreshConfig,
    RefreshError,
    contrast_rows,
    prepare_refresh,
    refresh_model,
    row_roles,
    train_rare_classes,
)
from flowhawk.model.refresh_guard import decide_promotion
from flowhawk.model.registry import Registry, data_manifest
from flowhawk.model.verdict_source import VerdictSource
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
    with pytest.raises(ValueError, match=r"RefreshConfig\.verdict_weight: must be an integer in \[1, 10000\]"):
        RefreshConfig(verdict_weight=0)
    with pytest.raises(ValueError, match=r"RefreshConfig\.benign_alert_tolerance"):
        RefreshConfig(benign_alert_tolerance=1.5)


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


def _guarded(benign: tuple[int, int], verdicts: tuple[int, int] | None, n_verdicts: int = 10) -> tuple[dict, dict]:
    """``compare``'s two results where both models tie on F1, with (current, candidate) false alerts on 200
    held-out benign flows and (current, candidate) verdict-labelled flows got wrong."""
    part = {"f1": 0.95, "macro_f1": 0.95, "n": 1000}
    comparison, checks = {}, {}
    for i, name in enumerate(("current", "candidate")):
        comparison[name] = {"all": part, "old": part}
        checks[name] = {"benign_alerts": {"n": 200, "flagged": benign[i]}}
        if verdicts is not None:
            checks[name]["verdicts"] = {"n": n_verdicts, "wrong": verdicts[i]}
    return comparison, checks


def _guard(benign: tuple[int, int], verdicts: tuple[int, int] | None, config: RefreshConfig) -> tuple[bool, str]:
    comparison, checks = _guarded(benign, verdicts)
    return decide_promotion(comparison, "binary", config, checks)


def test_guard_counts_false_alerts_on_benign_flows_and_verdicts():
    config = RefreshConfig()
    ok, reason = _guard((3, 3), (6, 0), config)
    assert ok and reason.endswith("benign flagged 3 vs 3 of 200; verdicts contradicted 0 vs 6 of 10"), reason
    ok, reason = _guard((3, 4), (6, 0), config)  # F1 ties, one more false alert
    assert not ok and reason.endswith("more false alerts on held-out benign flows than 3"), reason
    assert _guard((3, 4), (6, 0), RefreshConfig(benign_alert_tolerance=0.005))[0]
    ok, reason = _guard((3, 2), (6, 1), config)  # still alerts on a marked flow
    assert not ok and reason.endswith("verdicts contradicted 1 vs 6 of 10: contradicts more analyst verdicts than 0")
    assert _guard((3, 2), (6, 1), RefreshConfig(verdict_tolerance=0.1))[0]
    # a tolerance never lets a candidate respect the verdicts less than the current model does
    assert not _guard((3, 2), (0, 1), RefreshConfig(verdict_tolerance=0.5))[0]
    assert _guard((3, 3), None, config)[0]  # no verdicts: the term is skipped


def test_guard_rejects_a_candidate_that_forgets_old_attack_flows():
    comparison, checks = _guarded((0, 0), None)
    checks["current"]["old_recall"] = {"synflood": {"n": 10_000, "detected": 10_000},
                                       "icmpflood": {"n": 1, "detected": 1}}
    checks["candidate"]["old_recall"] = {"synflood": {"n": 10_000, "detected": 9_990},  # 0.1 point: tolerated
                                         "icmpflood": {"n": 1, "detected": 0}}  # a whole attack kind forgotten
    ok, reason = decide_promotion(comparison, "binary", RefreshConfig(), checks)
    assert not ok and reason.endswith("old icmpflood flows detected 0 vs 1 of 1: icmpflood recall drops by more "
                                      "than 0.01"), reason
    checks["candidate"]["old_recall"]["icmpflood"]["detected"] = 1
    ok, reason = decide_promotion(comparison, "binary", RefreshConfig(), checks)
    assert ok and reason.endswith("old synflood flows detected 9990 vs 10000 of 10000"), reason
    assert not decide_promotion(comparison, "binary", RefreshConfig(recall_tolerance=0.0), checks)[0]


class _Marked:
    """A ``VerdictSource``: the protocol ``refresh_model`` recognises a verdict-labelled lake by."""

    def verdict_keys(self):
        return None


def _old_and_new():
    """Two lake-like frames (``source_sha256``, ``flow_index``): the history and a new batch."""
    old = make_flows(400, seed=1)
    new = make_flows(400, seed=2, t0=1_700_001_000_000)
    for frame, sha in ((old, "aa"), (new, "bb")):
        frame["source_sha256"], frame["flow_index"] = sha * 32, np.arange(len(frame))
    return old, new


def test_verdict_rows_are_trained_weighted_and_never_held_out(tiny_model):
    old, new = _old_and_new()
    marked = np.zeros(len(new), bool)
    marked[::40] = True  # 10 flows an analyst labelled
    config = RefreshConfig(replay_rows=200, block_rows=32, verdict_weight=7, holdout_fraction=0.3, contrast_rows=0,
                           rare_class_rows=0)
    assert (row_roles(new, config)[marked] != TRAIN).any()  # their hash roles would hold some out
    _, prep, origin, verdicts = prepare_refresh(tiny_model, old, new, config, marked)
    assert len(verdicts) == 10 and (origin[verdicts] == 1).all()
    first_new = int(np.flatnonzero(origin == 1)[0])
    np.testing.assert_array_equal(verdicts - first_new, np.flatnonzero(marked))
    assert not np.isin(verdicts, prep.split.test).any()
    train, val = np.bincount(prep.train_rows, minlength=len(origin)), np.bincount(prep.split.val, minlength=len(origin))
    assert (train[verdicts] == 7).all() and (val[verdicts] == 7).all()  # weight 7 in the loss and the threshold
    others = np.setdiff1d(np.arange(len(origin)), verdicts)
    assert train[others].max() == 1 and val[others].max() == 1
    _, plain, _, none = prepare_refresh(tiny_model, old, new, config)  # the same frame without verdicts
    assert len(none) == 0 and len(plain.train_rows) == len(plain.split.train)
    np.testing.assert_array_equal(np.unique(prep.split.train), np.union1d(plain.split.train, verdicts))
    np.testing.assert_array_equal(prep.split.test, np.setdiff1d(plain.split.test, verdicts))
    assert isinstance(_Marked(), VerdictSource) and not isinstance(object(), VerdictSource)


def test_contrast_rows_are_the_nearest_training_rows_of_another_class():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 4)).astype(np.float32)
    y = (np.arange(200) % 2).astype(np.int64)  # even rows benign, odd rows attack
    depth = np.full(200, 15)
    verdicts = np.array([10])  # a benign flow an analyst marked
    features[[41, 43, 45]] = features[10] + 0.01  # three attack rows right beside it ...
    depth[45] = 0  # ... one of them at the start of its host's history
    train = np.setdiff1d(np.arange(200), [43])  # ... and one of them is not a training row
    config = RefreshConfig(contrast_rows=2)
    found = contrast_rows(features, depth, y, train, verdicts, config, window=16)
    assert 41 in found and 43 not in found and (y[found] == 1).all() and len(found) == 2
    assert 45 not in found  # same features, but a window without history is far from a full one
    assert len(contrast_rows(features, depth, y, train, verdicts, RefreshConfig(contrast_rows=0), 16)) == 0
    assert len(contrast_rows(features, depth, y, train, verdicts[:0], config, 16)) == 0


def test_verdict_neighbours_are_weighted_like_the_verdicts(tiny_model):
    old, new = _old_and_new()
    marked = np.zeros(len(new), bool)
    marked[np.flatnonzero(new["Label"].to_numpy() == 0)[:3]] = True
    config = RefreshConfig(replay_rows=200, block_rows=32, verdict_weight=5, contrast_rows=4)
    frame, prep, _, verdicts = prepare_refresh(tiny_model, old, new, config, marked)
    train = np.bincount(prep.train_rows, minlength=len(frame))
    neighbours = np.flatnonzero(train == 6)  # a training row once, plus the verdict weight
    assert 1 <= len(neighbours) <= 3 * 4 and (prep.y[neighbours] == 1).all()
    assert (train[verdicts] == 5).all()
    assert not np.isin(neighbours, prep.split.test).any()


def test_a_rare_class_trains_on_its_validation_rows():
    y = np.array([0] * 50 + [1] * 3 + [2] * 40 + [-1] * 2)
    roles = np.full(len(y), TRAIN, np.int8)
    roles[50:53] = [VAL, TEST, TRAIN]  # class 1: one training row
    roles[53:60] = VAL
    roles[-2:] = VAL  # unlabelled rows keep their role
    before = roles.copy()
    train_rare_classes(y, roles, minimum=2)
    assert roles[50] == TRAIN and roles[51] == TEST  # held-out rows are never trained on
    np.testing.assert_array_equal(roles[53:], before[53:])  # class 2 has enough; unlabelled untouched
    train_rare_classes(y, roles, minimum=0)
    with pytest.raises(ValueError, match="rare_class_rows"):
        RefreshConfig(rare_class_rows=-1)
