"""Summarise bench_paper.py ``--json`` runs that differ only in ``--seed`` (split and initialisation): one row per
model and seed, then the mean and the range, so a target can be judged against run-to-run spread, not one split.

Usage (repo root): ``python benchmarks/seed_table.py RUN_SEED0.json RUN_SEED1.json ... [--out FILE.md]``.
Columns: test F1 (attack vs benign), benign recall, macro-F1 (over the task's classes), and the error counts behind
them (benign flows flagged, attacks missed), read from each run's confusion matrix (row 0 = benign).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from common import emit


def rows_of(path: Path) -> list[dict]:
    data = json.loads(path.read_text())
    seed = data["config"]["seed"]
    out = []
    for name, metrics in data["results"].items():
        if name == "majority":
            continue
        confusion = np.asarray(metrics["confusion"])
        out.append({"model": name, "seed": seed, "f1": metrics["f1"], "benign_recall": metrics["benign_recall"],
                    "macro_f1": metrics["macro_f1"], "benign_flagged": int(confusion[0, 1:].sum()),
                    "attacks_missed": int(confusion[1:, 0].sum())})
    return out


def render(rows: list[dict]) -> str:
    lines = ["| model | seed | F1 | benign recall | macro-F1 | benign flagged | attacks missed |",
             "|---|---|---|---|---|---|---|"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    for model in models:
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["seed"])
        for r in mine:
            lines.append(f"| {model} | {r['seed']} | {r['f1']:.5f} | {r['benign_recall']:.4f} | {r['macro_f1']:.4f} "
                         f"| {r['benign_flagged']} | {r['attacks_missed']} |")
        if len(mine) > 1:
            stats = {k: np.array([r[k] for r in mine], dtype=float) for k in
                     ("f1", "benign_recall", "macro_f1", "benign_flagged", "attacks_missed")}
            lines.append(f"| {model} | mean (min–max) | {stats['f1'].mean():.5f} ({stats['f1'].min():.5f}–"
                         f"{stats['f1'].max():.5f}) | {stats['benign_recall'].mean():.4f} "
                         f"({stats['benign_recall'].min():.4f}–{stats['benign_recall'].max():.4f}) | "
                         f"{stats['macro_f1'].mean():.4f} ({stats['macro_f1'].min():.4f}–"
                         f"{stats['macro_f1'].max():.4f}) | {stats['benign_flagged'].mean():.1f} | "
                         f"{stats['attacks_missed'].mean():.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="bench_paper.py --json files")
    parser.add_argument("--out", type=Path, help="append the table to this Markdown file")
    args = parser.parse_args(argv)
    text = render([row for path in args.runs for row in rows_of(path)])
    emit(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
