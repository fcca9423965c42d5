"""Per-batch reports: schema, summary arithmetic, self-contained HTML, atomic replace, one dataset across batches.

The flows here are small frames built in the test (the report code only needs the schema columns); the scores
are fixed numbers so that every count in the summary can be checked by hand.
"""

from __future__ import annotations

import json
import re

import duckdb
import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import pytest

from flowhawk.extractors.schema import COLUMN_NAMES
from flowhawk.reports.scored import (
    SCORED_SCHEMA,
    ReportConfig,
    ReportPaths,
    ScoreMeta,
    clean_stale_temp,
    read_scored,
    read_summary,
    report_exists,
    reported_batches,
    schema_markdown,
    scored_dataset,
    scored_table,
    write_report,
)

T0 = 1_700_000_000_000


def _batch(batch_id: str, n: int = 40, labelled: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``n`` flows from 4 sources; every 4th flow (source 10.0.0.3) is an attack and scores high."""
    i = np.arange(n)
    attack = i % 4 == 3
    flows = pd.DataFrame({
        "IPV4_SRC_ADDR": [f"10.0.0.{k % 4}" for k in i], "L4_SRC_PORT": 40000 + i,
        "IPV4_DST_ADDR": np.where(attack, "192.168.1.9", "192.168.1.1"), "L4_DST_PORT": 80, "PROTOCOL": 6,
        "IN_BYTES": 100 + i, "OUT_BYTES": 50, "IN_PKTS": 2, "OUT_PKTS": 1, "APPLICATION_NAME": "HTTP",
        "FLOW_START_MILLISECONDS": T0 + i * 1000, "FLOW_END_MILLISECONDS": T0 + i * 1000 + 10,
        "batch_id": batch_id, "flow_index": i,
    })
    if labelled:
        flows["Label"] = attack.astype(int)
        flows["Attack"] = np.where(attack, "synflood", "Benign")
    score = np.where(attack, 0.9, 0.1)
    if n >= 4:
        score[0] = 0.95  # one benign flow scored as an anomaly: a false positive
        score[3] = 0.2  # one attack missed: a false negative
    scores = pd.DataFrame({"score": score, "is_anomaly": score >= 0.5,
                           "predicted_class": np.where(score >= 0.5, "synflood", "Benign")})
    return flows, scores


META = ScoreMeta(model_version="v0001", threshold=0.5, timings_s={"ingest": 1.5, "score": 0.25})


def _write(reports, batch_id: str, **kw) -> ReportPaths:
    flows, scores = _batch(batch_id, **kw)
    return write_report(reports, batch_id, scored_table(flows, scores, META), META)


def test_report_files_schema_and_summary(tmp_path):
    paths = _write(tmp_path, "b-one")
    assert report_exists(tmp_path, "b-one") and paths.directory.name == "batch=b-one"
    table = pads.dataset(paths.scored_flows).to_table()
    assert table.schema.remove_metadata() == SCORED_SCHEMA.remove_metadata()
    assert table.num_rows == 40 and table.column_names[: len(COLUMN_NAMES)] == list(COLUMN_NAMES)
    assert set(table.column("model_version").to_pylist()) == {"v0001"}
    s = read_summary(tmp_path, "b-one")
    assert s["flows"] == 40 and s["anomalies"] == 10 and s["anomaly_rate"] == 0.25
    assert s["predicted_classes"] == {"Benign": 30, "synflood": 10}
    assert s["top_sources"][0] == {"address": "10.0.0.3", "anomalies": 9, "flows": 10}
    assert s["top_sources"][1] == {"address": "10.0.0.0", "anomalies": 1, "flows": 10}
    assert s["top_destinations"][0]["address"] == "192.168.1.9"
    assert s["time_range"]["start_ms"] == T0 and s["time_range"]["end_ms"] == T0 + 39_010
    assert s["timings_s"] == {"ingest": 1.5, "score": 0.25}
    gt = s["ground_truth"]
    assert (gt["tp"], gt["fp"], gt["fn"], gt["tn"]) == (9, 1, 1, 29)
    assert gt["precision"] == 0.9 and gt["recall"] == 0.9
    assert gt["per_class"]["synflood"] == {"flows": 10, "correct": 9}
    assert s["paths"]["report_html"] == str(paths.html)


def test_unlabelled_batch_has_no_ground_truth_and_empty_batch_works(tmp_path):
    _write(tmp_path, "b-unl", labelled=False)
    assert read_summary(tmp_path, "b-unl")["ground_truth"] is None
    _write(tmp_path, "b-empty", n=0)
    s = read_summary(tmp_path, "b-empty")
    assert s["flows"] == 0 and s["anomaly_rate"] == 0.0 and s["time_range"]["start"] is None
    assert "<svg" in ReportPaths.for_batch(tmp_path, "b-empty").html.read_text()


def test_html_is_self_contained_and_escaped(tmp_path):
    flows, scores = _batch("b-html")
    flows.loc[0, "APPLICATION_NAME"] = "<script>alert(1)</script>"
    paths = write_report(tmp_path, "b-html", scored_table(flows, scores, META), META)
    html = paths.html.read_text()
    assert html.count("<svg") >= 4  # score histogram, timeline, top sources, top destinations
    assert "<script" not in html and "&lt;script&gt;alert(1)" in html
    assert not re.search(r"<(link|img|iframe|object)\b", html) and "src=" not in html and "url(" not in html
    assert re.findall(r"https?://[^'\"]+", html) == ["http://www.w3.org/2000/svg"] * html.count("<svg")
    assert "Top anomalies" in html and "192.168.1.9" in html and "0.9500" in html
    assert "threshold 0.5" in html


def test_all_batches_read_as_one_dataset_with_pandas_pyarrow_duckdb(tmp_path):
    for bid in ("b-1", "b-2", "b-3"):
        _write(tmp_path, bid, labelled=bid != "b-2")
    (tmp_path / ".tmp-batch=b-4-1-0a").mkdir()  # a killed writer's leftover is invisible to readers
    (tmp_path / ".tmp-batch=b-4-1-0a" / "scored_flows.parquet").write_bytes(b"partial")
    assert reported_batches(tmp_path) == ["b-1", "b-2", "b-3"]
    frame = read_scored(tmp_path)
    assert len(frame) == 120 and frame["is_anomaly"].sum() == 30
    assert scored_dataset(tmp_path).count_rows() == 120
    via_pandas = pd.read_parquet([str(p) for p in sorted(tmp_path.glob("batch=*/scored_flows.parquet"))])
    assert len(via_pandas) == 120
    glob = str(tmp_path / "batch=*" / "scored_flows.parquet")
    rows = duckdb.sql(f"SELECT batch, count(*), sum(is_anomaly::INT), count(Label) FROM read_parquet('{glob}', "
                      "hive_partitioning=true) GROUP BY batch ORDER BY batch").fetchall()
    assert rows == [("b-1", 40, 10, 40), ("b-2", 40, 10, 0), ("b-3", 40, 10, 40)]


def test_rewrite_replaces_whole_and_failure_leaves_old_report(tmp_path):
    first = _write(tmp_path, "b-x")
    before = {p.name: p.read_bytes() for p in first.directory.iterdir()}
    flows, scores = _batch("b-x")
    table = scored_table(flows, scores, META)
    with pytest.raises(TypeError):  # summary extra that is not JSON: fails after the parquet was written
        write_report(tmp_path, "b-x", table, META, extra={"bad": object()})
    assert {p.name: p.read_bytes() for p in first.directory.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["batch=b-x"]
    second = write_report(tmp_path, "b-x", table, META, ReportConfig(top_n=3))
    assert second.directory == first.directory and len(json.loads(second.summary.read_text())["top_sources"]) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["batch=b-x"]


def test_clean_stale_temp_keeps_live_writers(tmp_path):
    import os

    (tmp_path / f".tmp-batch=b-a-{os.getpid()}-0123abcd").mkdir()  # this (live) process
    (tmp_path / ".tmp-batch=b-a-999999999-0123abcd").mkdir()  # no such process: a killed writer
    assert clean_stale_temp(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == [f".tmp-batch=b-a-{os.getpid()}-0123abcd"]


def test_input_validation(tmp_path):
    flows, scores = _batch("b-v")
    with pytest.raises(ValueError, match="top_n"):
        ReportConfig(top_n=0)
    with pytest.raises(ValueError, match="40 flows"):
        scored_table(flows, scores.iloc[:5], META)
    with pytest.raises(ValueError, match="predicted_class"):
        scored_table(flows, scores.drop(columns="predicted_class"), META)
    assert "`is_anomaly`" in schema_markdown()
