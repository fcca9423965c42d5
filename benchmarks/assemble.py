"""Assemble BENCHMARKS.md from the per-area result files in benchmarks/results/ (each written by its script)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["pcap", "synth", "net", "train", "registry", "flows", "analyst", "novelty", "scaleout", "container",
         "robustness"]
TITLES = {
    "pcap": "Ingest: flowhawk ingest vs raw nfstream",
    "synth": "Capture synthesiser",
    "net": "Detector speed: MindSpore vs PyTorch",
    "train": "Detection quality (NF-BoT-IoT-v2, lab capture) and scoring memory",
    "registry": "Incremental refresh and transfer learning",
    "flows": "process_inbox end to end",
    "analyst": "Analyst's view: explanations on the lab capture, verdicts as labels",
    "novelty": "Novelty model without labels (issue 10) beside IsolationForest / LOF",
    "scaleout": "Scale-out: backfill on Dask workers",
    "container": "The container image, built and run with podman",
    "robustness": "Hostile inputs, crash campaign, security review",
}


def main() -> None:
    head = (ROOT / "benchmarks" / "summary.md").read_text()
    parts = [head.rstrip() + "\n"]
    for name in ORDER:
        path = ROOT / "benchmarks" / "results" / f"{name}.md"
        if path.exists():
            body = path.read_text().strip()
            body = "\n".join(("#" + line) if line.startswith("#") else line for line in body.splitlines())
            parts.append(f"## {TITLES[name]}\n\n_From `benchmarks/results/{name}.md`._\n\n{body}\n")
    (ROOT / "BENCHMARKS.md").write_text("\n".join(parts))


if __name__ == "__main__":
    main()
