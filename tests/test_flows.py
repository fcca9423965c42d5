"""The Prefect flows end to end on real components (nfstream, MindSpore, a Prefect test server).

One Prefect test server for the session (``prefect_harness``); one model is trained, by the demo, and copied
for the other tests. Subprocesses run ``flowhawk process-inbox`` against the same server (PREFECT_API_URL).
Faults: re-running on the same files, SIGKILL mid-run, two runs started together (also on an empty registry),
a bad file in a batch.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _synth(folder: Path, name: str, seed: int, packets: int, labels: bool = True) -> Path:
    from flowhawk.extractors.synth import SynthConfig, synthesize

    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".synth"
    tmp.mkdir(exist_ok=True)
    synthesize(SynthConfig(seed=seed, packets=packets, duration_s=60.0), tmp / f"{name}.pcap",
               tmp / f"{name}.labels.csv")
    if labels:
        os.replace(tmp / f"{name}.labels.csv", folder / f"{name}.labels.csv")
    os.replace(tmp / f"{name}.pcap", folder / f"{name}.pcap")
    shutil.rmtree(tmp)
    return folder / f"{name}.pcap"


def _options(refresh_after: int = 0, **kw):
    from flowhawk.flows.params import InboxOptions, RefreshOptions, TrainOptions

    return InboxOptions(settle_seconds=0, train=TrainOptions(epochs=1, split="stratified"),
                        refresh=RefreshOptions(after_labelled_batches=refresh_after, epochs=1), **kw)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".prefect-cache" not in p.parts}


def _lake_rows(lake: Path) -> int:
    from flowhawk.lake.store import Lake

    return Lake(lake).read_table(columns=["flow_index"]).num_rows


def _env(api_url: str) -> dict[str, str]:
    return {**os.environ, "PREFECT_API_URL": api_url, "PYTHONPATH": str(ROOT),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


@pytest.fixture(scope="module")
def demo(prefect_harness, tmp_path_factory):
    """``flowhawk demo`` once (it trains the module's only model); returns (workdir, stdout)."""
    import contextlib
    import io

    from flowhawk.cli.main import main

    workdir = tmp_path_factory.mktemp("demo")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["demo", "--workdir", str(workdir), "--packets", "3000", "--epochs", "1"])
    assert code == 0, out.getvalue()
    return workdir, out.getvalue()


@pytest.fixture
def env(demo, tmp_path):
    """Copies of the demo's lake (its batch and report) and registry: a current model, no training needed."""
    shutil.copytree(demo[0] / "lake", tmp_path / "lake")
    shutil.copytree(demo[0] / "models", tmp_path / "models")
    return tmp_path / "lake", tmp_path / "models"


def _batch_rows(lake: Path, batch: str) -> int:
    from flowhawk.lake.store import Lake

    return Lake(lake).read_table([batch], columns=["flow_index"]).num_rows


def test_demo_end_to_end(demo, prefect_harness):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowFilter, FlowFilterName

    workdir, stdout = demo
    reports = sorted((workdir / "lake" / "reports").glob("batch=*"))
    assert len(reports) == 1
    batch_id = reports[0].name.split("=", 1)[1]
    summary = json.loads((reports[0] / "summary.json").read_text())
    assert summary["flows"] == _lake_rows(workdir / "lake") > 500
    assert summary["ground_truth"]["labelled_flows"] == summary["flows"]
    assert summary["model_version"] == "v0001" and set(summary["timings_s"]) >= {"ingest", "train", "score"}
    assert summary["incidents"] >= 1 and (reports[0] / "incidents.parquet").is_file()  # the analyst's view
    assert len((reports[0] / "alerts.jsonl").read_text().splitlines()) == summary["alerts"] >= 1
    assert (workdir / "lake" / "hosts" / "hosts.parquet").is_file() and "explain" in summary["timings_s"]
    assert f"batch {batch_id}: reported" in stdout and str(reports[0] / "report.html") in stdout
    assert "predicted class" in stdout and "ground truth" in stdout
    assert sorted(p.name for p in (workdir / "inbox" / "done" / batch_id).iterdir()) == [
        "_outcome.json", "demo.labels.csv", "demo.pcap"]
    assert not any((workdir / "inbox" / "processing").iterdir())
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["process-inbox"])))
        assert any(r.state.is_completed() for r in runs)
        keys = [f"top-anomalies-{batch_id}", f"batch-summary-{batch_id}", "model-metrics-v0001"]
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
        assert {a.key for a in found} == set(keys)
        table = next(a for a in found if a.key.startswith("top-anomalies"))
        rows = json.loads(table.data) if isinstance(table.data, str) else table.data
        assert rows and rows[0]["score"] >= summary["threshold"]


