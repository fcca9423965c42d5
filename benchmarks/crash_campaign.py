"""Crash campaign: ``python -m flowhawk.cli process-inbox`` SIGKILLed at random moments on a mixed inbox.

Setup: ``flowhawk demo`` trains the model every run scores with (its lake batch and report stay in the lake).
Then rounds until ``--kills`` SIGKILLs have landed: new files land in the inbox (a capture and, in turn, a
cut capture, an NF CSV, a Zeek log, a text file, a capture with a labels sidecar, a link to a secret outside the
inbox), ``process-inbox`` starts and its whole process group (the run and its nfstream meters) is SIGKILLed
after a random delay drawn from 0.2 s .. the duration of an unkilled run (one that ends first is counted).
Then runs go to completion and the invariants are checked:

1. every input file is in ``done/<claim>/`` or ``quarantine/<claim>/`` exactly once, nowhere else (the text
   files and links in ``quarantine/``);
2. every lake batch is complete (manifest rows = Parquet rows, no temporaries) and each content is in one batch;
3. every report matches its batch: the reported lake batches are the lake's batches and the scored flows are
   the lake's flows, each once;
4. the registry's current model loads; the secret behind the link was never read into lake or inbox;
5. rerunning changes nothing (every file of inbox, lake and registry byte-identical).

Then two and four concurrent runs on one inbox (same invariants), and a disk that fills during a batch write
(a tmpfs of 64 KiB; a loop device is not tried): the command fails with a one-line message, nothing partial.

Usage (from the repo root, as root for the tmpfs): ``python benchmarks/crash_campaign.py [--kills 50]
[--seed 1] [--api-url URL] [--out benchmarks/results/robustness.md]``; without --api-url a
``prefect server start`` on a free loopback port is used.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from tests.fuzz_corpus import lake_problem, nf_csv, nf_rows, synth_pcap, zeek_rows, zeek_tsv  # noqa: E402

SECRET = b"SECRET-c7a1e0 never to be read\n"


@dataclass
class Campaign:
    work: Path
    env: dict[str, str]
    seed: int = 1
    names: set[str] = field(default_factory=set)
    kills: int = 0
    kill_seconds: list[float] = field(default_factory=list)

    @property
    def inbox(self) -> Path:
        return self.work / "inbox"

    @property
    def lake(self) -> Path:
        return self.work / "lake"

    @property
    def models(self) -> Path:
        return self.work / "models"

    def command(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "flowhawk.cli", "process-inbox", "--inbox", str(self.inbox), "--lake",
                str(self.lake), "--models", str(self.models), "--settle-seconds", "0", "--refresh-after", "0",
                "--max-files", "4", *extra]

    def drop(self, round_no: int, every_kind: bool = False) -> None:
        """A new capture and, in turn, one other kind (a cut capture, an NF CSV, a Zeek log, a text file, a
        labelled capture with its sidecar, a link to the secret outside the inbox); ``every_kind``: all of
        them. Placed by rename (sidecars first), so no run sees a file half-written."""
        stage = self.work / "stage"
        stage.mkdir(exist_ok=True)
        tag = f"r{round_no:04d}"
        kinds = range(6) if every_kind else [round_no % 6]
        files = {f"{tag}-cap.pcap": synth_pcap(seed=1000 * self.seed + round_no, packets=200)}
        for kind in kinds:
            files.update(self._kind(kind, tag, round_no))
        for name, data in files.items():
            (stage / name).write_bytes(data)
        for name in sorted(files, key=lambda n: n.endswith(".pcap")):  # sidecars before their capture
            os.replace(stage / name, self.inbox / name)
        self.names |= set(files)
        if every_kind or round_no % 6 == 5:
            (self.inbox / f"{tag}-link.pcap").symlink_to(self.work / "secret")
            self.names.add(f"{tag}-link.pcap")

    def _kind(self, kind: int, tag: str, round_no: int) -> dict[str, bytes]:
        if kind == 0:
            other = synth_pcap(seed=5000 * self.seed + round_no, packets=200)
            return {f"{tag}-cut.pcap": other[: len(other) * 2 // 3]}
        if kind == 1:
            return {f"{tag}-nf.csv": nf_csv(nf_rows(30, round_no))}
        if kind == 2:
            return {f"{tag}-conn.log": zeek_tsv(zeek_rows(20, round_no))}
        if kind == 3:
            return {f"{tag}-notes.txt": b"not a capture\n"}
        if kind == 4:
            labels = b"src_ip,label,start_epoch,end_epoch\n10.200.0.101,DoS,0,2000000000\n"
            return {f"{tag}-lab.pcap.labels.csv": labels,
                    f"{tag}-lab.pcap": synth_pcap(seed=9000 * self.seed + round_no, packets=200)}
        return {}

    def run(self, timeout: float = 900) -> tuple[int, float, str]:
        started = time.monotonic()
        done = subprocess.run(self.command(), cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        return done.returncode, time.monotonic() - started, done.stderr[-2000:]

    def killed_run(self, after: float) -> bool:
        """Start a run and SIGKILL its process group after ``after`` seconds; False when it ended first."""
        proc = subprocess.Popen(self.command(), cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(timeout=after)
            return False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            self.kills += 1
            self.kill_seconds.append(after)
            return True

    def drain(self, rounds: int = 40) -> None:
        """Run to completion: until nothing is pending or held in processing/."""
        for _ in range(rounds):
            code, _, err = self.run()
            if code not in (0, 1):
                raise SystemExit(f"process-inbox failed (exit {code}): {err}")
            if not _pending(self.inbox):
                return
        raise SystemExit("the inbox did not drain")


def _pending(inbox: Path) -> list[str]:
    held = [p.name for p in (inbox / "processing").iterdir()] if (inbox / "processing").is_dir() else []
    return held + [p.name for p in inbox.iterdir() if p.name not in ("done", "quarantine", "processing")]


def snapshot(*folders: Path) -> dict[str, bytes]:
    """Every file (and link target) under ``folders``, by path; Prefect's result cache excluded."""
    out = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            if ".prefect-cache" in p.parts:
                continue
            if p.is_symlink():
                out[str(p)] = b"-> " + os.readlink(p).encode()
            elif p.is_file():
                out[str(p)] = p.read_bytes()
    return out


