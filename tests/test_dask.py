"""Backfill and process_inbox on a real 2-worker Dask LocalCluster (prefect-dask) give the same lake and the
same scores as the local thread pool: byte-identical flow tables (Parquet parts of each lake batch) and equal
scores in every report. Real nfstream, real MindSpore, a real Prefect server (the session harness)."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flowhawk.cli.main import main
from flowhawk.flows.runners import DaskSpec

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("prefect_dask", reason="the dask extra is not installed (pip install .[dask])")


def _run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def _cli(*argv: str) -> tuple[int, str, str]:
    """``flowhawk ...`` in a fresh process, as a user runs it (PREFECT_API_URL: the session's server)."""
    proc = subprocess.run([sys.executable, "-m", "flowhawk.cli", *argv], capture_output=True, text=True,
                          timeout=900, cwd=ROOT)
    return proc.returncode, proc.stdout, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def trained(prefect_harness, tmp_path_factory):
    """A registry with a current model (``flowhawk demo``, 1 epoch) and three synthetic captures."""
    os.environ["PREFECT_API_URL"] = prefect_harness  # the Dask workers are other processes: same API
    work = tmp_path_factory.mktemp("dask")
    code, out = _run("demo", "--workdir", str(work / "demo"), "--packets", "3000", "--epochs", "1")
    assert code == 0, out
    captures = []
    (work / "captures").mkdir()
    for seed in (21, 22, 23):
        path = work / "captures" / f"cap{seed}.pcap"
        code, out = _run("synth", str(path), "--packets", "2500", "--duration", "60", "--seed", str(seed))
        assert code == 0, out
        captures.append(path)
    yield work / "demo" / "models", captures
    os.environ.pop("PREFECT_API_URL", None)


def _flow_tables(lake: Path) -> dict[str, bytes]:
    return {str(p.relative_to(lake)): p.read_bytes() for p in sorted(lake.glob("flows/batch=*/*.parquet"))}


def _scores(lake: Path) -> dict[tuple[str, int], float]:
    out = {}
    for path in sorted((lake / "reports").glob("batch=*/scored_flows.parquet")):
        table = pq.read_table(path, columns=["source_file", "flow_index", "score"]).to_pylist()
        out.update({(r["source_file"], r["flow_index"]): r["score"] for r in table})
    return out


@pytest.mark.slow
def test_backfill_and_process_inbox_identical_on_a_2_worker_local_cluster(trained, tmp_path):
    models, captures = trained
    results = {}
    for mode in ("threads", "local:2"):
        lake, registry = tmp_path / mode / "lake", tmp_path / mode / "models"
        shutil.copytree(models, registry)
        dask = ["--dask", mode] if mode != "threads" else []
        code, out, err = _cli("backfill", *map(str, captures[:2]), "--lake", str(lake), "--models", str(registry),
                              *dask)
        assert code == 0, out + err
        assert out.count(": ingested") == 2 and out.count("report ") == 2, out
        inbox = tmp_path / mode / "inbox"  # the third capture through process_inbox on the same runner
        inbox.mkdir()
        shutil.copy(captures[2], inbox / captures[2].name)
        code, out, err = _cli("process-inbox", "--inbox", str(inbox), "--lake", str(lake), "--models", str(registry),
                         "--settle-seconds", "0", "--refresh-after", "0", *dask)
        assert code == 0, out + err
        assert ": reported" in out, out
        results[mode] = (_flow_tables(lake), _scores(lake))
    tables, scores = results["threads"]
    assert len(tables) >= 3 and len(scores) > 1000
    assert results["local:2"][0] == tables, "flow tables differ between the thread pool and the Dask cluster"
    assert results["local:2"][1] == scores, "scores differ between the thread pool and the Dask cluster"


def test_dask_spec_parsing():
    assert DaskSpec.parse("local") == DaskSpec(workers=2)
    assert DaskSpec.parse("local:4") == DaskSpec(workers=4)
    assert DaskSpec.parse("tcp://10.0.0.5:8786") == DaskSpec(address="tcp://10.0.0.5:8786")
    for bad in ("local:0", "remote", "tcp://host", "http://host:8786"):
        with pytest.raises(ValueError, match=r"dask|workers"):
            DaskSpec.parse(bad)


@pytest.mark.slow
def test_backfill_on_a_local_cluster_with_the_lake_and_registry_on_s3(trained, s3, tmp_path, monkeypatch):
    """The lake and registry on the S3 server; the two Dask workers have a working copy of their own (another
    FLOWHAWK_STORE_CACHE, as another machine would): same flow tables and scores as the thread pool on a local lake."""
    import dask
    from dask.distributed import LocalCluster
    from prefect_dask import DaskTaskRunner

    from flowhawk.common.objectstore import Mirror, ObjectStore, working_copy
    from flowhawk.flows.backfill_flow import backfill
    from flowhawk.lake.store import Lake
    from flowhawk.reports.scored import reported_batches

    server, bucket = s3
    models, captures = trained
    lake_url, models_url = f"s3://{bucket}/lake", f"s3://{bucket}/models"
    shutil.copytree(models, working_copy(models_url, tmp_path / "setup"), dirs_exist_ok=True)
    mirror = Mirror(working_copy(models_url, tmp_path / "setup"), ObjectStore(models_url))
    for version in (p.name for p in models.glob("v*")):
        mirror.push(version, "manifest.json")
    mirror.push_file("current.json")
    code, out, err = _cli("backfill", *map(str, captures[:2]), "--lake", str(tmp_path / "local" / "lake"),
                          "--models", str(models))
    assert code == 0, out + err
    monkeypatch.setenv("FLOWHAWK_STORE_CACHE", str(tmp_path / "runner"))
    workers_env = {**server.env, "FLOWHAWK_STORE_CACHE": str(tmp_path / "workers"),
                   "PREFECT_API_URL": os.environ["PREFECT_API_URL"]}
    runner = DaskTaskRunner(cluster_class=LocalCluster, cluster_kwargs={
        "n_workers": 2, "threads_per_worker": 1, "processes": True, "dashboard_address": None, "env": workers_env})
    dask.config.set({"distributed.worker.daemon": False})  # nfstream's meter is a child process
    rows = backfill.with_options(task_runner=runner)(captures[:2], lake=lake_url, models=models_url)
    assert [r["status"] for r in rows] == ["ingested", "ingested"], rows
    assert list((tmp_path / "workers").glob("*/flows/batch=*")), "the workers wrote no working copy"
    check = Lake(working_copy(lake_url, tmp_path / "check"))
    check.read_table()  # pulls the committed batches
    assert len(reported_batches(check.reports_dir)) == 2
    assert _flow_tables(check.root) == _flow_tables(tmp_path / "local" / "lake")
    assert _scores(check.root) == _scores(tmp_path / "local" / "lake")


def test_kernel_threads_sized_to_the_worker(monkeypatch, fused_kernels):
    from flowhawk.flows.params import use_kernel_settings_from_env
    from flowhawk.flows.runners import task_runner
    from flowhawk.model.kernels import kernel_threads

    assert task_runner(DaskSpec(workers=2)).cluster_kwargs["env"] == {"FLOWHAWK_KERNEL_THREADS": "1"}
    try:
        for value in ("1", "2"):
            monkeypatch.setenv("FLOWHAWK_KERNEL_THREADS", value)
            use_kernel_settings_from_env()
            assert kernel_threads() == int(value)
        for bad in ("0", "two", "999"):
            monkeypatch.setenv("FLOWHAWK_KERNEL_THREADS", bad)
            with pytest.raises(ValueError, match=r"FLOWHAWK_KERNEL_THREADS=.*\[1, 256\]"):
                use_kernel_settings_from_env()
    finally:
        monkeypatch.delenv("FLOWHAWK_KERNEL_THREADS")
        use_kernel_settings_from_env()
        from flowhawk.model.network import set_threads

        set_threads()  # back to the default budget for the rest of the session
