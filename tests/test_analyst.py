"""The analyst's report: alerts.jsonl against its JSON schema, incidents in the report folder, HTML escaping of
every input-derived field, verdicts and the allowlist (suppressing alerts, never flows), the verdict command."""

from __future__ import annotations

import json
import re

import jsonschema
import pandas as pd
import pyarrow.parquet as pq
import pytest

from flowhawk.cli.main import main as cli_main
from flowhawk.extractors.community_id import community_id
from flowhawk.reports.alerts import ALERTS_FILE, alert_schema
from flowhawk.reports.analyst import analyse_batch
from flowhawk.reports.analyst_config import AnalystConfig
from flowhawk.reports.incidents import INCIDENTS_FILE, read_incidents
from flowhawk.reports.scored import ReportPaths, ScoreMeta, read_summary, write_scored_report
from flowhawk.reports.verdicts import VerdictStore
from tests.test_hosts_incidents import SCANNER, SERVER, T0, scored_flows

META = ScoreMeta(model_version="v0007", threshold=0.5)
SCORE_COLS = ["score", "is_anomaly", "predicted_class", "reason", "explanation"]


def _report(lake, batch_id, frame, config=None, extra=None):
    flows, scores = frame.drop(columns=SCORE_COLS), frame[SCORE_COLS]
    analyst = analyse_batch(lake, batch_id, flows, scores, META.model_version, config)
    paths, summary = write_scored_report(lake / "reports", batch_id, flows, scores, META, extra=extra,
                                         analyst=analyst)
    return paths, summary, analyst


def _alerts(paths: ReportPaths) -> list[dict]:
    return [json.loads(line) for line in (paths.directory / ALERTS_FILE).read_text().splitlines()]


@pytest.mark.parametrize("per", ["incident", "flow"])
def test_every_alert_line_validates_against_the_schema(tmp_path, per):
    frame = scored_flows(T0, 12, 1, flood=30)
    frame.loc[0, "explanation"] = json.dumps({"version": 1, "model": "supervised", "method": "occlusion",
                                              "top": [{"feature": "L4_DST_PORT", "observed": 1, "expected": 80,
                                                       "weight": 2.0}]})
    paths, summary, analyst = _report(tmp_path, "b0", frame, AnalystConfig(alerts_per=per))
    alerts = _alerts(paths)
    validator = jsonschema.Draft202012Validator(alert_schema())
    for alert in alerts:
        validator.validate(alert)
    assert len(alerts) == (len(analyst.incidents) if per == "incident" else int(frame["is_anomaly"].sum()))
    assert summary["alerts"] == len(alerts) and summary["incidents"] == 2 and summary["alerts_per"] == per
    scan = next(a for a in alerts if a["source"]["ip"] == SCANNER)
    assert scan["event"]["kind"] == "alert" and scan["network"]["transport"] == "tcp"
    assert scan["rule"] == {"name": "portscan/tcp", "category": "portscan", "version": "v0007"}
    if per == "incident":  # the representative: the explained probe, to port 1
        assert scan["network"]["community_id"] == community_id(6, SCANNER, SERVER, 45000, 1)
        assert scan["flowhawk"]["explanation"]["top"][0]["feature"] == "L4_DST_PORT"
        assert scan["flowhawk"]["flows"] == 12 and scan["flowhawk"]["ports"] == 12
    bad = dict(alerts[0], event={**alerts[0]["event"], "kind": "event"})
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(bad)
    stored = pq.read_table(paths.scored_flows).to_pandas()
    assert stored["incident_id"].notna().sum() == frame["is_anomaly"].sum()
    assert stored.loc[stored["is_anomaly"], "reason"].notna().all()  # unexplained flows carry the incident's
    assert len(pd.read_parquet(paths.directory / INCIDENTS_FILE)) == 2


