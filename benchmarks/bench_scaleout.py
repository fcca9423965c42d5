"""Backfill of N captures on a Dask LocalCluster of 1 worker, then of 2 workers, in one run (a ratio).

Each run: a fresh lake, a copy of one trained registry, ``backfill`` (flows.backfill_flow) with
``--dask local:W``: the cluster start, N ingest tasks (nfstream) and N score-and-report tasks (MindSpore, one
model load per worker) all inside the timed wall. Each run is ``flowhawk backfill`` in a fresh process; all share one
Prefect server (a temporary one started here, left out of the timings). Also times the thread pool (the
default) as the reference.

Usage (from the repo root): ``python benchmarks/bench_scaleout.py [--captures 8] [--packets 6000]
[--out benchmarks/results/scaleout.md]``. A first model is trained by ``flowhawk demo`` (1 epoch) in a
temporary folder.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import emit

ROOT = Path(__file__).resolve().parents[1]


def _cli(*argv: str) -> str:
    from flowhawk.cli.main import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    if code != 0:
        raise SystemExit(f"flowhawk {' '.join(argv[:2])}... failed ({code}):\n{out.getvalue()}")
    return out.getvalue()


def synth_captures(folder: Path, n: int, packets: int) -> list[Path]:
    """``n`` synthetic captures of ~``packets`` packets (seeds 300...), the benchmarks' backfill input."""
    folder.mkdir(parents=True)
    for i in range(n):
        _cli("synth", str(folder / f"cap{i}.pcap"), "--packets", str(packets), "--duration", "120", "--seed",
             str(300 + i))
    return [folder / f"cap{i}.pcap" for i in range(n)]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(mode: str, captures: list[Path], models: Path, work: Path) -> dict:
    """``flowhawk backfill`` in a fresh process (wall: Python start, imports, cluster start and stop too)."""
    lake, registry = work / mode / "lake", work / mode / "models"
    shutil.copytree(models, registry)
    dask = [] if mode == "threads" else ["--dask", mode]
    cpu0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "flowhawk.cli", "backfill", *map(str, captures), "--lake", str(lake),
                           "--models", str(registry), "--json", *dask], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    cpu = _children_cpu() - cpu0  # the backfill process and everything it reaped (workers, nfstream meters)
    if proc.returncode != 0:
        raise SystemExit(f"backfill {mode} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    rows = json.loads(proc.stdout)
    assert all(r["report"] for r in rows), rows
    return {"mode": mode, "wall": wall, "cpu": cpu, "flows": sum(r["flows"] for r in rows), "captures": len(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--captures", type=int, default=8)
    parser.add_argument("--packets", type=int, default=6000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flowhawk.cli.scaleout import dask_api

    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp:
        work = Path(tmp)
        captures = synth_captures(work / "captures", args.captures, args.packets)
        with dask_api("local", configured=False):  # one Prefect server for every run (not timed)
            _cli("demo", "--workdir", str(work / "demo"), "--packets", "3000", "--epochs", "1")
            runs = [_run(mode, captures, work / "demo" / "models", work)
                    for mode in ("threads", "local:1", "local:2")]
    load1 = os.getloadavg()[0]
    by = {r["mode"]: r for r in runs}
    lines = [
        "## Backfill on Dask: 1 vs 2 workers (LocalCluster)", "",
        f"Command: `python benchmarks/bench_scaleout.py --captures {args.captures} --packets {args.packets}`", "",
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, load average {load0:.1f} at start, "
        f"{load1:.1f} at end (shared machine). {args.captures} synthetic captures of ~{args.packets:,} packets "
        f"({by['threads']['flows']:,} flows in all); one batch and one report each. Wall includes the cluster "
        "start and worker shutdown; CPU is this process plus reaped children (Dask workers and nfstream meters).",
        "", "| runner | wall s | captures/s | flows/s | flows/s per worker | CPU s |", "|---|---|---|---|---|---|",
    ]
    for r in runs:
        workers = 1 if r["mode"] == "local:1" else 2
        lines.append(f"| {r['mode']} | {r['wall']:.1f} | {r['captures'] / r['wall']:.3f} | "
                     f"{r['flows'] / r['wall']:.0f} | {r['flows'] / r['wall'] / workers:.0f} | {r['cpu']:.1f} |")
    lines += ["", f"Speed-up of 2 workers over 1: **{by['local:1']['wall'] / by['local:2']['wall']:.2f}×** "
              f"(same run); thread pool (2 threads) / 2 workers: {by['threads']['wall'] / by['local:2']['wall']:.2f}×.",
              ""]
    emit("\n".join(lines), args.out)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
