"""End-to-end ``process_inbox`` on a real capture beside raw nfstream on the same file, in one run.

Target: process_inbox wall time <= 2 x raw nfstream + 15 s (fixed orchestration cost).

Steps (each in its own subprocess, so nothing is warm that would not be warm in production):

1. raw nfstream: ``NFStreamer`` with the ingest's settings (``PcapConfig().streamer_kwargs()``), iterating flows;
2. setup (not part of the target): ``flowhawk process-inbox`` on the capture and its labels trains the first
   model (``--epochs``), against a ``prefect server start`` this script runs on a free loopback port;
3. timed: a fresh inbox and lake, the trained model, ``flowhawk process-inbox`` (claim, ingest, score, report,
   file away) against the same server: wall time of the whole command (Python start, imports, API calls);
4. the same on Prefect's embedded temporary server (no PREFECT_API_URL: its start-up is in the time).

Steps 1 and 3 alternate ``--rounds`` times (the machine is shared and noisy); the target compares medians.

Usage (from the repo root): ``python benchmarks/bench_inbox.py [--capture PATH] [--labels PATH] [--epochs 2]
[--rounds 3] [--out benchmarks/results/flows.md]``. Defaults: ../shared/data/lab/capture.pcap and its labels.csv.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT.parent / "shared" / "data" / "lab"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "flows.md"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _raw_worker(capture: Path) -> None:
    from nfstream import NFStreamer

    from flowhawk.extractors.pcap_to_flows import PcapConfig

    started = time.perf_counter()
    flows = sum(1 for _ in NFStreamer(source=str(capture), **PcapConfig().streamer_kwargs()))
    print(json.dumps({"seconds": time.perf_counter() - started, "flows": flows}))


def raw_nfstream(capture: Path) -> dict:
    started, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run([sys.executable, __file__, "--raw-worker", str(capture)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = time.perf_counter() - started  # with interpreter start and the nfstream import
    result["cpu_seconds"] = _children_cpu() - cpu  # user + sys of the process and nfstream's meter processes
    return result


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def start_server(home: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                             str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    for _ in range(240):
        try:
            urllib.request.urlopen(f"{base}/api/health", timeout=2)
            return proc, f"{base}/api"
        except OSError:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGTERM)
    raise SystemExit("the Prefect server did not start")


def process_inbox(work: Path, capture: Path, labels: Path, models: Path, api: str | None, extra: list[str]) -> dict:
    """Fresh inbox and lake under ``work``; one ``flowhawk process-inbox``; its wall time and the report."""
    inbox, lake = work / "inbox", work / "lake"
    inbox.mkdir(parents=True)
    shutil.copy(labels, inbox / "capture.labels.csv")
    shutil.copy(capture, inbox / "capture.pcap")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PYTHONPATH=str(ROOT), PREFECT_HOME=str(work / "prefect-home"))
    if api:
        env["PREFECT_API_URL"] = api
    cmd = [sys.executable, "-m", "flowhawk.cli", "process-inbox", "--inbox", str(inbox), "--lake", str(lake),
           "--models", str(models), "--settle-seconds", "0", "--refresh-after", "0", "--json", *extra]
    started, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - started, _children_cpu() - cpu
    if done.returncode != 0:
        raise SystemExit(f"process-inbox failed ({done.returncode}):\n{done.stderr[-4000:]}")
    (batch,) = json.loads(done.stdout)["batches"]
    summary = json.loads(Path(batch["report"]["summary"]).read_text())
    return {"wall_seconds": wall, "cpu_seconds": cpu, "flows": summary["flows"], "anomalies": summary["anomalies"],
            "stages": summary["timings_s"], "ground_truth": summary["ground_truth"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--capture", type=Path, default=LAB / "capture.pcap")
    parser.add_argument("--labels", type=Path, default=LAB / "labels.csv")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the setup training (not timed)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved raw / timed rounds (medians compared)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--raw-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_worker:
        _raw_worker(args.raw_worker)
        return
    for path in (args.capture, args.labels):
        if not path.is_file():
            raise SystemExit(f"{path}: not found (real data lives in ../shared/data)")
    with tempfile.TemporaryDirectory(prefix="flowhawk-bench-inbox-") as tmp:
        tmp = Path(tmp)
        server, api = start_server(tmp / "server-home")
        raws, timed = [], []
        try:
            setup = process_inbox(tmp / "setup", args.capture, args.labels, tmp / "models", api,
                                  ["--epochs", str(args.epochs)])
            for i in range(args.rounds):  # interleaved, so that load changes hit both sides alike
                raws.append(raw_nfstream(args.capture))
                timed.append(process_inbox(tmp / f"timed{i}", args.capture, args.labels, tmp / "models", api, []))
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
        embedded = process_inbox(tmp / "embedded", args.capture, args.labels, tmp / "models", None, [])
    report = render(args, raws, setup, timed, embedded)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)


def render(args: argparse.Namespace, raws: list[dict], setup: dict, timed: list[dict], embedded: dict) -> str:
    raw = statistics.median(r["seconds"] for r in raws)
    wall = statistics.median(t["wall_seconds"] for t in timed)
    mid = sorted(timed, key=lambda t: t["wall_seconds"])[len(timed) // 2]
    budget = 2 * raw + 15
    stages = mid["stages"]
    work = sum(stages.get(k, 0.0) for k in ("ingest", "load_model", "read_flows", "score"))
    rows = [
        ("raw nfstream (iterate flows), per round", [r["seconds"] for r in raws], f"{raws[0]['flows']:,} flows"),
        ("**process-inbox with a model, Prefect server** (whole command), per round",
         [t["wall_seconds"] for t in timed], f"{mid['flows']:,} flows scored, {mid['anomalies']:,} anomalies"),
        ("process-inbox, first run: trains the model (setup, not the target)", [setup["wall_seconds"]],
         f"train stage {setup['stages'].get('train', 0):.1f} s, {args.epochs} epochs"),
        ("process-inbox with a model, embedded Prefect (whole command)", [embedded["wall_seconds"]],
         "includes the temporary server start"),
    ]
    verdict = "meets" if wall <= budget else "MISSES"
    lines = [
        "# process_inbox end to end vs raw nfstream",
        "",
        f"Command: `python benchmarks/bench_inbox.py --capture {args.capture} --labels {args.labels} "
        f"--epochs {args.epochs} --rounds {args.rounds}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared with other jobs; load average at the end "
        f"{os.getloadavg()[0]:.1f}), Python {platform.python_version()}. Capture: `{args.capture.name}` "
        f"({args.capture.stat().st_size / 1e6:.1f} MB).",
        "",
        "| run | seconds | notes |",
        "|---|---|---|",
        *[f"| {name} | {', '.join(f'{v:.1f}' for v in secs)} | {note} |" for name, secs, note in rows],
        "",
        f"Target: process-inbox <= 2 x raw nfstream + 15 s (medians) = 2 x {raw:.1f} + 15 = **{budget:.1f} s**; "
        f"measured **{wall:.1f} s**: {verdict} the target (ratio to raw nfstream {wall / raw:.2f}x).",
        "",
        "Stages inside the median timed run (summary.json `timings_s`; the model loads while ingest runs, so "
        "load_model is only what was left after ingest): " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items())
        + f". Ingest / raw nfstream = {stages.get('ingest', 0) / raw:.2f}x. Fixed cost (whole command minus "
        f"ingest, model load, read and scoring) = {mid['wall_seconds'] - work:.1f} s: interpreter start, "
        "Prefect import and API calls, claim, report writing, filing away.",
    ]
    raw_cpu = statistics.median(r["cpu_seconds"] for r in raws)
    cpu = statistics.median(t["cpu_seconds"] for t in timed)
    lines += ["", f"CPU time (user + sys of the command and its child processes; the Prefect server's own work "
              f"is not included), less sensitive to other jobs than wall time: raw nfstream {raw_cpu:.1f} s, "
              f"process-inbox {cpu:.1f} s (medians; per round raw "
              f"{_join(r['cpu_seconds'] for r in raws)}, process-inbox "
              f"{_join(t['cpu_seconds'] for t in timed)}); 2 x {raw_cpu:.1f} + 15 = "
              f"{2 * raw_cpu + 15:.1f} s."]
    gt = mid.get("ground_truth")
    if gt:
        lines += ["", f"Scores on the capture (the model was trained on this same capture, so these are "
                  f"in-sample): precision {gt['precision']}, recall {gt['recall']}, F1 {gt['f1']}."]
    return "\n".join(lines) + "\n"


def _join(values) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


if __name__ == "__main__":
    main()