def test_html_opens_with_hosts_and_incidents_and_escapes_inputs(tmp_path):
    frame = scored_flows(T0, 5, 1)
    evil = "<script>alert(1)</script>"
    frame["source_file"] = f"{evil}.pcap"
    frame["APPLICATION_NAME"] = evil
    frame.loc[frame["IPV4_SRC_ADDR"] == SCANNER, "Attack"] = evil
    frame.loc[frame["IPV4_SRC_ADDR"] == SCANNER, "predicted_class"] = evil
    frame.loc[frame["IPV4_SRC_ADDR"] == SCANNER, "reason"] = f"because {evil}"
    extra = {"files": [{"file": f"{evil}.pcap", "status": "ingested", "flows": len(frame)}]}
    paths, _, _ = _report(tmp_path, "b-html", frame, extra=extra)
    html = paths.html.read_text()
    assert "<script" not in html.lower()
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 4  # file, class, label, reason
    assert html.index("Hosts by evidence") < html.index("Incidents (") < html.index("Charts")
    assert html.index("Incidents (") < html.index("Top anomalies")
    incidents_part = html[html.index("Incidents ("):html.index("Charts")]
    assert incidents_part.count("<tr>") == 1 + 1  # header + one incident, not one row per flow


def test_allowlist_suppresses_alerts_not_flows_and_verdicts_show(tmp_path):
    frame = scored_flows(T0, 12, 1, flood=30)
    store = VerdictStore(tmp_path)
    entry = store.allow("subnet", "10.9.0.0/16", "alice", "our scanner")
    paths, summary, analyst = _report(tmp_path, "b0", frame)
    assert [a["source"]["ip"] for a in _alerts(paths)] == ["10.6.6.6"]
    assert summary["alerts_suppressed"]["subnet"] == 1 and summary["incidents"] == 2
    assert pq.read_table(paths.scored_flows).num_rows == len(frame)  # flows kept
    assert SCANNER in set(analyst.hosts["address"])  # evidence kept
    scan_id = analyst.incidents.set_index("source").loc[SCANNER, "incident_id"]
    store.add_verdict("incident", scan_id, "false_positive", "bob", note="lab <b>scanner</b>")
    store.revoke(entry["id"], "alice")
    paths, summary, _ = _report(tmp_path, "b0", frame)
    assert len(_alerts(paths)) == 2 and sum(summary["alerts_suppressed"].values()) == 0
    assert "false_positive" in paths.html.read_text()
    assert len(store.entries()) == 3 and [e["analyst"] for e in store.entries()] == ["alice", "bob", "alice"]
    with pytest.raises(ValueError, match="not a subnet"):
        store.allow("subnet", "10.9.0.0/40", "alice")
    with pytest.raises(ValueError, match="incident signature"):
        store.allow("signature", "10.6.6.6", "alice")


def test_verdict_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FLOWHAWK_ANALYST", "carol")
    _, _, analyst = _report(tmp_path, "b0", scored_flows(T0, 12, 1, flood=30))
    lake = ["--lake", str(tmp_path)]
    inc = analyst.incidents["incident_id"].iloc[0]
    assert cli_main(["verdict", "mark", "incident", inc, "confirmed", "--class", "synflood", *lake]) == 0
    assert cli_main(["verdict", "mark", "host", SCANNER, "false_positive", "--note", "lab", *lake]) == 0
    assert cli_main(["verdict", "mark", "flow", "b0:3", "confirmed", *lake]) == 0
    assert cli_main(["verdict", "allow", "port", "443", *lake]) == 0
    assert cli_main(["verdict", "mark", "incident", "inc-nope", "confirmed", *lake]) == 1
    assert cli_main(["verdict", "mark", "flow", "b0:99999", "confirmed", *lake]) == 1
    assert cli_main(["verdict", "allow", "port", "70000", *lake]) == 1
    err = capsys.readouterr().err
    assert "no incident 'inc-nope'" in err and "has no row 99999" in err and "not a port" in err
    assert len(err.strip().splitlines()) == 3
    assert cli_main(["verdict", "list", "--json", *lake]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["kind"] for e in listed] == ["verdict", "verdict", "verdict", "allow"]
    assert {e["analyst"] for e in listed} == {"carol"} and all(re.match(r"\d{4}-", e["created"]) for e in listed)
    current = VerdictStore(tmp_path).current_verdicts()
    assert current.set_index("target").loc[inc, "attack_class"] == "synflood"


