"""The lake and the model registry on a real S3 server (SeaweedFS, started by the session's ``s3_server``).

Two working copies of one URL stand for two machines. Checked: what one writes the other reads; readers
(flowhawk, pyarrow, DuckDB) see committed batches only; an upload without its commit marker stays invisible and
is cleaned; two writers of the same content make one batch; SIGKILLed writers leave nothing visible and the
rerun completes; the registry's versions and ``current`` pointer; ``process_inbox`` and refresh end to end.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from flowhawk.common.objectstore import ObjectStore, working_copy
from flowhawk.lake.store import MANIFEST, Lake
from flowhawk.model.registry import Registry
from flowhawk.reports.scored import report_exists, reported_batches
from tests.helpers import ingest_frame, make_flows

ROOT = Path(__file__).resolve().parents[1]


def _flows(lake: Lake) -> pd.DataFrame:
    return lake.read_flows().sort_values(["batch_id", "flow_index"]).reset_index(drop=True)


def test_lake_written_on_one_machine_is_read_on_another(s3, tmp_path):
    _, bucket = s3
    url = f"s3://{bucket}/lake"
    a, b = Lake(working_copy(url, tmp_path / "A")), Lake(working_copy(url, tmp_path / "B"))
    ingest_frame(a.root, make_flows(300, seed=1), "b1")
    assert b.batches() == ["b1"] and b.location == url
    pd.testing.assert_frame_equal(_flows(a), _flows(b))
    assert b.batch_manifest("b1")["rows"] == 300
    # outside readers: the committed parts in place on the server (pyarrow dataset, DuckDB over it)
    dataset = b.dataset()
    assert dataset.count_rows() == 300 and "batch" in dataset.schema.names
    assert duckdb.sql("select count(*) from dataset where batch = 'b1'").fetchall() == [(300,)]
    assert all(f.startswith(f"{bucket}/lake/flows/batch=b1/part-") for f in b.committed_files())
    # the same content from the other machine is already in the lake
    from flowhawk.lake.ingest import IngestConfig, ingest_paths

    summary = ingest_paths([a.root.parent / "b1.csv"], IngestConfig(lake=b.root, source="nf-csv"))
    assert summary.count("duplicate") == 1 and b.batches() == ["b1"]


def test_upload_without_commit_marker_is_invisible_and_cleaned(s3, tmp_path):
    _, bucket = s3
    url = f"s3://{bucket}/lake"
    a = Lake(working_copy(url, tmp_path / "A"))
    ingest_frame(a.root, make_flows(200, seed=2), "b1")
    store = ObjectStore(url)
    # a writer killed after its parts and before its manifest: the same objects as a push, minus the marker
    store.upload(a.batch_dir("b1") / "part-00000.parquet", "flows/batch=b2/part-00000.parquet")
    reader = Lake(working_copy(url, tmp_path / "B"))
    assert reader.batches() == ["b1"] and not reader.has_batch("b2")
    assert reader.dataset().count_rows() == 200
    with pytest.raises(KeyError, match="b2"):
        reader.read_table(["b2"])
    # and a report whose summary.json (its marker) never arrived
    store.upload(a.batch_dir("b1") / "part-00000.parquet", "reports/batch=r1/scored_flows.parquet")
    assert reported_batches(reader.reports_dir) == [] and not report_exists(reader.reports_dir, "r1")
    assert reader.cleanup() == 0 and store.exists("flows/batch=b2/part-00000.parquet")  # young: maybe a live push
    assert reader.cleanup(stale_upload_s=0) == 2
    assert not store.exists("flows/batch=b2/part-00000.parquet")
    assert not store.exists("reports/batch=r1/scored_flows.parquet")
    assert store.exists(f"flows/batch=b1/{MANIFEST}")


def test_batch_committed_locally_but_not_pushed_is_published_by_the_next_run(s3, tmp_path):
    _, bucket = s3
    url = f"s3://{bucket}/lake"
    local = working_copy(url, tmp_path / "A")
    ingest_frame(local, make_flows(120, seed=3), "b1")
    store = ObjectStore(url)
    store.delete([e.rel for e in store.list("flows")])  # as if killed between the local rename and the push
    assert Lake(working_copy(url, tmp_path / "B")).batches() == []
    Lake(local).cleanup()
    assert Lake(working_copy(url, tmp_path / "C")).read_table().num_rows == 120


def _cli(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "flowhawk.cli", *args], env=env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _synth_captures(folder: Path, n: int, packets: int) -> list[Path]:
    from flowhawk.extractors.synth import SynthConfig, synthesize

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        synthesize(SynthConfig(seed=i, packets=packets, duration_s=60.0), folder / f"c{i}.pcap",
                   folder / f"c{i}.labels.csv")
    return [folder / f"c{i}.pcap" for i in range(n)]


@pytest.mark.slow  # nfstream in subprocesses
def test_two_writers_of_the_same_content_make_one_batch(s3, tmp_path):
    server, bucket = s3
    url = f"s3://{bucket}/lake"
    captures = _synth_captures(tmp_path / "in", 2, 3000)
    procs = [_cli(["ingest", *map(str, captures), "--lake", url],
                  {**os.environ, **server.env, "FLOWHAWK_STORE_CACHE": str(tmp_path / f"cache{i}")}) for i in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    lake = Lake(working_copy(url, tmp_path / "reader"))
    assert len(lake.batches()) == 1, outputs
    manifest = lake.batch_manifest(lake.batches()[0])
    assert len(manifest["files"]) == 2 and lake.read_table().num_rows == manifest["rows"] > 0


@pytest.mark.slow  # nfstream in subprocesses, killed at different moments
def test_sigkilled_writers_leave_nothing_visible_and_the_rerun_completes(s3, tmp_path):
    server, bucket = s3
    url = f"s3://{bucket}/lake"
    captures = _synth_captures(tmp_path / "in", 3, 6000)
    store, landed = ObjectStore(url), []
    for i, delay in enumerate((0.0, 2.5, 4.0, 5.5, 7.0)):
        env = {**os.environ, **server.env, "FLOWHAWK_STORE_CACHE": str(tmp_path / f"cache{i}")}
        proc = _cli(["ingest", *map(str, captures), "--lake", url], env)
        landed.append(_kill_when(proc, store, delay))
        reader = Lake(working_copy(url, tmp_path / f"reader{i}"))
        for batch in reader.batches():  # whatever is visible is whole
            assert reader.dataset().count_rows() == reader.batch_manifest(batch)["rows"]
        assert reader.batches() == [] or len(reader.batch_manifest(reader.batches()[0])["files"]) == 3
    env = {**os.environ, **server.env, "FLOWHAWK_STORE_CACHE": str(tmp_path / "final")}
    done = _cli(["ingest", *map(str, captures), "--lake", url], env)
    assert done.wait(timeout=300) == 0, done.stdout.read()
    lake = Lake(working_copy(url, tmp_path / "check"))
    lake.cleanup(stale_upload_s=0)
    assert len(lake.batches()) == 1 and lake.dataset().count_rows() == lake.batch_manifest(lake.batches()[0])["rows"]
    batch = lake.batches()[0]
    assert {e.rel.split("/")[1] for e in store.list("flows")} == {f"batch={batch}"}, landed


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the writer and its children (nfstream's meter processes), as a machine failure would."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _kill_when(proc: subprocess.Popen, store: ObjectStore, delay: float) -> str:
    """SIGKILL ``proc``: as soon as a part is on the store without its manifest (a kill mid-push), else after
    ``delay`` seconds. Returns where the kill landed."""
    started = time.monotonic()
    while proc.poll() is None:
        rels = [e.rel for e in store.list("flows")]
        if rels and not any(r.endswith(MANIFEST) for r in rels) and delay == 0.0:
            _kill_group(proc)
            return "mid-push"
        if delay and time.monotonic() - started >= delay:
            _kill_group(proc)
            return f"after {delay} s"
        time.sleep(0.02)
    return "finished"


@pytest.mark.slow  # saves the session's tiny MindSpore model
def test_registry_versions_and_pointer_on_s3(s3, tmp_path, tiny_model):
    _, bucket = s3
    url = f"s3://{bucket}/models"
    a, b = Registry(working_copy(url, tmp_path / "A")), Registry(working_copy(url, tmp_path / "B"))
    v1 = a.save(tiny_model, data={"rows": 1}, export=False)
    v2 = a.save(tiny_model, data={"rows": 2}, export=False)
    a.promote(v1)
    assert b.versions() == [v1, v2] and b.current() == v1
    loaded = b.load()
    assert loaded.class_names == tiny_model.class_names and b.show(v2)["data"] == {"rows": 2}
    b.promote(v2)
    assert a.current() == v2 and a.rollback() == v1 and b.current() == v1
    # a version whose manifest never arrived (a killed push) is not a version
    store = ObjectStore(url)
    store.upload(a.path(v2) / "model.json", "v0003/model.json")
    assert b.versions() == [v1, v2]
    assert a.save(tiny_model, export=False) == "v0003"  # the name was free: the leftover is overwritten
    assert Registry(working_copy(url, tmp_path / "C")).versions() == [v1, v2, "v0003"]


@pytest.mark.slow  # a Prefect flow run, nfstream, MindSpore scoring and fine-tuning
def test_process_inbox_and_refresh_on_s3(s3, tmp_path, monkeypatch, prefect_harness, tiny_model):
    from flowhawk.flows.inbox_flow import process_inbox
    from flowhawk.flows.params import InboxOptions
    from flowhawk.model.refresh import RefreshConfig, refresh_model
    from flowhawk.reports.hosts import HostStore
    from flowhawk.reports.scored import SUMMARY_FILE, read_summary, reported_batches

    _, bucket = s3
    lake_url, models_url = f"s3://{bucket}/lake", f"s3://{bucket}/models"
    setup = Registry(working_copy(models_url, tmp_path / "setup"))
    setup.promote(setup.save(tiny_model, export=False))
    inbox = tmp_path / "inbox"
    _synth_captures(inbox, 1, 3000)
    monkeypatch.setenv("FLOWHAWK_STORE_CACHE", str(tmp_path / "flow-cache"))
    result = process_inbox(inbox=inbox, lake=lake_url, models=models_url, options=InboxOptions(settle_seconds=0))
    [batch] = [b["batch_id"] for b in result["batches"] if b["status"] == "reported"]
    other = Lake(working_copy(lake_url, tmp_path / "other"))  # another machine
    assert len(other.batches()) == 1 and other.read_table().num_rows > 0
    assert reported_batches(other.reports_dir) == [batch]
    assert read_summary(other.reports_dir, batch)["flows"] == other.read_table().num_rows
    assert ObjectStore(lake_url).exists(f"reports/batch={batch}/{SUMMARY_FILE}")
    assert len(HostStore(other.root).read()) > 0  # the host table went to the store too
    # refresh from the other machine on a new labelled batch; the candidate lands in the shared registry
    ingest_frame(other.root, make_flows(300, seed=7, t0=1_700_001_000_000), "b2")
    reg = Registry(working_copy(models_url, tmp_path / "other-models"))
    refreshed = refresh_model(reg, other, new_batches=["b2"],
                              config=RefreshConfig(replay_rows=150, epochs=1, block_rows=32, holdout_fraction=0.25))
    assert Registry(working_copy(models_url, tmp_path / "third")).versions() == ["v0001", refreshed.version]
    shown = setup.show(refreshed.version)
    assert shown["data"]["lake"] == lake_url and shown["manifest"]["parent"] == "v0001"


def test_working_copy_of_an_emptied_store_is_discarded_not_pushed_back(s3, tmp_path):
    _, bucket = s3
    url = f"s3://{bucket}/lake"
    local = working_copy(url, tmp_path / "A")
    ingest_frame(local, make_flows(100, seed=4), "b1")
    store = ObjectStore(url)
    store.delete([e.rel for e in store.list()])  # the bucket emptied (or recreated), its identity too
    again = Lake(working_copy(url, tmp_path / "A"))
    assert again.root == local and not again.batch_dir("b1").exists()
    again.cleanup()
    assert again.batches() == [] and store.list("flows") == []


def test_refused_credentials_and_unknown_schemes_are_one_line_errors(s3, tmp_path):
    server, bucket = s3
    env = {**os.environ, **server.env, "AWS_SECRET_ACCESS_KEY": "wrong", "FLOWHAWK_STORE_CACHE": str(tmp_path)}
    for location, reason in ((f"s3://{bucket}/models", "ACCESS_DENIED"), ("gs://bucket/models", "unsupported URL")):
        proc = _cli(["models", "list", "--models", location], env)
        out = proc.communicate(timeout=120)[0]
        assert proc.returncode != 0 and "Traceback" not in out, out
        [line] = [ln for ln in out.splitlines() if ln.startswith("flowhawk:")]
        assert location in line and reason in line, out


def test_a_pull_that_waited_for_another_does_not_swap_the_unit_under_its_readers(s3, tmp_path):
    """Two tasks of one Dask worker load the same model version from S3: the second found it missing, waited for
    the first's download, and must then use it, not download it again and swap the folder (a reader of the first
    saw 'weights.ckpt is missing' in the window of that swap, in CI)."""
    import threading

    from flowhawk.common.files import exclusive_lock
    from flowhawk.common.objectstore import PULL_LOCKS, Mirror

    _, bucket = s3
    url = f"s3://{bucket}/pulls"
    ingest_frame(working_copy(url, tmp_path / "writer"), make_flows(50, seed=3), "b1")
    mirror = Mirror.of(working_copy(url, tmp_path / "worker"))
    unit = "flows/batch=b1"
    lock = mirror.local / PULL_LOCKS / f"{hashlib.sha256(unit.encode()).hexdigest()[:16]}.lock"
    results: list[bool] = []
    with exclusive_lock(lock):  # the first pull, in progress
        second = threading.Thread(target=lambda: results.append(mirror.pull(unit, MANIFEST)))
        second.start()
        time.sleep(0.5)  # the second has found the unit missing and waits for the lock
        assert not results and second.is_alive()
        assert mirror._download(unit, MANIFEST, mirror.local / unit)  # the first's download completes
        first = (mirror.local / unit).stat().st_ino
    second.join(timeout=30)
    assert results == [True] and (mirror.local / unit).stat().st_ino == first  # used, not swapped


def test_registry_and_input_errors_survive_pickling():
    """A Dask worker pickles a task's exception for the client: it must come back as itself, one line."""
    import pickle

    from flowhawk.extractors.base import BadInputError
    from flowhawk.model.registry import RegistryError

    for error in (RegistryError("/m/v0001", "weights.ckpt is missing"), BadInputError("/in/x.pcap", "truncated")):
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error) and str(again) == str(error) and again.reason == error.reason
