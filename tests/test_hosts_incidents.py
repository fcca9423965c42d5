"""Host table and incidents: evidence accumulating over batches, decay, idempotent re-scoring, incident grouping."""

from __future__ import annotations

import pandas as pd
import pytest

from flowhawk.extractors.community_id import community_id
from flowhawk.reports.analyst_config import HOUR_MS, AnalystConfig
from flowhawk.reports.hosts import HostStore
from flowhawk.reports.html_analyst import _incident_source
from flowhawk.reports.incidents import (
    INCIDENT_SCHEMA,
    assign_incidents,
    build_incidents,
    incidents_table,
    read_incidents,
    write_incidents,
)

T0 = 498_612 * HOUR_MS  # on an hour boundary: evidence windows start at T0, T0 + 1 h, ...
SCANNER, CLIENT, SERVER = "10.9.9.9", "10.0.0.21", "10.0.0.10"


def scored_flows(t0: int, probes: int, first_port: int, benign: int = 30, flood: int = 0) -> pd.DataFrame:
    """A scored batch: ``probes`` scan probes from SCANNER (one port each, a minute apart, score 0.9), benign
    web flows of CLIENT (score 0.05) and optionally a flood from 10.6.6.6 (score 0.99)."""
    rows = []
    for i in range(probes):
        rows.append(_flow(SCANNER, 45000, SERVER, first_port + i, t0 + i * 60_000, 0.9, "portscan", "scan"))
    for i in range(benign):
        rows.append(_flow(CLIENT, 50000 + i, SERVER, 80, t0 + i * 30_000, 0.05, "Benign", None))
    for i in range(flood):
        rows.append(_flow("10.6.6.6", 1000 + i, SERVER, 80, t0 + i * 5, 0.99, "synflood", "flood"))
    return pd.DataFrame(rows).assign(flow_index=range(len(rows)))


def _flow(src, sport, dst, dport, start, score, cls, reason) -> dict:
    anomalous = score >= 0.5
    return {"IPV4_SRC_ADDR": src, "L4_SRC_PORT": sport, "IPV4_DST_ADDR": dst, "L4_DST_PORT": dport,
            "PROTOCOL": 6, "IN_BYTES": 60, "OUT_BYTES": 40, "IN_PKTS": 1, "OUT_PKTS": 1,
            "FLOW_START_MILLISECONDS": start, "FLOW_END_MILLISECONDS": start + 2, "score": score,
            "is_anomaly": anomalous, "predicted_class": cls if anomalous else "Benign",
            "reason": reason, "explanation": None, "Attack": cls, "source_file": "x.pcap",
            "community_id": community_id(6, src, dst, sport, dport)}


def test_slow_scan_crosses_alert_level_only_after_third_batch(tmp_path):
    config = AnalystConfig()  # 1 h windows, cap 50, half-life 24 h, alert level 40
    store, levels = HostStore(tmp_path / "lake"), []
    for b in range(3):  # 18 probes an hour, each batch an hour later: 18, 35.5, 52.5 points
        hosts = store.update(f"b{b}", scored_flows(T0 + b * HOUR_MS, 18, 1 + 18 * b), config)
        scanner = hosts.set_index("address").loc[SCANNER]
        levels.append((round(float(scanner["evidence"]), 1), bool(scanner["alert"])))
    assert [a for _, a in levels] == [False, False, True]
    assert levels[0][0] == pytest.approx(16.2, abs=0.1)  # 18 probes * 0.9, decayed by the hour to lake time
    assert levels[0][0] < levels[1][0] < config.alert_level <= levels[2][0]
    hosts = store.read().set_index("address")
    assert list(hosts.index[:1]) == [SCANNER]  # ranked by evidence
    assert hosts.loc[SCANNER, "ports"] == 54 and hosts.loc[SCANNER, "peers"] == 1
    assert hosts.loc[SCANNER, "anomalous_flows"] == 54 and hosts.loc[SCANNER, "batches"] == 3
    assert hosts.loc[SCANNER, "attack_classes"] == "portscan" and hosts.loc[SCANNER, "reasons"] == "scan"
    assert not hosts.loc[CLIENT, "alert"] and hosts.loc[CLIENT, "evidence"] == 0
    assert hosts.loc[CLIENT, "flows"] == 90 and hosts.loc[CLIENT, "mean_score"] == pytest.approx(0.05)
    assert pd.read_parquet(tmp_path / "lake" / "hosts").shape[0] == 2  # the ledger is hidden from readers


def test_rescoring_a_batch_is_idempotent_and_evidence_decays(tmp_path):
    config = AnalystConfig(half_life_h=1.0)
    store = HostStore(tmp_path / "lake")
    first = store.update("b0", scored_flows(T0, 18, 1), config)
    again = store.update("b0", scored_flows(T0, 18, 1), config)
    pd.testing.assert_frame_equal(first, again)
    later = store.update("b1", scored_flows(T0 + 5 * HOUR_MS, 0, 1), config)  # scanner silent 5 hours
    before = first.set_index("address").loc[SCANNER, "evidence"]
    after = later.set_index("address").loc[SCANNER, "evidence"]
    lake_time = T0 + 5 * HOUR_MS + 29 * 30_000 + 2  # the newest flow's end: batch b1's last benign flow
    assert after == pytest.approx(before * 0.5 ** ((lake_time - (T0 + HOUR_MS)) / HOUR_MS))  # age from window end