def test_lake_wide_incident_reader(tmp_path):
    _report(tmp_path, "b0", scored_flows(T0, 12, 1))
    _report(tmp_path, "b1", scored_flows(T0 + 3_600_000, 12, 100))
    incidents = read_incidents(tmp_path / "reports")
    assert incidents["batch_id"].tolist() == ["b0", "b1"] and read_summary(tmp_path / "reports", "b1")["incidents"] == 1


def test_verdict_labels_most_specific_wins(tmp_path):
    from flowhawk.reports.verdict_lake import verdict_labels

    frame = scored_flows(T0, 12, 1, flood=30)
    _, _, analyst = _report(tmp_path, "b0", frame)
    assert verdict_labels(tmp_path).empty
    store = VerdictStore(tmp_path)
    scan_id = analyst.incidents.set_index("source").loc[SCANNER, "incident_id"]
    store.add_verdict("incident", scan_id, "false_positive", "dave")
    store.add_verdict("host", "10.6.6.6", "confirmed", "dave")  # class: the predicted one
    first_probe = int(frame.index[frame["IPV4_SRC_ADDR"] == SCANNER][0])
    store.add_verdict("flow", f"b0:{first_probe}", "confirmed", "dave", attack_class="portscan")
    labels = verdict_labels(tmp_path).set_index("flow_index")
    assert len(labels) == 12 + 30  # the anomalous flows only; benign flows get no label from verdicts
    scan = labels[labels["verdict_on"] != "host"]
    assert (scan["Label"] == 0).sum() == 11 and scan.loc[first_probe, "Attack"] == "portscan"
    flood = labels[labels["verdict_on"] == "host"]
    assert (flood["Label"] == 1).all() and set(flood["Attack"]) == {"synflood"}


def _reported_pcap_batch(lake, pcap):
    """Ingest a small capture into ``lake`` and write its report with its two UDP flows flagged as a UDP flood;
    returns (batch, flows, flagged mask, analyst result)."""
    from flowhawk.lake.ingest import IngestConfig, ingest_paths
    from tests.test_ingest import make_pcap

    batch = ingest_paths([make_pcap(pcap)], IngestConfig(lake=lake.root)).batch_id
    flows = lake.read_flows([batch])
    flagged = (flows["IPV4_SRC_ADDR"] == "10.0.0.9").to_numpy()  # the two UDP flows
    scores = pd.DataFrame({"score": flagged * 0.9, "is_anomaly": flagged,
                           "predicted_class": ["udpflood" if f else "Benign" for f in flagged]})
    analyst = analyse_batch(lake.root, batch, flows, scores, "v0001")
    write_scored_report(lake.reports_dir, batch, flows, scores, META, analyst=analyst)
    return batch, flows, flagged, analyst


def test_verdict_labelled_lake_relabels_reads_not_files(tmp_path):
    from flowhawk.lake.store import Lake
    from flowhawk.reports.verdict_lake import VerdictLabelledLake

    lake = Lake(tmp_path / "lake")
    batch, flows, flagged, analyst = _reported_pcap_batch(lake, tmp_path / "c.pcap")
    before = (tmp_path / "lake" / "flows").joinpath(f"batch={batch}", "part-00000.parquet").read_bytes()
    assert VerdictLabelledLake(lake.root).verdict_batches() == []
    VerdictStore(lake.root).add_verdict("incident", analyst.incidents["incident_id"].iloc[0], "false_positive", "eve")
    VerdictStore(lake.root).add_verdict("flow", f"{batch}:0", "confirmed", "eve", attack_class="synscan")
    view = VerdictLabelledLake(lake.root)
    read = view.read_flows([batch])
    assert read["Label"].tolist()[0] == 1 and read["Attack"].iloc[0] == "synscan"
    assert read.loc[flagged, "Label"].tolist() == [0, 0] and set(read.loc[flagged, "Attack"]) == {"Benign"}
    assert read["Label"].notna().sum() == 3 and list(read.columns) == list(flows.columns)
    assert view.read_table([batch], columns=["Label"]).column_names == ["Label"]
    assert view.read_table([batch], columns=["IN_BYTES"]).equals(lake.read_table([batch], columns=["IN_BYTES"]))
    assert view.verdict_batches() == [batch] and lake.read_flows([batch])["Label"].isna().all()
    assert (tmp_path / "lake" / "flows").joinpath(f"batch={batch}", "part-00000.parquet").read_bytes() == before