def test_rerun_same_files_identical_refresh_and_bad_file_quarantined(prefect_harness, env, tmp_path):
    from flowhawk.flows.inbox_flow import process_inbox

    lake, models = env
    inbox = tmp_path / "inbox"
    capture = _synth(inbox, "cap", seed=21, packets=1500)
    keep = tmp_path / "keep"
    shutil.copytree(inbox, keep)
    (inbox / "broken.pcap").write_bytes(b"\xd4\xc3\xb2\xa1" + b"\x00" * 10)  # a pcap header cut short
    first = process_inbox(inbox, lake, models, _options(refresh_after=1))
    (batch,) = first["batches"]
    status = {f["file"]: f for f in batch["files"]}
    assert status["cap.pcap"]["status"] == "ingested" and status["broken.pcap"]["status"] == "quarantined"
    reason = (inbox / "quarantine" / batch["batch_id"] / "broken.pcap.reason.txt").read_text()
    assert reason.strip() == status["broken.pcap"]["reason"] and reason.strip()
    summary = json.loads(Path(batch["report"]["summary"]).read_text())
    assert summary["flows"] == _batch_rows(lake, status["cap.pcap"]["lake_batch"]) > 0
    assert {f["file"]: f["status"] for f in summary["files"]} == {"cap.pcap": "ingested", "broken.pcap": "quarantined"}
    assert first["refresh"]["version"] == "v0002" and first["refresh"]["new_batches"] == [
        status["cap.pcap"]["lake_batch"]]
    _assert_scored_with_history(lake, models, summary, Path(batch["report"]["summary"]).parent)
    _assert_artifacts(["refresh-v0002", f"top-anomalies-{batch['batch_id']}"])
    before, registry = _tree(lake), _tree(models)

    # the same bytes again, under another name: cached on content, nothing new, no second refresh
    shutil.copy(keep / "cap.pcap", inbox / "again.pcap")
    shutil.copy(keep / "cap.labels.csv", inbox / "again.labels.csv")
    state = process_inbox(inbox, lake, models, _options(refresh_after=1), return_state=True)
    result = state.result()
    (second,) = result["batches"]
    assert second["status"] == "nothing new" and second["files"][0]["status"] == "duplicate"
    assert result["refresh"] is None and _tree(models) == registry
    assert _tree(lake) == before
    done = inbox / "done"
    assert (done / second["batch_id"] / "again.pcap").read_bytes() == (done / batch["batch_id"] / "cap.pcap"
                                                                       ).read_bytes()
    assert not capture.exists()
    assert _ingest_states(state) == ["Cached"]