def check(c: Campaign) -> dict[str, object]:
    """The invariants of the module docstring; returns figures and a list of problems (empty when all hold)."""
    from flowhawk.lake.store import Lake
    from flowhawk.model.registry import Registry
    from flowhawk.reports.scored import covered_lake_batches, read_scored

    problems: list[str] = []
    places = Counter()
    for top in ("done", "quarantine"):
        for p in (c.inbox / top).glob("*/*"):
            if not p.name.endswith(".reason.txt") and p.name != "_outcome.json":
                places[p.name] += 1
    misfiled = sorted(p.name for p in (c.inbox / "done").glob("*/*") if p.name.endswith(("-notes.txt", "-link.pcap")))
    problems += [f"bad files filed as done: {misfiled}"] * bool(misfiled)
    lost = sorted(n for n in c.names if places[n] == 0)
    twice = sorted(n for n in c.names if places[n] > 1)
    problems += [f"lost: {lost}"] * bool(lost) + [f"filed twice: {twice}"] * bool(twice)
    if _pending(c.inbox):
        problems.append(f"left in the inbox: {_pending(c.inbox)}")
    lake = Lake(c.lake)
    if (problem := lake_problem(c.lake)) is not None:
        problems.append(problem)
    shas = Counter(f["sha256"] for b in lake.batches() for f in lake.batch_manifest(b)["files"])
    problems += [f"content in {n} batches: {s[:12]}" for s, n in shas.items() if n > 1]
    batches = set(lake.batches())
    covered = covered_lake_batches(c.lake / "reports")
    if covered != batches:
        problems.append(f"reported batches differ: unreported {sorted(batches - covered)}, "
                        f"unknown {sorted(covered - batches)}")
    scored = read_scored(c.lake / "reports", columns=["source_sha256", "flow_index"])
    flows = lake.read_table(columns=["source_sha256", "flow_index"]).to_pandas()
    if scored.duplicated().any() or len(scored) != len(flows) or set(map(tuple, scored.to_numpy())) != set(
            map(tuple, flows.to_numpy())):
        problems.append(f"scored flows ({len(scored)}) are not the lake's flows ({len(flows)}), each once")
    registry = Registry(c.models)
    registry.load(registry.require_current())
    secret_seen = any(SECRET.strip() in p.read_bytes() for p in [*c.lake.rglob("*"), *c.inbox.rglob("*")]
                      if p.is_file() and not p.is_symlink())
    problems += ["the secret behind a link was read"] * secret_seen
    statuses = Counter(p.parent.parent.name for p in (c.inbox / "done").glob("*/*") if p.name != "_outcome.json")
    statuses.update(p.parent.parent.name for p in (c.inbox / "quarantine").glob("*/*")
                    if not p.name.endswith(".reason.txt"))
    return {"problems": problems, "files": len(c.names), "lost": len(lost), "batches": len(batches),
            "flows": len(flows), "done": statuses["done"], "quarantined": statuses["quarantine"]}


def rerun_changes_nothing(c: Campaign) -> bool:
    before = snapshot(c.inbox, c.lake, c.models)
    code, _, err = c.run()
    if code not in (0, 1):
        raise SystemExit(f"rerun failed: {err}")
    return snapshot(c.inbox, c.lake, c.models) == before


def campaign(c: Campaign, kills: int, rng: random.Random) -> dict[str, object]:
    """Calibrate (a round of every kind, then a typical round, unkilled), then rounds until ``kills`` SIGKILLs
    landed (a run that ends before its kill time is counted, and its files are done), drain, check, rerun."""
    c.drop(0, every_kind=True)
    c.names |= {"demo.pcap", "demo.labels.csv"}  # filed by the setup run
    full_seconds = 0.0
    for round_no in (0, 1):  # every kind once, then a typical round: kill delays are drawn up to its duration
        if round_no:
            c.drop(round_no)
        code, full_seconds, err = c.run()
        if code not in (0, 1):
            raise SystemExit(f"calibration run failed (exit {code}): {err}")
    round_no, early = 1, 0
    while c.kills < kills:
        round_no += 1
        c.drop(round_no)
        early += not c.killed_run(rng.uniform(0.2, full_seconds))
    c.drain()
    result = check(c)
    result.update(kills=c.kills, attempts=round_no - 1, ended_before_kill=early,
                  full_run_seconds=round(full_seconds, 1), rerun_identical=rerun_changes_nothing(c))
    return result


