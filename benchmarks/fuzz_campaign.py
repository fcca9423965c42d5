"""The full fuzzing corpus (``tests/fuzz_corpus.py --size full``) through ``ingest_paths``, one case at a time.

Every case must end ingested (maybe partly, with a note), duplicate or quarantined with a one-line reason; a
``crash`` (an exception escaped, a partial batch, a temporary left behind, a reason that is not one line or is
an unanticipated extractor error) is a bug. Memory: the cases run in one process; its peak RSS (and that of the
nfstream meter processes, children) is reported beside the largest decompressed input the corpus holds.

Usage (from the repo root): ``python benchmarks/fuzz_campaign.py [--size full] [--seed 11]
[--out benchmarks/results/robustness.md]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit
from tests.fuzz_corpus import cases, lake_problem, run_case, tally


def family(name: str) -> str:
    return "NF CSV" if name.startswith("nf") else "Zeek" if name.startswith("zeek") else "capture"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=("small", "full"), default="full")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # a quarantine warning per case would bury the summary
    started = time.perf_counter()
    outcomes, families = [], Counter()
    with tempfile.TemporaryDirectory(prefix="flowhawk-fuzz-") as tmp:
        corpus, lake = Path(tmp) / "corpus", Path(tmp) / "lake"
        corpus.mkdir()
        for name, data in cases(args.seed, args.size):
            path = corpus / name
            path.write_bytes(data)
            outcome = run_case(path, lake)
            outcomes.append(outcome)
            families[(family(name), "crash" if outcome.status == "crash" else tally([outcome]).popitem()[0])] += 1
            path.unlink()
        final_problem = lake_problem(lake)
    seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    counts = {k: v for k, v in tally(outcomes).items() if k != "crash"}
    crashes = [o for o in outcomes if o.status == "crash"]
    lines = [f"### Fuzzing corpus ({args.size}, seed {args.seed}): {len(outcomes)} cases, {len(crashes)} crashes",
             "", f"Command: `python benchmarks/fuzz_campaign.py --size {args.size} --seed {args.seed}` "
             f"({seconds:.0f} s, load average {os.getloadavg()[0]:.1f}).", "",
             "| family | " + " | ".join(sorted(counts)) + " | crash |", "|---" * (len(counts) + 2) + "|"]
    for fam in ("NF CSV", "Zeek", "capture"):
        row = [str(families.get((fam, k), 0)) for k in sorted(counts)]
        lines.append(f"| {fam} | " + " | ".join(row) + f" | {families.get((fam, 'crash'), 0)} |")
    lines += ["", f"Peak RSS: this process {own:.0f} MiB, largest nfstream meter {kids:.0f} MiB (decompression bombs "
              "up to 1 GiB inflated are refused at 64 MiB). Lake after all cases: "
              f"{final_problem or 'every batch complete (manifest rows = Parquet rows), no temporaries'}.", ""]
    lines += [f"- CRASH {o.name}: {o.reason}" for o in crashes]
    emit("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