def test_flood_window_is_capped_and_alerts_by_itself(tmp_path):
    config, store = AnalystConfig(), HostStore(tmp_path / "lake")
    flood = store.update("b0", scored_flows(T0, 0, 1, flood=2000), config).set_index("address").loc["10.6.6.6"]
    assert flood["anomalous_flows"] == 2000 and config.alert_level <= flood["evidence"] <= config.window_points_cap
    assert flood["alert"] and flood["evidence_windows"] == 1  # one loud hour is enough, not a million points
    later = store.update("b1", scored_flows(T0 + 9 * HOUR_MS, 0, 1), config).set_index("address").loc["10.6.6.6"]
    assert not later["alert"]  # 8 h after the window ended (lake time), it has decayed below the level


def test_incidents_group_by_source_behaviour_and_gap(tmp_path):
    frame = pd.concat([scored_flows(T0, 10, 1, flood=50),
                       scored_flows(T0 + 2 * HOUR_MS, 5, 500, benign=0)], ignore_index=True)
    config = AnalystConfig(incident_gap_s=600)
    ids = assign_incidents(frame, "b0", config)
    assert ids[~frame["is_anomaly"]].isna().all() and ids[frame["is_anomaly"]].notna().all()
    incidents = build_incidents(frame, ids, "b0", config)
    scans = incidents[incidents["source"] == SCANNER].sort_values("start_ms")
    assert scans["flows"].tolist() == [10, 5]  # two hours of silence split the scan in two incidents
    assert scans["ports"].tolist() == [10, 5] and scans["behaviour"].tolist() == ["portscan/tcp"] * 2
    flood = incidents[incidents["source"] == "10.6.6.6"].iloc[0]
    assert flood["flows"] == 50 and flood["severity_label"] == "high" and flood["true_class"] == "synflood"
    assert flood["signature"] == "10.6.6.6|synflood/tcp" and flood["rep_row"] == frame.index[
        (frame["IPV4_SRC_ADDR"] == "10.6.6.6")][0]
    assert incidents.iloc[0]["severity"] >= incidents.iloc[-1]["severity"]
    assert incidents_table(incidents).schema == INCIDENT_SCHEMA
    assert assign_incidents(frame, "b0", config).equals(ids)  # deterministic ids
    for batch in ("b0", "b1"):
        (tmp_path / f"batch={batch}").mkdir()
        write_incidents(tmp_path / f"batch={batch}" / "incidents.parquet", incidents.assign(batch_id=batch))
    assert len(read_incidents(tmp_path)) == 2 * len(incidents)
    assert read_incidents(tmp_path / "none").empty


def test_an_inbound_flood_is_one_incident_against_its_target():
    """Spoofed sources, one flow each: keyed by source they would be 80 incidents; keyed by target, one."""
    rows = [_flow(f"198.51.100.{i}", 1000 + i, SERVER, 80, T0 + i * 10, 0.999, "inbound-flood", "flood")
            for i in range(80)]
    frame = pd.concat([scored_flows(T0, 3, 1), pd.DataFrame(rows)], ignore_index=True)
    ids = assign_incidents(frame, "b0", AnalystConfig())
    incidents = build_incidents(frame, ids, "b0", AnalystConfig())
    flood = incidents[incidents["behaviour"] == "inbound-flood/tcp"]
    assert len(flood) == 1 and flood.iloc[0]["flows"] == 80 and flood.iloc[0]["peers"] == 1
    assert flood.iloc[0]["signature"] == f"{SERVER}|inbound-flood/tcp"
    assert flood.iloc[0]["source"].startswith("198.51.100.")  # the representative flow's source
    assert len(incidents[incidents["behaviour"] == "portscan/tcp"]) == 1  # other flows keep their source keys
    cells = [_incident_source(r) for r in incidents.itertuples()]
    assert f"many &rarr; {SERVER}" in cells and SCANNER in cells  # the report shows the flood's target


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="half_life_h"):
        AnalystConfig(half_life_h=0)
    with pytest.raises(ValueError, match="alerts_per"):
        AnalystConfig(alerts_per="host")


def test_severity_reads_each_model_on_its_own_scale():
    """A novelty alert's tail probability is under its budget (0.001) by construction, so its score always passes
    the supervised steps (0.9, 0.99): its steps come from the tail probability instead; a rule hit takes them all."""
    config = AnalystConfig()

    def level(**scores) -> str:
        flow = pd.DataFrame([_flow(SCANNER, 45000, SERVER, 80, T0, 0.9995, "novel", None)]).assign(**scores)
        incidents = build_incidents(flow, assign_incidents(flow, "b0", config), "b0", config)
        return incidents.iloc[0]["severity_label"]

    nan = float("nan")
    assert level() == "high"  # no per-model scores: the flow score on the supervised scale, as before
    assert level(attack_score=nan, novelty_score=0.9995, novelty_rule=False) == "low"  # a marginal novelty alert
    assert level(attack_score=nan, novelty_score=1 - 5e-5, novelty_rule=False) == "medium"
    assert level(attack_score=nan, novelty_score=1 - 1e-7, novelty_rule=False) == "high"
    assert level(attack_score=nan, novelty_score=0.9995, novelty_rule=True) == "high"  # 10x past the baseline
    assert level(attack_score=0.95, novelty_score=0.2, novelty_rule=False) == "medium"  # the supervised scale
    assert level(attack_score=0.999, novelty_score=1 - 5e-5, novelty_rule=False) == "high"  # the larger of the two
    with pytest.raises(ValueError, match="severity_tail"):
        AnalystConfig(severity_tail=(1e-6, 1e-4))


def test_scores_below_one_never_read_one():
    from flowhawk.reports.html_analyst import score_text

    assert [score_text(v) for v in (1.0, 0.9995, 0.999074, 0.99999, 0.5)] == [
        "1.000", "0.9995", "0.999", "0.99999", "0.500"]
    assert score_text(float("nan")) == "" and score_text(0.95, 4) == "0.9500" and score_text(0.99995, 4) == "0.99995"
    assert score_text(1 - 1e-9) == "1.000"  # as good as 1