def concurrent(c: Campaign, runs: int, round_no: int) -> dict[str, object]:
    """``runs`` process-inbox started together on fresh files (two rounds of drops), then the invariants."""
    for i in range(runs):
        c.drop(round_no + i)
    procs = [subprocess.Popen(c.command(), cwd=ROOT, env=c.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for _ in range(runs)]
    codes = [p.wait(timeout=1800) for p in procs]
    c.drain()
    result = check(c)
    result["exit_codes"] = codes
    return result


def disk_full(work: Path, env: dict[str, str]) -> dict[str, object]:
    """``flowhawk ingest`` into a lake on a 64 KiB tmpfs: one-line failure, exit 3, nothing partial."""
    mount = work / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if made.returncode != 0:
        return {"skipped": f"cannot mount a tmpfs: {made.stderr.strip()}"}
    try:
        capture = work / "big.pcap"
        capture.write_bytes(synth_pcap(seed=3, packets=20000))
        before = capture.read_bytes()
        done = subprocess.run([sys.executable, "-m", "flowhawk.cli", "ingest", str(capture), "--lake",
                               str(mount / "lake"), "--no-progress"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=600)
        left = sorted(str(p.relative_to(mount)) for p in mount.rglob("*") if p.is_file())
        message = [line for line in done.stderr.splitlines() if line.startswith("flowhawk ingest:")]
        return {"exit_code": done.returncode, "message": message[0] if message else done.stderr[-300:],
                "files_left_in_lake": left, "input_untouched": capture.read_bytes() == before,
                "one_line": len(message) == 1 and "Traceback" not in done.stderr}
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def setup(work: Path, env: dict[str, str]) -> Campaign:
    """``flowhawk demo`` trains the model; its lake and registry become the campaign's."""
    demo = work / "demo"
    done = subprocess.run([sys.executable, "-m", "flowhawk.cli", "demo", "--workdir", str(demo), "--packets", "3000",
                           "--epochs", "1"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"demo failed: {done.stderr[-2000:]}")
    for name in ("inbox", "lake", "models"):
        shutil.move(str(demo / name), str(work / name))
    (work / "secret").write_bytes(SECRET)
    return Campaign(work, env)


def main() -> None:
    from bench_inbox import start_server

    from common import emit

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--api-url", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="flowhawk-crash-") as tmp:
        work = Path(tmp)
        server = None
        if args.api_url is None:
            server, args.api_url = start_server(work / "prefect-home")
        env = {**os.environ, "PREFECT_API_URL": args.api_url, "PYTHONPATH": str(ROOT),
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        try:
            c = setup(work / "c", env)
            c.seed = args.seed
            results = {"campaign": campaign(c, args.kills, rng)}
            results["2 concurrent"] = concurrent(c, 2, 10_000)
            results["4 concurrent"] = concurrent(c, 4, 10_006)
            results["disk full"] = disk_full(work, env)
        finally:
            if server is not None:
                os.killpg(server.pid, signal.SIGTERM)
    emit(report(results, args, time.monotonic() - started), args.out)


def report(results: dict[str, dict], args: argparse.Namespace, seconds: float) -> str:
    camp = results["campaign"]
    lines = [f"### Crash campaign: {camp['kills']} SIGKILLs survived, files lost: {camp['lost']}", "",
             f"Command: `python benchmarks/crash_campaign.py --kills {args.kills} --seed {args.seed}` "
             f"({seconds / 60:.1f} min, load average {os.getloadavg()[0]:.1f}). An unkilled run took "
             f"{camp['full_run_seconds']} s; kill delays uniform in 0.2 s .. that; {camp['ended_before_kill']} of "
             f"{camp['attempts']} runs ended before their kill time (their files then wait for the next kill).", "",
             "| scenario | input files | files lost | in done/ | in quarantine/ | lake batches | flows | problems |",
             "|---|---|---|---|---|---|---|---|"]
    for name in ("campaign", "2 concurrent", "4 concurrent"):
        r = results[name]
        lines.append(f"| {name} | {r['files']} | {r['lost']} | {r['done']} | {r['quarantined']} | {r['batches']} | "
                     f"{r['flows']:,} | {'; '.join(r['problems']) or 'none'} |")
    lines += ["", f"Rerun after the campaign changed nothing: {camp['rerun_identical']}. "
              f"Concurrent runs' exit codes: 2 -> {results['2 concurrent']['exit_codes']}, "
              f"4 -> {results['4 concurrent']['exit_codes']}.", "",
              f"Disk full (lake on a 64 KiB tmpfs, `flowhawk ingest` of an 8 MB capture): "
              f"`{json.dumps(results['disk full'])}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