@pytest.mark.slow  # fine-tunes the session's tiny model
def test_verdict_refresh_weights_and_guards_the_verdict_flows(tmp_path, tiny_lake, tiny_model):
    import shutil

    from flowhawk.lake.store import Lake
    from flowhawk.model.refresh import RefreshConfig, refresh_model
    from flowhawk.model.registry import Registry, data_manifest
    from flowhawk.reports.verdict_lake import VerdictLabelledLake

    lake = Lake(shutil.copytree(tiny_lake, tmp_path / "lake"))
    registry = Registry(tmp_path / "models")
    registry.promote(registry.save(tiny_model, data=data_manifest(lake, ["b1"]), export=False))
    batch, _, _, analyst = _reported_pcap_batch(lake, tmp_path / "c.pcap")
    VerdictStore(lake.root).add_verdict("incident", analyst.incidents["incident_id"].iloc[0], "false_positive", "eve")
    view = VerdictLabelledLake(lake.root)
    keys = view.verdict_keys()
    assert list(keys.columns) == ["batch_id", "source_file", "flow_index"] and len(keys) == 2
    config = RefreshConfig(replay_rows=150, epochs=1, block_rows=32, verdict_weight=5, verdict_tolerance=1.0)
    result = refresh_model(registry, view, [batch], config)
    assert result.sizes["verdict_train"] == 2 and result.sizes["new_train"] == 2  # only the verdicts label batch
    for name in ("current", "candidate"):
        checked = result.checks[name]["verdicts"]
        assert checked["n"] == 2 and checked["missed_confirmed"] == 0
        assert checked["wrong"] == checked["flagged_false_positive"] in (0, 1, 2)
    assert "verdicts contradicted" in result.reason and "benign flagged" in result.reason
    shown = registry.show(result.version)["data"]["refresh"]["config"]
    assert shown["verdict_weight"] == 5 and set(result.comparison["candidate"]) <= {"all", "old", "new"}


def test_verdict_refresh_without_verdicts_is_a_one_line_error(tmp_path, capsys):
    code = cli_main(["verdict", "refresh", "--lake", str(tmp_path / "lake"), "--models", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "no verdict labels any flow" in err[0]


def test_verdict_refresh_of_a_model_kind_without_a_current_model_is_a_one_line_error(tmp_path, capsys):
    from flowhawk.lake.store import Lake

    lake = Lake(tmp_path / "lake")
    _, _, _, analyst = _reported_pcap_batch(lake, tmp_path / "c.pcap")
    VerdictStore(lake.root).add_verdict("incident", analyst.incidents["incident_id"].iloc[0], "false_positive", "eve")
    for model, what in (("novelty", "novelty model"), ("both", "model")):
        code = cli_main(["verdict", "refresh", "--model", model, "--lake", str(lake.root),
                         "--models", str(tmp_path / "m")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and len(err) == 1 and f"no current {what} to refresh" in err[0], err


def test_unexplained_flows_borrow_the_incident_reason_but_hosts_do_not_count_it(tmp_path):
    frame = scored_flows(T0, 4, 1)
    scanner = frame["IPV4_SRC_ADDR"] == SCANNER
    frame.loc[scanner, "reason"] = None
    frame.loc[frame.index[scanner][0], "reason"] = "scan p=0.90: L4_DST_PORT 1 (normal 80)"
    paths, _, analyst = _report(tmp_path, "b0", frame)
    stored = pq.read_table(paths.scored_flows).to_pandas()
    borrowed = stored.loc[scanner.to_numpy(), "reason"].tolist()
    assert borrowed[0].startswith("scan") and borrowed[1:] == ["incident: " + borrowed[0]] * 3
    assert analyst.hosts.set_index("address").loc[SCANNER, "reasons"] == borrowed[0]