def _assert_scored_with_history(lake: Path, models: Path, summary: dict, report: Path) -> None:
    """The supervised scores of the report are ``score_frame`` with the hosts' earlier lake flows as context."""
    import numpy as np

    from flowhawk.lake.store import Lake
    from flowhawk.model.novelty_lifecycle import batch_context
    from flowhawk.model.registry import Registry
    from flowhawk.model.scoring import score_frame

    lake_obj, batches = Lake(lake), summary["lake_batches"]
    flows = lake_obj.read_flows(batches)
    model = Registry(models).load(summary["model_version"].split(" + ")[0])
    context = batch_context(lake_obj, batches, flows, model.train_config.window)
    assert context is not None and len(context) > 0  # the demo's batches hold the same hosts' earlier flows
    table = pq.read_table(report / "scored_flows.parquet").to_pandas()
    expected = score_frame(model, flows, context=context)["score"].to_numpy()
    np.testing.assert_allclose(table["attack_score"].to_numpy(), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(score_frame(model, flows)["score"].to_numpy(), expected, rtol=1e-5, atol=1e-6)


def _assert_artifacts(keys: list[str]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
    assert {a.key for a in found} == set(keys)


def _ingest_states(state) -> list[str]:
    """State names of the ingest-file task runs under a process_inbox flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId, TaskRunFilter
    from prefect.client.schemas.filters import TaskRunFilterName as Name

    with get_client(sync_client=True) as client:
        parent = state.state_details.flow_run_id
        children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent])))
        child_ids = [r.id for r in children]
        grand = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=child_ids))) if child_ids else []
        ids = [parent, *child_ids, *(r.id for r in grand)]
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": ids}),
                                      task_run_filter=TaskRunFilter(name=Name(like_="ingest ")))
    return [t.state.name for t in tasks]


def test_sigkill_mid_run_leaves_nothing_partial_and_next_run_completes(prefect_harness, env, tmp_path):
    from flowhawk.flows.inbox_flow import process_inbox

    lake, models = env
    inbox = tmp_path / "inbox"
    _synth(inbox, "cap", seed=31, packets=1500)
    known = set(lake.glob("flows/batch=*/_manifest.json"))
    reports = set(lake.glob("reports/batch=*"))
    cmd = [sys.executable, "-m", "flowhawk.cli", "process-inbox", "--inbox", str(inbox), "--lake", str(lake),
           "--models", str(models), "--settle-seconds", "0"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(prefect_harness), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not set(lake.glob("flows/batch=*/_manifest.json")) - known and proc.poll() is None:
        assert time.monotonic() < deadline, "the run never ingested its capture"
        time.sleep(0.05)
    reports_at_kill = set(lake.glob("reports/batch=*")) - reports
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not reports_at_kill, "killed too late: the run had finished"
    (claim,) = [p for p in (inbox / "processing").iterdir() if not p.name.startswith(".")]
    assert (claim / "cap.pcap").is_file()
    assert set(lake.glob("reports/batch=*")) == reports  # no partial report
    assert all((b / "_manifest.json").is_file() for b in (lake / "flows").glob("batch=*"))

    result = process_inbox(inbox, lake, models, _options())
    (batch,) = result["batches"]
    assert batch["batch_id"] == claim.name and batch["resumed"] and batch["status"] == "reported"
    assert batch["files"][0]["status"] == "duplicate"  # ingested by the killed run, reported now
    rows = _batch_rows(lake, batch["files"][0]["lake_batch"])
    assert pq.read_table(batch["report"]["scored_flows"]).num_rows == rows > 0
    assert not any((inbox / "processing").iterdir())
    assert set(lake.glob("reports/*")) == reports | {lake / "reports" / f"batch={claim.name}"}
    assert not list(lake.glob("*/.tmp-*"))  # a killed writer's temp folders are cleaned up by the next run


def test_two_runs_started_together_process_every_file_once(prefect_harness, env, tmp_path):
    from flowhawk.lake.store import Lake
    from flowhawk.reports.scored import covered_lake_batches, read_scored

    lake, models = env
    inbox = tmp_path / "inbox"
    names = [_synth(inbox, f"cap{i}", seed=40 + i, packets=400).name for i in range(4)]
    cmd = [sys.executable, "-m", "flowhawk.cli", "process-inbox", "--inbox", str(inbox), "--lake", str(lake),
           "--models", str(models), "--settle-seconds", "0", "--max-files", "2", "--refresh-after", "0", "--json"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=_env(prefect_harness), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for proc, (_, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    done = sorted(p.name for p in (inbox / "done").rglob("*.pcap"))
    assert done == sorted(names)  # each file exactly once, none left behind
    claims = [b for out, _ in outs for b in json.loads(out)["batches"]]
    assert sorted(f["file"] for b in claims for f in b["files"]) == sorted(names)
    assert all(b["status"] == "reported" for b in claims)
    batches = Lake(lake).batches()
    assert len(batches) == 5 and covered_lake_batches(lake / "reports") == set(batches)  # 4 + the demo's
    scored = read_scored(lake / "reports", columns=["source_sha256", "flow_index"])
    assert len(scored) == _lake_rows(lake) and not scored.duplicated().any()


def test_two_runs_on_an_empty_registry_train_one_first_model(prefect_harness, tmp_path):
    from flowhawk.model.registry import Registry

    inbox, lake, models = tmp_path / "inbox", tmp_path / "lake", tmp_path / "models"
    names = [_synth(inbox, f"lab{i}", seed=60 + i, packets=1500, labels=True).name for i in range(2)]
    cmd = [sys.executable, "-m", "flowhawk.cli", "process-inbox", "--inbox", str(inbox), "--lake", str(lake),
           "--models", str(models), "--settle-seconds", "0", "--max-files", "1", "--refresh-after", "0",
           "--epochs", "1", "--json"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=_env(prefect_harness), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    claims = [b for out, _ in outs for b in json.loads(out)["batches"]]
    assert sorted(f["file"] for b in claims for f in b["files"]) == sorted(names)
    assert all(b["status"] == "reported" for b in claims)
    registry = Registry(models)
    assert len(registry.versions()) == 1 and registry.current() == registry.versions()[0]


def test_retries_only_transient_errors(prefect_harness, tmp_path):
    from prefect import flow, task

    from flowhawk.extractors.base import BadInputError
    from flowhawk.flows.tasks import is_transient_error, retry_if_transient

    attempts = tmp_path / "attempts"

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_if_transient, persist_result=False)
    def flaky(kind: str) -> str:
        with attempts.open("a") as fh:
            fh.write(kind + "\n")
        if kind == "io" and attempts.read_text().count("io") == 1:
            raise OSError(errno.EIO, "Input/output error")
        if kind == "bad":
            raise BadInputError(tmp_path / "x.pcap", "truncated packet header")
        return "ok"

    @flow
    def run(kind: str) -> str:
        return flaky(kind)

    assert run("io") == "ok" and attempts.read_text().count("io") == 2  # failed once, retried, succeeded
    assert not run("bad", return_state=True).is_completed() and attempts.read_text().count("bad") == 1
    assert is_transient_error(FileExistsError()) and not is_transient_error(PermissionError())
    assert not is_transient_error(ValueError()) and not is_transient_error(FileNotFoundError())


def test_prefect_yaml_deployments_and_typed_parameters(tmp_path):
    import yaml
    from prefect.cli.deploy._models import PrefectYamlModel

    from flowhawk.cli.orchestrate import load_deployments

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    PrefectYamlModel.model_validate(spec)  # what `prefect deploy` accepts
    entry = {d["entrypoint"] for d in spec["deployments"]}
    assert entry == {"flowhawk.flows.inbox_flow.process_inbox", "flowhawk.flows.ingest_flow.ingest_batch",
                     "flowhawk.flows.model_flows.train_model", "flowhawk.flows.model_flows.refresh_model",
                     "flowhawk.flows.score_flow.score_batch"}
    paths = {"inbox": tmp_path / "i", "lake": tmp_path / "l", "models": tmp_path / "m"}
    deployments = {d.name: d for d in load_deployments(ROOT / "prefect.yaml", paths)}
    inbox = deployments["scheduled"]
    assert inbox.parameters == {k: str(v) for k, v in paths.items()}
    assert [s.schedule.cron for s in inbox.schedules] == ["*/5 * * * *"]
    schema = inbox._parameter_openapi_schema.model_dump()
    assert {"inbox", "lake", "models", "options"} <= set(schema["properties"])
    assert {"InboxOptions", "TrainOptions"} <= set(schema["definitions"])
    assert deployments["score"].parameters["lake"] == str(paths["lake"])
    assert inbox.entrypoint == "flowhawk.flows.inbox_flow.process_inbox"
